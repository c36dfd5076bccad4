"""Presentation: the JSON contract, console and notebook renderings, the CLI's streams."""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import subprocess
import sys
import tomllib
from pathlib import Path

import attrs
import pytest
from rich.console import Console

import imgdiff
from imgdiff.cli import main

from .conftest import TreePair

FILES: dict[str, str | bytes] = {"etc/a.conf": "a = 1\n", "usr/share/doc/x/README": "x\n"}


@pytest.fixture
def delta(tree_pair: TreePair) -> imgdiff.Delta:
    old, new = tree_pair(FILES)
    (new / "etc/a.conf").write_text("a = 22\n")
    raw = os.path.join(os.fsencode(new / "etc"), b"<script>\x1b[31m\xff")
    with open(raw, "wb") as fh:
        fh.write(b"hostile name")
    return imgdiff.diff(str(old), str(new), use_cache=False)


def test_json_document_has_the_contract_keys(delta: imgdiff.Delta) -> None:
    doc = delta.to_json()
    assert doc["schema"] == "imgdiff.delta/1"
    assert set(doc) >= {"schema", "old", "new", "stats", "changes"}
    for change in doc["changes"]:
        assert set(change) >= {"path", "status", "aspects", "kind", "old", "new"}
        assert set(change["aspects"]) <= {"content", "mode", "owner", "type", "target", "xattrs"}
    by_path = {c["path"]: c for c in doc["changes"]}
    assert by_path["/etc/a.conf"]["aspects"] == ["content"]
    assert by_path["/etc/a.conf"]["kind"] == "config"


def test_console_rendering_escapes_control_bytes(delta: imgdiff.Delta) -> None:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(delta)
    text = out.getvalue()
    assert "\x1b" not in text
    assert "\\x1b[31m\\xff" in text
    assert "/etc/a.conf" in text


def test_html_escapes_markup_in_names(delta: imgdiff.Delta) -> None:
    page = delta._repr_html_()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


_NO_PANDAS = """
import sys, importlib.abc

class NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("No module named 'pandas'", name=name)
        return None

sys.meta_path.insert(0, NoPandas())
import imgdiff
delta = imgdiff.diff(sys.argv[1], sys.argv[2], use_cache=False)
for result in (delta, imgdiff.Verdict("no-action", ())):
    try:
        result.to_pandas()
    except imgdiff.ImgdiffError as exc:
        print(exc)
"""


def test_to_pandas_without_pandas_names_the_extra_to_install(tree_pair: TreePair) -> None:
    old, new = tree_pair(FILES)
    run = subprocess.run(
        [sys.executable, "-c", _NO_PANDAS, str(old), str(new)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = run.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert "pip install 'imgdiff-updates[pandas]'" in line
    with open(Path(__file__).parent.parent / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    assert project["name"] == "imgdiff-updates"
    assert any(dep.startswith("pandas") for dep in project["optional-dependencies"]["pandas"])


def test_to_pandas_gives_one_row_per_change(delta: imgdiff.Delta) -> None:
    frame = delta.to_pandas()
    assert list(frame["path"]) == [c.path for c in delta.changes]


def test_an_empty_frame_has_the_columns_of_a_full_one(tree_pair: TreePair) -> None:
    """An identical pair's delta and a no-action verdict gave frames with no columns at
    all, so `frame.groupby(["kind", "status"])` or `frame[["unit", "pid", "via",
    "path"]]` raised KeyError exactly when nothing changed."""
    old, new = tree_pair(FILES)
    same = imgdiff.diff(str(old), str(old), use_cache=False).to_pandas()
    (new / "etc/a.conf").write_text("a = 2\n")
    full = imgdiff.diff(str(old), str(new), use_cache=False).to_pandas()
    assert len(same) == 0
    assert len(full) == 1
    assert list(same.columns) == list(full.columns)
    assert same.groupby(["kind", "status"]).size().empty
    reason = imgdiff.Evidence(
        "/etc/a.conf", imgdiff.Via.CONFIG, imgdiff.Status.MODIFIED, imgdiff.Kind.CONFIG, "held"
    )
    restart = imgdiff.Verdict("restart", (), (imgdiff.Step("a.service", (), (reason,)),))
    none = imgdiff.Verdict("no-action", ()).to_pandas()
    assert len(none) == 0
    assert len(restart.to_pandas()) == 1
    assert list(none.columns) == list(restart.to_pandas().columns)
    assert none[["unit", "pid", "via", "path"]].empty


def test_by_kind_refuses_a_kind_that_does_not_exist_as_by_status_does(
    delta: imgdiff.Delta,
) -> None:
    """by_kind("elf_library") (a typo) answered (), as if nothing of that kind changed,
    where by_status("changed") is a ValueError and the CLI's --kind a usage error."""
    assert "/etc/a.conf" in [c.path for c in delta.by_kind("config")]
    assert delta.by_kind(imgdiff.Kind.CONFIG, "docs") == delta.by_kind("config", "docs")
    for typo in ("elf_library", "shared-library"):
        with pytest.raises(ValueError, match=f"'{typo}' is not a valid Kind"):
            delta.by_kind("config", typo)
    with pytest.raises(ValueError, match="'changed' is not a valid Status"):
        delta.by_status("changed")


def test_a_snapshot_renders_as_html_in_a_notebook_as_every_result_does() -> None:
    """The README says results render as HTML in a notebook; a Snapshot had no
    `_repr_html_`, so Jupyter showed its repr."""
    snap = imgdiff.Snapshot.capture(pids=[os.getpid()], workers=1)
    page = snap._repr_html_()
    assert page.lstrip().startswith("<!DOCTYPE html>")
    assert str(os.getpid()) in page


def test_a_deltas_stats_cannot_be_edited_and_still_pickle_and_serialise(
    delta: imgdiff.Delta,
) -> None:
    """stats.by_kind and stats.by_top of a frozen Delta were plain dicts: an edit showed
    up in its to_json()."""
    stats = delta.stats
    doc = delta.to_json()
    with pytest.raises(TypeError):
        stats.by_kind["kernel"] = 99  # type: ignore[index]
    with pytest.raises(TypeError):
        stats.by_top["/etc"]["added"] = 99  # type: ignore[index]
    assert delta.to_json() == doc
    assert doc["stats"]["by_kind"] == {"config": 2}
    assert doc["stats"]["by_top"] == {"/etc": {"added": 1, "modified": 1}}
    assert json.loads(json.dumps(doc)) == doc
    assert stats.by_kind == {"config": 2}  # a mapping that compares as the dict did
    again = pickle.loads(pickle.dumps(delta))  # workers get deltas pickled (fleet, Dask)
    assert again == delta
    assert again.stats.to_json() == stats.to_json()
    with pytest.raises(TypeError):
        again.stats.by_kind["kernel"] = 99
    assert copy.deepcopy(stats) == stats == attrs.evolve(stats)


def test_cli_json_on_a_pipe_is_clean_json(tree_pair: TreePair) -> None:
    old, new = tree_pair(FILES)
    (new / "etc/a.conf").write_text("a = 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "imgdiff", "diff", str(old), str(new), "--json", "--no-cache"],
        capture_output=True,
        check=True,
    )
    doc = json.loads(proc.stdout)
    assert [c["path"] for c in doc["changes"]] == ["/etc/a.conf"]
    assert proc.stderr == b""


def test_manifest_verb_writes_a_file_diff_can_read(
    tree_pair: TreePair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tree_pair(FILES)
    saved = tmp_path / "old.manifest"
    assert main(["manifest", str(old), "-o", str(saved), "--no-cache"]) == 0
    assert main(["diff", str(saved), str(new), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changes"] == []


def test_demo_plans_restarts_for_the_services_that_use_the_update(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "imgdiff.verdict/1"
    assert doc["verdict"] == "restart"
    steps = {s["unit"]: {(r["path"], r["via"]) for r in s["reasons"]} for s in doc["steps"]}
    assert ("/usr/lib/python3.11/wsgiref/__init__.py", "import-graph") in steps["demo-web.service"]
    assert ("/etc/app/app.conf", "config") in steps["demo-web.service"]
    assert ("/usr/lib/x86_64-linux-gnu/libssl.so.3", "mapped") in steps["demo-tls.service"]
    assert "demo-idle.service" not in steps
    for pid in doc["demo_pids"].values():  # every service was stopped
        assert not Path(f"/proc/{pid}").exists()


def test_example_pair_diff_names_kinds(tmp_path: Path) -> None:
    from imgdiff.examples import build_example_pair

    old, new = build_example_pair(tmp_path)
    doc = imgdiff.diff(old, new, use_cache=False).to_json()
    kinds = {c["path"]: c["kind"] for c in doc["changes"]}
    assert kinds["/usr/lib/python3.11/wsgiref/__init__.py"] == "python-source"
    assert kinds["/etc/app/app.conf"] == "config"
    assert kinds["/usr/lib/x86_64-linux-gnu/libssl.so.3"] == "elf-library"
    assert doc["stats"]["mtime_only"] > 0


def test_every_result_renders_through_one_protocol(delta: imgdiff.Delta) -> None:
    """JSON, terminal and notebook for each result, with no per-verb code in the CLI."""
    from imgdiff.report.json import document
    from imgdiff.results import (
        Evidence,
        Impact,
        PackageDelta,
        Plan,
        ProcessImpact,
        StaleReport,
        Step,
        Verdict,
    )

    lib = (Evidence("/usr/lib/libx.so.1", "mapped", "modified", "elf-library"),)
    proc = ProcessImpact(7, 0, "web.service", "/usr/sbin/web", ("web",), lib)
    impact = Impact((proc,), considered=1, uninspected=())
    verdict = Verdict("restart", ("why",), (Step("web.service", (7,), lib, processes=(proc,)),))
    results = [
        delta,
        PackageDelta((), ("/etc/motd",), ()),
        impact,
        StaleReport(()),
        verdict,
        Plan(verdict, delta, impact, None, {"delta": 0.1}),
    ]
    for result in results:
        out = io.StringIO()
        Console(file=out, width=200, color_system=None).print(result)
        assert out.getvalue().strip(), type(result)
        assert result._repr_html_().lstrip().startswith("<"), type(result)
        assert result.to_json() == document(result)
    assert results[-1].to_json() == verdict.to_json()


def test_records_holding_dicts_are_unhashable_by_design(delta: imgdiff.Delta) -> None:
    from imgdiff.results import Evidence, Impact, Plan, Step, Verdict

    lib = (Evidence("/usr/lib/libx.so.1", "mapped", "modified", "elf-library"),)
    verdict = Verdict("restart", ("why",), (Step("web.service", (7,), lib),))
    assert hash(verdict) == hash(Verdict("restart", ("why",), (Step("web.service", (7,), lib),)))
    assert len({lib[0], Evidence("/usr/lib/libx.so.1", "mapped", "modified", "elf-library")}) == 1
    plan = Plan(verdict, delta, Impact((), 0, ()), None, {"delta": 0.1})
    for record in (delta, delta.stats, plan):
        with pytest.raises(TypeError, match=f"unhashable type: '{type(record).__name__}'"):
            hash(record)


def test_closed_vocabularies_are_enums_whose_values_the_json_shows(
    delta: imgdiff.Delta,
) -> None:
    """Verdict kind, step action, evidence status, change kind and package change are
    StrEnum members; strings still construct them, and JSON carries the plain values."""
    from imgdiff.model import Kind
    from imgdiff.results import (
        Evidence,
        EvidenceStatus,
        PackageChange,
        PackageChangeKind,
        PackageDelta,
        Step,
        StepAction,
        Verdict,
        VerdictKind,
    )

    lib = Evidence("/usr/lib/libx.so.1", "mapped", "stale", "elf-library")
    assert lib.status is EvidenceStatus.STALE
    step = Step(None, (), (lib,), action="daemon-reload")
    assert step.action is StepAction.DAEMON_RELOAD
    assert Step("a.service", (1,), ()).action is StepAction.RESTART
    verdict = Verdict("reboot", ("why",), (step,))
    assert verdict.verdict is VerdictKind.REBOOT
    doc = json.loads(json.dumps(verdict.to_json()))
    assert (doc["verdict"], doc["steps"][0]["action"]) == ("reboot", "daemon-reload")
    change = PackageChange("dpkg", "libx", "amd64", "upgraded", "1", "2", ())
    assert change.change is PackageChangeKind.UPGRADED
    pdoc = json.loads(json.dumps(PackageDelta((change,), (), ()).to_json()))
    assert pdoc["changes"][0]["change"] == "upgraded"
    assert {type(c.kind) for c in delta.changes} == {Kind}
    assert [c["kind"] for c in delta.to_json()["changes"]] == [c.kind.value for c in delta]
    with pytest.raises(ValueError, match="sideways"):
        Step("a.service", (1,), (), action="sideways")

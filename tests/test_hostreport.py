"""Host reports: a real chroot's processes and tree, written 0600, read back as a host's
statement (drift, missed updates, redaction), and hostile report files refused."""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgdiff import BadInput
from imgdiff.cli import main
from imgdiff.hostreport import MAX_REPORT_BYTES, HostReport, load_host
from imgdiff.pipeline import plan_update

from .debs import build_deb, dpkg
from .procs import fifo, processes, scratch_dir
from .pyroot import PYTHON, SERVICE, python_root
from .test_runtime import _wait_for_exe

BEHIND = "dpkg:svc:amd64 3.0-1 live, 4.0-1 in OLD (live is older: a missed update)"


class Fleetling:
    """A live root running python3.11 with svc 3.0-1 installed; OLD is that root with
    svc 4.0-1 (the host missed an update); NEW is OLD with wsgiref changed."""

    def __init__(self, live: Path, old: Path, new: Path, pid: int) -> None:
        self.live, self.old, self.new, self.pid = live, old, new, pid


def _svc(tmp: Path, version: str) -> Path:
    files = {"/usr/bin/svc": f"#!/bin/sh\n# svc {version}\n".encode()}
    return build_deb(tmp / "debs", "svc", version, files)


@pytest.fixture
def fleetling(tmp_path: Path) -> Iterator[Fleetling]:
    with scratch_dir("/srv") as live, processes() as procs:
        python_root(live)
        (live / "var/lib/dpkg/info").mkdir(parents=True)
        (live / "var/lib/dpkg/updates").mkdir()
        (live / "var/lib/dpkg/status").touch()
        dpkg(live, "-i", str(_svc(tmp_path, "3.0-1")))
        (live / "etc").mkdir(exist_ok=True)
        (live / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
        old = tmp_path / "old"
        shutil.copytree(live, old, symlinks=True)
        dpkg(old, "-i", str(_svc(tmp_path, "4.0-1")))
        new = tmp_path / "new"
        shutil.copytree(old, new, symlinks=True)
        init = new / "usr/lib/python3.11/wsgiref/__init__.py"
        init.write_text(init.read_text() + "\n# patched\n")
        proc = procs.start(["chroot", str(live), PYTHON, "-c", SERVICE])
        _wait_for_exe(proc.pid, f"{live}{PYTHON}")
        yield Fleetling(live, old, new, proc.pid)


def _doc(path: Path) -> Any:
    return json.loads(path.read_text())


class Served:
    """A real report of a chroot running python3.11 (tree against itself: it matches)."""

    def __init__(self, live: Path, report: Path) -> None:
        self.live, self.report = live, report
        self.doc: dict[str, Any] = _doc(report)

    def edited(self, where: Path, change: Any) -> Path:
        """A copy of the report with `change(doc)` applied."""
        doc = copy.deepcopy(self.doc)
        change(doc)
        where.write_text(json.dumps(doc))
        return where


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("served")
    with scratch_dir("/srv") as live, processes() as procs:
        python_root(live)
        proc = procs.start(["chroot", str(live), PYTHON, "-c", SERVICE])
        _wait_for_exe(proc.pid, f"{live}{PYTHON}")
        report = tmp / "host.json"
        assert main(["report", "--root", str(live), "--against", str(live),
                     "-o", str(report), "-q"]) == 0  # fmt: skip
        yield Served(live, report)


def test_report_states_identity_drift_and_missed_updates_written_0600(
    fleetling: Fleetling, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "host.json"
    out.write_text("{}")
    out.chmod(0o644)  # an older, readable file at the path: replaced by a private one
    umask = os.umask(0)
    try:
        code = main(["report", "--root", str(fleetling.live), "--against", str(fleetling.old),
                     "-o", str(out)])  # fmt: skip
    finally:
        os.umask(umask)
    assert code == 0
    assert out.stat().st_mode & 0o777 == 0o600
    assert "tree differs from the image" in capsys.readouterr().err
    doc = _doc(out)
    assert doc["schema"] == "imgdiff.report/1"
    assert doc["host"]["hostname"] == socket.gethostname()
    assert doc["host"]["machine_id"] == "0123456789abcdef0123456789abcdef"  # inside --root
    assert doc["host"]["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert "inside --root" in doc["host"]["sources"]["machine_id"]
    tree = doc["tree"]
    assert tree["matches"] is False
    assert "/usr/bin/svc" in tree["differs"]
    assert tree["differs_total"] == len(tree["differs"])
    assert tree["behind"] == [BEHIND]
    (proc,) = [p for p in doc["snapshot"]["processes"] if p["pid"] == fleetling.pid]
    assert proc["cmdline"] == [PYTHON, "-c", SERVICE]
    # the report is the host's statement: plan reimages it without walking any tree here
    verdict = plan_update(
        str(fleetling.old), str(fleetling.new), root=str(fleetling.live), snapshot=str(out),
        use_cache=False,
    ).verdict  # fmt: skip
    assert verdict.verdict == "reimage"
    assert verdict.reason_codes[:2] == ("drift", "package-drift")
    assert BEHIND in verdict.reasons[1]
    assert "drift-not-checked" not in verdict.reason_codes
    # planned from another image, the report's tree state says nothing of that one
    other = plan_update(
        str(fleetling.new), str(fleetling.old), root=str(fleetling.live), snapshot=str(out),
        use_cache=False,
    ).verdict  # fmt: skip
    assert other.reason_codes[-1] == "drift-not-checked"
    assert other.reasons[-1].startswith(f"host report's tree state is against {fleetling.old}")


def test_report_of_a_matching_tree_and_redacted_command_lines(
    fleetling: Fleetling, tmp_path: Path
) -> None:
    """Against the tree's own image it matches; redacted, the Python program's graph is
    unknown (never computed from a cut command line): strict policy restarts on it."""
    out = tmp_path / "host.json"
    assert main(["report", "--root", str(fleetling.live), "--against", str(fleetling.live),
                 "--redact", "-o", str(out), "-q"]) == 0  # fmt: skip
    doc = _doc(out)
    assert doc["redacted"] is True
    assert doc["tree"]["matches"] is True
    assert doc["tree"]["differs"] == []
    (proc,) = [p for p in doc["snapshot"]["processes"] if p["pid"] == fleetling.pid]
    assert proc["cmdline"] == [PYTHON]
    live_as_old = tmp_path / "live-old"
    shutil.copytree(fleetling.live, live_as_old, symlinks=True)
    new = tmp_path / "live-new"
    shutil.copytree(fleetling.live, new, symlinks=True)
    init = new / "usr/lib/python3.11/wsgiref/__init__.py"
    init.write_text(init.read_text() + "\n# patched\n")
    verdict = plan_update(
        str(live_as_old), str(new), root=str(fleetling.live), snapshot=str(out), use_cache=False
    ).verdict
    assert verdict.verdict == "restart"
    assert verdict.uninspected == (
        f"pid {fleetling.pid}: command line redacted in the host report: "
        "its import graph is unknown",
    )
    assert "host report redacted" in " ".join(verdict.reasons)
    # the tree was checked against an image with OLD's identity (a faithful copy): no drift
    assert "drift-not-checked" not in verdict.reason_codes
    assert "drift" not in verdict.reason_codes


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\xffnot json", "not JSON"),
        (b'{"schema": "imgdiff.report/1"}', "malformed host report"),
        (b'{"schema": "imgdiff.snapshot/1", "processes": 7}', "malformed snapshot"),
        (b'{"schema": "something/else"}', "neither an imgdiff.snapshot/1 nor"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ],
)
def test_hostile_reports_are_bad_input(tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    with pytest.raises(BadInput, match=message):
        load_host(str(bad))


def test_a_huge_report_is_refused_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as fh:
        fh.truncate(MAX_REPORT_BYTES + 1)  # sparse: nothing to read if it were read
    with pytest.raises(BadInput, match="too large for a report"):
        load_host(str(huge))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    argv = ["plan", str(tmp_path / "a"), str(tmp_path / "b"), "--snapshot", str(huge)]
    assert main(argv) == 3
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"imgdiff: {huge}: too large for a report")


def test_a_fifo_is_refused_unopened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Opening a FIFO for reading waits for a writer: plan --snapshot hung forever."""
    (tmp_path / "a").mkdir()
    with fifo(tmp_path / "h.json", after=5) as pipe:
        with pytest.raises(BadInput, match="not readable: not a regular file"):
            load_host(str(pipe))
        argv = ["plan", str(tmp_path / "a"), str(tmp_path / "a"), "--snapshot", str(pipe)]
        assert main(argv) == 3
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"imgdiff: {pipe}: not readable: not a regular file"


def test_a_compressed_report_reads_as_the_plain_one(fleetling: Fleetling, tmp_path: Path) -> None:
    plain, packed = tmp_path / "h.json", tmp_path / "h.json.zst"
    report = HostReport.capture(str(fleetling.live), str(fleetling.old), use_cache=False)
    report.save(str(plain))
    report.save(str(packed))
    assert packed.stat().st_mode & 0o777 == 0o600
    assert packed.stat().st_size < plain.stat().st_size
    assert load_host(str(packed)) == load_host(str(plain))


def test_a_zstd_bomb_is_refused_at_the_bound(tmp_path: Path) -> None:
    import zstandard

    bomb = tmp_path / "bomb.json.zst"
    with open(bomb, "wb") as fh, zstandard.ZstdCompressor().stream_writer(fh) as out:
        chunk = b" " * (1 << 20)
        for _ in range(MAX_REPORT_BYTES // len(chunk) + 1):
            out.write(chunk)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(BadInput, match="too large for a report"):
        load_host(str(bomb))
    broken = tmp_path / "broken.json.zst"
    broken.write_bytes(bomb.read_bytes()[:64])
    with pytest.raises(BadInput):
        load_host(str(broken))


def test_a_report_is_written_with_its_root_absolute(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`report --root` relative to the working directory: the report says the root its
    processes' roots read (absolute), not a path only that directory gives meaning to."""
    monkeypatch.chdir(served.live.parent)
    out = tmp_path / "rel.json"
    assert main(["report", "--root", served.live.name, "-o", str(out), "-q"]) == 0
    doc = _doc(out)
    assert doc["root"] == str(served.live)
    assert {p["root"] for p in doc["snapshot"]["processes"]} == {str(served.live)}


@pytest.mark.parametrize("root", ["srv/x", "", "/srv/x/", "/srv/./x", "/srv/../x", "//srv", "/a\0"])
def test_a_root_that_is_not_absolute_and_normalised_is_bad_input(
    served: Served, tmp_path: Path, root: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read against the planner's working directory, a relative root matched none of the
    host's processes: no-action for a host that must restart."""

    def report_root(doc: dict[str, Any]) -> None:
        doc["root"] = root

    def process_root(doc: dict[str, Any]) -> None:
        doc["snapshot"]["processes"][0]["root"] = root

    for name, change, key in (
        ("r.json", report_root, "report key 'root'"),
        ("p.json", process_root, "key 'root'"),
    ):
        bad = served.edited(tmp_path / name, change)
        with pytest.raises(BadInput, match=f"^{bad}: malformed .*{key} .* is not an absolute"):
            load_host(str(bad))
    argv = ["plan", str(served.live), str(served.live), "--snapshot", str(tmp_path / "r.json")]
    assert main(argv) == 3
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"imgdiff: {tmp_path / 'r.json'}: malformed host report: report key")


SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schemas"
Where = tuple[str | int, ...]


def _bounds(schema: dict[str, Any], node: dict[str, Any], at: Where = ()) -> Iterator[Any]:
    """(where in a document, the schema's "minimum" or "pattern" there) for every bound
    the schema sets on a value, arrays entered at their first item."""
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].removeprefix("#/$defs/")]
    for bound in ("minimum", "pattern"):
        if bound in node:
            yield at, bound, node[bound]
    for key, sub in node.get("properties", {}).items():
        yield from _bounds(schema, sub, (*at, key))
    if isinstance(node.get("items"), dict):
        yield from _bounds(schema, node["items"], (*at, 0))


@pytest.mark.parametrize("name", ["report", "snapshot"])
def test_every_bound_of_the_schema_is_checked_when_read(
    served: Served, tmp_path: Path, name: str
) -> None:
    """A value the schema's "minimum" or "pattern" refuses is bad input naming the file
    and the key (a pid of -1 was accepted, and the verdict then broke its own schema)."""
    import jsonschema

    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    base = served.doc if name == "report" else served.doc["snapshot"]
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(base))
    bounds = list(_bounds(schema, schema))
    assert len(bounds) >= 9  # clock_ticks, pid, ppid, start_time, uid, root, dev, ino, size
    for at, bound, value in bounds:
        doc = copy.deepcopy(base)
        parent = doc
        for step in at[:-1]:
            parent = parent[step]
        parent[at[-1]] = value - 1 if bound == "minimum" else "x"
        assert list(validator.iter_errors(doc)), at  # the schema refuses it
        bad = tmp_path / f"{'-'.join(map(str, at))}.json"
        bad.write_text(json.dumps(doc))
        with pytest.raises(BadInput, match=f"^{bad}: malformed .*key '{at[-1]}'"):
            load_host(str(bad))

"""A saved snapshot is judged as the live host would be: the host runs OLD's files, so
import graphs and ELF closures are read from OLD; what cannot be read is unknown."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from imgdiff.cli import main
from imgdiff.pipeline import plan_update
from imgdiff.plan import Policy

from .conftest import gnu_tar
from .procs import processes, scratch_dir
from .pyroot import PYTHON, SERVICE, python_root
from .test_runtime import _wait_for_exe


class PyHost:
    """OLD live as a chroot running python3.11 importing wsgiref; NEW changes wsgiref."""

    def __init__(self, old: Path, new: Path, pid: int) -> None:
        self.old, self.new, self.pid = old, new, pid


@pytest.fixture
def pyhost(tmp_path: Path) -> Iterator[PyHost]:
    with scratch_dir("/srv") as old, processes() as procs:
        python_root(old)
        proc = procs.start(["chroot", str(old), PYTHON, "-c", SERVICE])
        _wait_for_exe(proc.pid, f"{old}{PYTHON}")
        new = tmp_path / "new"
        shutil.copytree(old, new, symlinks=True)
        init = new / "usr/lib/python3.11/wsgiref/__init__.py"
        init.write_text(init.read_text() + "\n# patched\n")
        yield PyHost(old, new, proc.pid)


def _cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_snapshot_plan_reads_import_graphs_from_old(
    pyhost: PyHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's reproduction, through the CLI: live and snapshot plans agree."""
    old, new = str(pyhost.old), str(pyhost.new)
    saved = tmp_path / "s.json"
    assert main(["snapshot", "--root", old, "-o", str(saved)]) == 0
    capsys.readouterr()
    live = _cli_json(capsys, "plan", old, new, "--root", old, "--json")
    offline = _cli_json(capsys, "plan", old, new, "--root", old, "--snapshot", str(saved), "--json")
    assert live["verdict"] == offline["verdict"] == "restart"
    assert offline["steps"] == live["steps"]
    (step,) = offline["steps"]
    assert step["pids"] == [pyhost.pid]
    assert {
        "path": "/usr/lib/python3.11/wsgiref/__init__.py",
        "via": "import-graph",
        "detail": "wsgiref ← __main__",
    }.items() <= step["reasons"][0].items(), step["reasons"][0]
    assert offline["reasons"][-1] == (
        "saved snapshot: import graphs and ELF closures were read from OLD's files"
    )
    assert offline["uninspected"] == []


def test_snapshot_evidence_is_computed_once_per_program(pyhost: PyHost, tmp_path: Path) -> None:
    """Two hosts' processes running the same program share one computation; the cache
    key holds the image, the program and its arguments."""
    from imgdiff import diff
    from imgdiff.impact import ImageEvidence, assess
    from imgdiff.runtime import Snapshot

    snap = Snapshot.capture(str(pyhost.old))
    delta = diff(str(pyhost.old), str(pyhost.new), use_cache=False)
    image = ImageEvidence(delta, str(pyhost.old))
    (proc,) = [p for p in snap.processes if p.pid == pyhost.pid]
    twice = attrs.evolve(snap, processes=(proc, proc))  # e.g. the same service on two hosts
    impact = assess(
        delta, twice, root=str(pyhost.old), import_graphs=False, elf_needed=False,
        stale=False, image=image,
    )  # fmt: skip
    assert [p.pid for p in impact.affected] == [pyhost.pid, pyhost.pid]
    graph_keys = [k for k in image.known if k[1] == "graph"]
    assert graph_keys == [(image.identity, "graph", PYTHON, proc.cmdline, proc.cwd)]
    # a copy for a worker answers from what was computed, with the image closed
    worker = image.shareable()
    assert worker.evidence(proc) == image.evidence(proc)
    other = attrs.evolve(proc, cmdline=(*proc.cmdline, "--extra"))
    assert worker.evidence(other) == (
        f"evidence not computed: graph of {PYTHON} missing from the cache"
    )
    # a script the host has but OLD has not: its imports are unknown, not "none"
    local = attrs.evolve(proc, cmdline=(PYTHON, "/srv/app.py"))
    assert image.evidence(local) == (
        "evidence not computed from OLD's files: script /srv/app.py not found in the root"
    )
    image.close()


def test_snapshot_plan_with_an_archive_old_is_unknown_not_clean(
    pyhost: PyHost, tmp_path: Path
) -> None:
    """OLD shipped as a tar: its files cannot be read as a tree, so the process's graph
    is not computed; strict policy restarts on that doubt, lenient lists it."""
    from imgdiff.runtime import Snapshot

    saved = tmp_path / "s.json"
    Snapshot.capture(str(pyhost.old)).save(saved)
    old_tar = gnu_tar(pyhost.old, tmp_path / "old.tar")

    def plan(policy: Policy) -> Any:
        return plan_update(
            str(old_tar), str(pyhost.new), root=str(pyhost.old), snapshot=str(saved),
            policy=policy, use_cache=False,
        ).verdict  # fmt: skip

    strict = plan(Policy())
    assert strict.verdict == "restart"
    assert f"pid {pyhost.pid}: evidence not computed: OLD (tar)" in strict.uninspected[0]
    assert "uninspected" in strict.reason_codes
    # not also counted among those judged by static import graphs: none was computed
    assert "untraced-python" not in strict.reason_codes
    assert strict.reason_codes[-1] == "saved-snapshot"
    lenient = plan(Policy(unknown="lenient"))
    assert lenient.verdict == "no-action"
    assert lenient.uninspected == strict.uninspected


def test_the_service_runs_inside_old(pyhost: PyHost) -> None:
    """The fixture's service really runs OLD's interpreter inside the chroot."""
    out = subprocess.run(
        ["readlink", f"/proc/{pyhost.pid}/root"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == str(pyhost.old)

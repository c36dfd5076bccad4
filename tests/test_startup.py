"""Start-up: what `import imgdiff.cli` loads, what `stale` and `snapshot` load when no
process runs in the root asked about, and that their short answer then is, byte for byte,
the one the library and the renderers give."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgdiff.cli import main
from imgdiff.report.json import document, dumps
from imgdiff.report.plain import notes
from imgdiff.runtime import Snapshot, _procfs, stale

from .procs import build_chroot, processes, scratch_dir

# what a command that needs none of them must not pay for at start-up
HEAVY = {
    "attr", "attrs", "rich", "elftools", "zstandard", "debian", "dask", "distributed", "shtab",
    "pandas", "hdiffpatch", "blake3", "typing",
}  # fmt: skip
HEAVY_OURS = {"imgdiff.model", "imgdiff.results", "imgdiff.runtime.snapshot", "imgdiff.loaders"}


def _loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code` (its last line of output
    is the list)."""
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def _heavy(modules: set[str]) -> set[str]:
    return {
        m
        for m in modules
        if m.split(".")[0] in HEAVY or any(m == h or m.startswith(h + ".") for h in HEAVY_OURS)
    }


def test_importing_the_command_line_loads_no_heavy_module() -> None:
    assert _heavy(_loaded_after("import imgdiff.cli")) == set()


@pytest.mark.parametrize("verb", ["stale", "snapshot"])
def test_a_root_no_process_runs_in_is_answered_without_the_record_classes(
    tmp_path: Path, verb: str
) -> None:
    run = f"from imgdiff.cli import main\nmain([{verb!r}, '--root', {str(tmp_path)!r}, '--json'])"
    assert _heavy(_loaded_after(run)) == set()


def test_the_short_answer_is_what_the_full_path_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = str(tmp_path)
    snap = Snapshot.capture(empty, exclude_self=True)
    report = stale(snap, root=empty)
    assert report.considered == 0
    assert main(["stale", "--root", empty, "--json", "--exit-code"]) == 0
    assert capsys.readouterr().out == dumps(document(report)) + "\n"
    for brief in ([], ["--brief"]):
        assert main(["stale", "--root", empty, *brief]) == 0  # plain: in a pipe
        out, err = capsys.readouterr()
        assert out == ""
        assert err == "".join(f"imgdiff: warning: {n}\n" for n in notes(report))
    assert main(["stale", "--root", empty, "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["snapshot", "--root", empty]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["snapshot", "--root", empty, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = document(snap)
    assert abs(got.pop("taken_at") - want.pop("taken_at")) < 600
    assert got == want


def test_a_process_in_the_root_is_seen_by_the_short_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with scratch_dir("/srv") as root, processes() as procs:
        build_chroot(root, ["sleep"])
        assert not _procfs.anyone_in(str(root))
        proc = procs.start(["chroot", str(root), "/usr/bin/sleep", "600"], ready=False)
        while os.readlink(f"/proc/{proc.pid}/root") != str(root):
            pass  # chroot(2) done
        assert _procfs.anyone_in(str(root))
        assert not _procfs.anyone_in(str(root), besides=proc.pid)
        assert _procfs.anyone_in("/")
        assert main(["stale", "--root", str(root), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["considered"] == 1

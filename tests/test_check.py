"""`imgdiff check`: yes only when the tree is NEW and nothing running in it uses old files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from imgdiff.archive.apply import apply
from imgdiff.archive.pack import pack
from imgdiff.check import check
from imgdiff.cli import main

from .procs import build_chroot, processes, scratch_dir


def _libc(root: Path) -> Path:
    (found,) = [p for p in root.rglob("libc.so.6") if p.is_file()]
    return found


def _running(pid: int, exe: str) -> None:
    for _ in range(500):
        if os.readlink(f"/proc/{pid}/exe").endswith(exe):
            return
        time.sleep(0.01)
    raise AssertionError(f"{pid} never ran {exe}")


def test_check_says_no_while_a_process_maps_a_replaced_library_then_yes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with scratch_dir() as base, processes() as procs:
        old, new, tree = base / "old", base / "new", base / "tree"
        build_chroot(old, ["sleep"])
        shutil.copytree(old, new, symlinks=True)
        libc = _libc(new)
        libc.write_bytes(libc.read_bytes() + b"\0imgdiff")  # NEW's libc: other bytes
        subprocess.run(["cp", "-a", str(old), str(tree)], check=True)
        delta = base / "update.idd"
        pack(str(old), str(new), delta)
        assert not check(str(tree), str(delta)).ok  # not NEW yet: files differ
        sleeper = procs.start(["chroot", str(tree), "/usr/bin/sleep", "600"], ready=False)
        _running(sleeper.pid, "/sleep")
        apply(str(delta), str(tree))

        result = check(str(tree), str(delta))
        assert result.files == ()  # the tree is NEW ...
        (stale,) = result.stale.processes  # ... but the sleeper still maps OLD's libc
        assert stale.pid == sleeper.pid
        assert [e.path for e in stale.reasons] == ["/" + str(_libc(tree).relative_to(tree))]
        assert not result.ok
        assert main(["check", str(tree), str(delta), "--json"]) == 1
        doc = json.loads(capsys.readouterr().out)
        assert doc["schema"] == "imgdiff.check/1"
        assert (doc["ok"], doc["files"]) == (False, [])
        assert [p["pid"] for p in doc["processes"]] == [sleeper.pid]

        sleeper.kill()
        sleeper.wait(timeout=10)
        assert check(str(tree), str(delta)).ok
        assert main(["check", str(tree), str(new)]) == 0  # NEW as an image says the same


def test_a_path_that_is_not_new_is_escaped_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.md: an undecodable byte becomes `\\xNN`, in every format as `verify` shows it;
    `check`'s lines were escaped twice (`\\\\xe9`)."""
    name = os.fsdecode(b"caf\xe9")
    image, tree = tmp_path / "img", tmp_path / "tree"
    (image / "etc").mkdir(parents=True)
    (image / "etc" / name).write_text("x")
    shutil.copytree(image, tree)
    (tree / "etc" / name).write_text("X")
    for fmt in ("plain", "table"):
        assert main(["check", str(tree), str(image), "--format", fmt, "-q"]) == 1
        out = capsys.readouterr().out
        assert "/etc/caf\\xe9 (content)" in out, fmt
        assert "\\\\" not in out, fmt

"""Evidence people can trust: what rests on a ctime alone says so, and the witnesses of
the old bytes (an image of the tree before, an apply's state, the bytecode cache) settle
it, on real processes, real trees and the real image pair."""

from __future__ import annotations

import json
import os
import py_compile
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgdiff.cli import main
from imgdiff.runtime import Snapshot, stale

from .procs import Processes, build_chroot, processes, replace_file, scratch_dir

CORPUS = Path("/var/tmp/imgdiff-corpus")
needs_corpus = pytest.mark.skipif(
    not (CORPUS / "old").is_dir() or not (CORPUS / "new").is_dir(), reason="no real image pair"
)


def _reasons(report_doc: dict[str, object], pid: int) -> dict[str, dict[str, object]]:
    procs = report_doc["processes"]
    assert isinstance(procs, list)
    return {r["path"]: r for p in procs if p["pid"] == pid for r in p["reasons"]}


def _stale_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["stale", "--json", *argv]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert isinstance(doc, dict)
    return doc


# what of the real OLD runs `python3.11` in a chroot (copied: the corpus is read-only)
_PYTHON_PARTS = (
    *("bin", "lib", "lib64", "sbin", "etc/python3.11", "usr/lib64", "usr/bin/python3.11"),
    *("usr/lib/python3.11", "usr/lib/x86_64-linux-gnu"),
)


@pytest.fixture
def old_tree() -> Iterator[Path]:
    """The part of the real OLD image that runs Python, copied outside /tmp."""
    with scratch_dir() as opt:
        tree = opt / "tree"
        tree.mkdir()
        subprocess.run(["cp", "-a", "--parents", *_PYTHON_PARTS, str(tree)], check=True,
                       cwd=CORPUS / "old")  # fmt: skip
        yield tree


def _rsync(source: Path, tree: Path, part: str) -> None:
    """rsync NEW's `part` over the tree, as the issue's trial did."""
    subprocess.run(["rsync", "-a", f"{source}/{part}", f"{tree}/{part}"], check=True)


def _chrooted_python(procs: Processes, tree: Path, *argv: str) -> int:
    proc = procs.start(["chroot", str(tree), "/usr/bin/python3.11", *argv])
    return proc.pid


@needs_corpus
def test_rsync_of_new_over_a_live_old_tree_names_only_files_whose_bytes_changed(
    old_tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's trial: rsync rewrites argparse.py (same bytes, other mtime), so its
    ctime moves. Without the old bytes that is an unconfirmed reason (one line per
    process on the console); with --against OLD, every reason names a file whose bytes
    really changed."""
    code = "import argparse, csv, json, time; print('ready', flush=True); time.sleep(600)"
    with processes() as procs:
        pid = _chrooted_python(procs, old_tree, "-c", code)
        time.sleep(1.1)  # ctimes must be later than the start, past a second of slack
        for part in ("usr/lib/python3.11/", "usr/bin/python3.11"):
            _rsync(CORPUS / "new", old_tree, part)
        blind = _reasons(_stale_json(capsys, "--root", str(old_tree)), pid)
        settled = _reasons(
            _stale_json(capsys, "--root", str(old_tree), "--against", str(CORPUS / "old")), pid
        )
        assert main(["stale", "--root", str(old_tree)]) == 0
        short = capsys.readouterr().out
        assert main(["stale", "--root", str(old_tree), "--full"]) == 0
        full = capsys.readouterr().out
    # on the console, the unconfirmed reasons are one line per process unless --full
    assert "argparse.py" not in short
    assert "bytes not known to differ" in short
    assert "--against IMAGE" in short
    assert "argparse.py" in full
    assert len(short.splitlines()) * 5 < len(full.splitlines())
    argparse_py = "/usr/lib/python3.11/argparse.py"
    assert (CORPUS / "old" / argparse_py[1:]).read_bytes() == (
        old_tree / argparse_py[1:]
    ).read_bytes()
    assert blind[argparse_py]["confirmed"] is False
    assert blind["/usr/lib/python3.11/csv.py"]["confirmed"] is False
    assert blind["/usr/bin/python3.11"]["confirmed"] is True  # bytes compared through /proc
    assert argparse_py not in settled
    assert settled["/usr/lib/python3.11/csv.py"]["confirmed"] is True
    assert len(settled) < len(blind) / 5
    for path, reason in settled.items():
        assert reason["confirmed"] is True, reason
        before, now = CORPUS / "old" / path[1:], old_tree / path[1:]
        assert not before.exists() or before.read_bytes() != now.read_bytes(), path


def _program(opt: Path, modules: list[str]) -> Path:
    for name in modules:
        (opt / f"{name}.py").write_text(f"NAME = {name!r}\n")
    script = opt / "app.py"
    script.write_text(
        f"import time\nimport {', '.join(modules)}\nprint('ready', flush=True)\ntime.sleep(600)\n"
    )
    return script


def _rewrite_same(path: Path, keep_mtime: bool) -> None:
    """A new inode with the very bytes (a reinstall, rsync, cp), mtime kept or not."""
    st = path.stat()
    replace_file(path, path.read_bytes())
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _rewrite_other(path: Path, keep_mtime: bool) -> None:
    """Other bytes of the same size (the mtime kept or not)."""
    st = path.stat()
    data = path.read_bytes()
    replace_file(path, data.replace(b"NAME", b"EMAN"))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_bytecode_in_place_before_the_process_settles_a_same_bytes_rewrite() -> None:
    """A .pyc unchanged since before the start and valid for the source now (PEP 552:
    mtime and size, or the source's hash) settles a rewrite with the same bytes; one that
    does not match leaves the reason unconfirmed, and a module without one too."""
    modes = {
        "ts_same": py_compile.PycInvalidationMode.TIMESTAMP,
        "ts_other": py_compile.PycInvalidationMode.TIMESTAMP,
        "hash_same": py_compile.PycInvalidationMode.CHECKED_HASH,
        "hash_other": py_compile.PycInvalidationMode.CHECKED_HASH,
    }
    with scratch_dir() as opt, processes() as procs:
        script = _program(opt, [*modes, "no_pyc"])
        for name, mode in modes.items():
            py_compile.compile(str(opt / f"{name}.py"), invalidation_mode=mode, doraise=True)
        time.sleep(2.1)  # the bytecode is older than the start, past the slack
        proc = procs.start([sys.executable, "-B", str(script)])  # -B: leaves the cache alone
        time.sleep(1.1)
        _rewrite_same(opt / "ts_same.py", keep_mtime=True)
        _rewrite_other(opt / "ts_other.py", keep_mtime=False)
        _rewrite_same(opt / "hash_same.py", keep_mtime=False)
        _rewrite_other(opt / "hash_other.py", keep_mtime=True)
        _rewrite_same(opt / "no_pyc.py", keep_mtime=True)
        report = stale(Snapshot.capture(pids=[proc.pid]))
    found = {r.path: r for p in report.processes for r in p.reasons}
    assert str(opt / "ts_same.py") not in found
    assert str(opt / "hash_same.py") not in found
    for name in ("ts_other", "hash_other", "no_pyc"):
        reason = found[str(opt / f"{name}.py")]
        assert (reason.via, reason.confirmed) == ("import-graph", False), name


def test_bytecode_written_after_the_start_settles_nothing() -> None:
    with scratch_dir() as opt, processes() as procs:
        script = _program(opt, ["late"])
        proc = procs.start([sys.executable, "-B", str(script)])
        time.sleep(1.1)
        _rewrite_same(opt / "late.py", keep_mtime=True)
        py_compile.compile(str(opt / "late.py"), doraise=True)  # valid, but written just now
        report = stale(Snapshot.capture(pids=[proc.pid]))
    found = {r.path: r for p in report.processes for r in p.reasons}
    assert found[str(opt / "late.py")].confirmed is False


def _python_chroot(root: Path) -> None:
    """A small tree that runs `/usr/bin/python3.11 -S`: the interpreter, its libraries
    and the encodings package (the rest of its start-up is frozen into it)."""
    build_chroot(root, ["/usr/bin/python3.11"])
    lib = root / "usr/lib/python3.11"
    lib.mkdir(parents=True, exist_ok=True)
    shutil.copytree("/usr/lib/python3.11/encodings", lib / "encodings", symlinks=True)


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3.11"), reason="no python3.11")
def test_the_state_of_an_apply_settles_what_it_rewrote(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After `imgdiff apply`, its state directory knows OLD's and NEW's bytes of every
    path it changed: a file whose mode alone changed (same bytes, new ctime) is no
    reason, a file whose bytes changed is a confirmed one."""
    with scratch_dir() as opt, processes() as procs:
        old, new, tree = opt / "old", opt / "new", opt / "tree"
        _python_chroot(old)
        app = old / "opt/app"
        app.mkdir(parents=True)
        (app / "changed.py").write_text("A = 1\n")
        (app / "moded.py").write_text("B = 1\n")
        (app / "main.py").write_text(
            "import time, changed, moded\nprint('ready', flush=True)\ntime.sleep(600)\n"
        )
        subprocess.run(["cp", "-a", str(old), str(new)], check=True)
        subprocess.run(["cp", "-a", str(old), str(tree)], check=True)
        (new / "opt/app/changed.py").write_text("A = 2\n")
        os.chmod(new / "opt/app/moded.py", 0o600)
        delta = opt / "d.idd"
        assert main(["pack", str(old), str(new), "-o", str(delta)]) == 0
        pid = _chrooted_python(procs, tree, "-S", "/opt/app/main.py")
        time.sleep(1.1)
        assert main(["apply", str(delta), str(tree)]) == 0
        capsys.readouterr()
        found = _reasons(_stale_json(capsys, "--root", str(tree)), pid)
        shutil.rmtree(tree / "var/lib/imgdiff")
        without_state = _reasons(_stale_json(capsys, "--root", str(tree)), pid)
    assert "/opt/app/moded.py" not in found
    assert found["/opt/app/changed.py"]["confirmed"] is True
    assert found["/opt/app/changed.py"]["detail"] == "bytes changed by the last imgdiff apply"
    assert without_state["/opt/app/moded.py"]["confirmed"] is False
    assert without_state["/opt/app/changed.py"]["confirmed"] is False


def test_a_replaced_file_whose_old_bytes_cannot_be_read_is_unconfirmed() -> None:
    """A traced import whose file got a new mtime but the same size: the bytes may be
    the same (the tracer keeps no copy), so the reason stays, unconfirmed; another size is
    other bytes, confirmed."""
    spool = Path(f"/run/imgdiff-test-spool-{os.getpid()}")
    with scratch_dir() as opt, processes() as procs:
        script = _program(opt, ["same_size", "other_size"])
        proc = procs.start(
            [sys.executable, "-m", "imgdiff.trace", "--spool", str(spool), "--", str(script)]
        )
        snap = Snapshot.capture(pids=[proc.pid], spool=str(spool))
        _rewrite_same(opt / "same_size.py", keep_mtime=False)
        replace_file(opt / "other_size.py", b"NAME = 'a longer name now'\n")
        report = stale(snap)
    shutil.rmtree(spool, ignore_errors=True)
    found = {r.path: r for p in report.processes for r in p.reasons}
    assert found[str(opt / "same_size.py")].confirmed is False
    assert found[str(opt / "other_size.py")].confirmed is True

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

from .procs import Processes, build_chroot, children, processes, replace_file, scratch_dir
from .test_runtime import _wait_for_exe

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
        assert main(["stale", "--root", str(old_tree), "--format", "table"]) == 0
        short = capsys.readouterr().out
        assert main(["stale", "--root", str(old_tree), "--full", "--format", "table"]) == 0
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


def _may_write_bytecode(**more: str) -> dict[str, str]:
    """This environment, but free to write a bytecode cache beside the sources."""
    skip = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    return {**{k: v for k, v in os.environ.items() if k not in skip}, **more}


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
        proc = procs.start([sys.executable, str(script)], env=_may_write_bytecode())
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


# -- plan: import chains, drift hints, guesses, wrong roots, process trees ------------------


@needs_corpus
def test_plan_shows_the_shortest_import_chains_and_a_count_unless_full(
    old_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("allow_drift = true\n")  # the tree is a part of OLD
    code = "import argparse, csv, time; print('ready', flush=True); time.sleep(600)"
    argv = ["plan", str(CORPUS / "old"), str(CORPUS / "new"), "--root", str(old_tree)]
    argv += ["--policy", str(policy)]
    with processes() as procs:
        _chrooted_python(procs, old_tree, "-c", code)
        assert main(argv) == 0
        short = capsys.readouterr().out
        assert main([*argv, "--full"]) == 0
        full = capsys.readouterr().out
        assert main([*argv, "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
    (step,) = [s for s in doc["steps"] if s["action"] == "restart"]
    graph = [r for r in step["reasons"] if r["via"] == "import-graph"]
    assert len(graph) > 10  # the JSON keeps every module, each with its whole chain
    assert max(r["detail"].count(" ← ") for r in graph) > 8
    assert all(r["confirmed"] is True for r in graph)  # the delta compared the bytes
    assert short.count("(import-graph") == 3
    assert f"and {len(graph) - 3} more changed modules its imports reach" in short
    assert "csv ← __main__" in short  # the shortest chain comes first
    assert "more …" in short or max(r["detail"].count(" ← ") for r in graph[:3]) < 4
    assert full.count("(import-graph") == len(graph)


def test_plan_on_the_hosts_own_root_says_what_a_drift_most_likely_means(
    tmp_path: Path,
) -> None:
    from imgdiff.pipeline import plan_update

    old = tmp_path / "old"
    new = tmp_path / "new"
    for tree, text in ((old, "1\n"), (new, "2\n")):
        (tree / "etc").mkdir(parents=True)
        (tree / "etc/app.conf").write_text(text)
    snap = tmp_path / "snap.json"
    Snapshot.capture(pids=[os.getpid()]).save(snap)  # this boot: the drift is checked
    verdict = plan_update(str(old), str(new), snapshot=str(snap), use_cache=False).verdict
    assert verdict.verdict == "reimage"
    assert "drift-hint" in verdict.reason_codes
    (hint,) = [r for r in verdict.reasons if r.code == "drift-hint"]
    assert "pass --root PATH" in hint
    assert "allow_drift = true" in hint
    chroot = plan_update(
        str(old), str(new), root=str(old), snapshot=str(snap), use_cache=False
    ).verdict
    assert "drift-hint" not in chroot.reason_codes


def test_a_root_where_nothing_runs_says_so_and_a_missing_one_is_no_such_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["stale", "--root", str(empty), "--format", "table"]) == 0
    assert " ".join(capsys.readouterr().out.split()).startswith(f"no process runs in {empty}:")
    assert main(["stale", "--root", str(empty)]) == 0  # plain, in a pipe: stdout is records
    assert (
        capsys.readouterr().err
        == f"imgdiff: warning: no process runs in {empty}: nothing was checked\n"
    )
    doc = _stale_json(capsys, "--root", str(empty))
    assert (doc["considered"], doc["processes"], doc["root"]) == (0, [], str(empty))
    assert main(["snapshot", "--root", str(empty), "--format", "table"]) == 0
    assert "no process runs in the root asked about" in capsys.readouterr().out
    (empty / "etc").mkdir()
    for name in ("app.conf", "a", "b", "c"):  # one change in four files: no reimage
        (empty / "etc" / name).write_text("1\n")
    new = tmp_path / "new"
    shutil.copytree(empty, new)
    (new / "etc/app.conf").write_text("2\n")
    assert main(["plan", str(empty), str(new), "--root", str(empty), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["verdict"] == "no-action"
    assert plan["reasons"][0] == f"no process runs in {empty}: none uses any of the 1 changes"
    missing = str(tmp_path / "missing")
    for argv in (["stale"], ["snapshot"], ["plan", str(empty), str(new)]):
        assert main([*argv, "--root", missing]) == 3
        assert capsys.readouterr().err == f"imgdiff: {missing}: no such directory\n"
    assert main(["stale", "--root", str(empty / "etc/app.conf")]) == 3
    assert capsys.readouterr().err.endswith(": not a directory\n")


# a master that forks two workers, all running the same interpreter, then waits
_MASTER = """
import os, time
for _ in range(2):
    if os.fork() == 0:
        time.sleep(600)
        os._exit(0)
print('ready', flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3.11"), reason="no python3.11")
def test_a_process_tree_with_no_unit_is_one_step_naming_its_main_pid_and_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from imgdiff.pipeline import plan_update

    with scratch_dir() as opt, processes() as procs:
        old = opt / "old"
        _python_chroot(old)
        build_chroot(old, ["sleep", "sh"])
        (old / "master.py").write_text(_MASTER)
        master = procs.start(["chroot", str(old), "/usr/bin/python3.11", "-S", "/master.py"])
        lone = procs.start(["chroot", str(old), "/usr/bin/sh", "-c", "echo ready; exec sleep 600"])
        _wait_for_exe(lone.pid, f"{old}/usr/bin/sleep")
        new = tmp_path / "new"
        shutil.copytree(old, new, symlinks=True)
        (libc,) = new.rglob("libc.so.6")
        replace_file(libc, libc.read_bytes() + b"\0")
        workers = children(master.pid)
        plan = plan_update(str(old), str(new), root=str(old), use_cache=False)
        assert main(["plan", str(old), str(new), "--root", str(old)]) == 0
        text = capsys.readouterr().out
    assert len(workers) == 2
    steps = [s for s in plan.verdict.steps if s.unit is None]
    by_main = {s.main_pid: s for s in steps}
    assert set(by_main) == {master.pid, lone.pid}
    tree = by_main[master.pid]
    assert tree.pids == (master.pid, *workers)
    assert tree.command == "/usr/bin/python3.11 -S /master.py"
    assert by_main[lone.pid].pids == (lone.pid,)
    assert by_main[lone.pid].command == "sleep 600"
    doc = plan.verdict.to_json()
    (jstep,) = [s for s in doc["steps"] if s["main_pid"] == master.pid]
    assert (jstep["command"], jstep["pids"]) == (tree.command, [master.pid, *workers])
    assert f"restart pid {master.pid} (and 2 of its children): /usr/bin/python3.11 -S" in text


_RETITLED = (
    "import os; os.execv('/usr/bin/python3.11', ['my-worker', '-S', '-c', "
    "\"import time; print('ready', flush=True); time.sleep(600)\"])"
)


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3.11"), reason="no python3.11")
def test_a_python_process_whose_imports_cannot_be_computed_is_unknown_not_clean(
    tmp_path: Path,
) -> None:
    """Its command line rewritten (argv[0] 'my-worker', as setproctitle or `exec -a` do):
    the static import graph cannot be computed, so the process is not inspected (a gap),
    and under the strict policy a plan does not say no-action."""
    from imgdiff.pipeline import plan_update
    from imgdiff.plan import Policy

    with scratch_dir() as opt, processes() as procs:
        old = opt / "old"
        _python_chroot(old)
        (old / "etc").mkdir(exist_ok=True)
        for name in ("app.conf", "a", "b", "c"):
            (old / "etc" / name).write_text("1\n")
        proc = procs.start(["chroot", str(old), "/usr/bin/python3.11", "-S", "-c", _RETITLED])
        new = tmp_path / "new"
        shutil.copytree(old, new, symlinks=True)
        (new / "etc/app.conf").write_text("2\n")
        report = stale(Snapshot.capture(str(old)), root=str(old))
        strict = plan_update(str(old), str(new), root=str(old), use_cache=False).verdict
        lenient = plan_update(
            str(old), str(new), root=str(old), use_cache=False, policy=Policy(unknown="lenient")
        ).verdict
    (gap,) = [g for g in report.gaps if g.pid == proc.pid]
    assert gap.reason.startswith("import graph not computed: argv[0] 'my-worker'")
    assert strict.verdict == "restart"
    assert "uninspected" in strict.reason_codes
    assert any(
        u.startswith(f"pid {proc.pid}: import graph not computed") for u in strict.uninspected
    )
    assert lenient.verdict == "no-action"


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.parametrize(
    ("user", "flags", "env"),
    [
        ([], ["-B"], {}),
        ([], [], {"PYTHONDONTWRITEBYTECODE": "1"}),
        ([], ["-X", "pycache_prefix={opt}/c"], {}),
        (NOBODY, [], {}),  # root's __pycache__, 0755
    ],
    ids=["-B", "PYTHONDONTWRITEBYTECODE", "pycache_prefix", "another-user"],
)
def test_bytecode_a_process_could_not_rewrite_settles_nothing(
    user: list[str], flags: list[str], env: dict[str, str]
) -> None:
    """The .pyc was made for version B; the process imported A, compiled it in memory and
    could not replace the .pyc. B put back (its mtime kept) matches the .pyc again, yet
    the process runs A: no witness."""
    with scratch_dir() as opt, processes() as procs:
        script = _program(opt, ["mymod"])
        module = opt / "mymod.py"
        b_version = module.read_bytes()
        py_compile.compile(str(module), doraise=True)
        b_stat = module.stat()
        time.sleep(2.1)  # the bytecode is older than the start, past the slack
        module.write_bytes(b_version.replace(b"NAME", b"A_NAME"))  # A: another size
        argv = [*user, sys.executable, *(f.format(opt=opt) for f in flags), str(script)]
        proc = procs.start(argv, env=_may_write_bytecode(**env))
        time.sleep(1.1)
        replace_file(module, b_version)  # B again, as a package manager writes it
        os.utime(module, ns=(b_stat.st_atime_ns, b_stat.st_mtime_ns))
        report = stale(Snapshot.capture(pids=[proc.pid]))
    found = {r.path: r for p in report.processes for r in p.reasons}
    assert (found[str(module)].via, found[str(module)].confirmed) == ("import-graph", False)

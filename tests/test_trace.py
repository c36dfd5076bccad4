"""The import tracer on real Python processes, and the spool reader on hostile spool files."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from imgdiff.trace import hooks, spool, tracer
from imgdiff.trace.spool import ImportRecord, Spool

PY = sys.executable
REPO = Path(__file__).resolve().parents[1]
BOOT_ID = tracer.read_boot_id()


# --- helpers -------------------------------------------------------------------------------


def trace_argv(spool_dir: Path, *command: str) -> list[str]:
    return [PY, "-m", "imgdiff.trace", "--spool", str(spool_dir), "--", *command]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", tracer.SPOOL_DIR_ENV)}
    # `-m imgdiff.trace` from this checkout, not the one an editable install may point at
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def run(
    argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str, int]:
    """(pid, stdout, stderr, exit status) of a finished process."""
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=clean_env() if env is None else env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.pid, out, err, proc.returncode


@contextmanager
def running(argv: Sequence[str], *, cwd: Path | None = None) -> Iterator[subprocess.Popen[str]]:
    """A process that prints 'ready' once set up; killed and reaped on the way out."""
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=clean_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"{argv}: {line!r}"
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        for pipe in (proc.stdin, proc.stdout):
            if pipe:
                pipe.close()


def spool_of(spool_dir: Path, pid: int) -> Spool:
    """The one spool file of `pid`, read as imgdiff reads it (this boot, our uid)."""
    starts = [s for p, s in spool.list_spool(str(spool_dir)) if p == pid]
    assert len(starts) == 1, (pid, spool.list_spool(str(spool_dir)))
    loaded = spool.load_spool(str(spool_dir), pid, starts[0], boot_id=BOOT_ID, uid=os.getuid())
    assert loaded is not None
    assert loaded.malformed == 0
    assert not loaded.torn
    return loaded


def modules(records: Sequence[ImportRecord]) -> dict[str, list[ImportRecord]]:
    out: dict[str, list[ImportRecord]] = {}
    for r in records:
        out.setdefault(r.module, []).append(r)
    return out


def assert_identity(record: ImportRecord, path: str | Path) -> None:
    st = os.stat(path)
    assert record.path == str(path)
    assert (record.dev, record.ino, record.size, record.mtime_ns) == (
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
    )


def write_py(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return root


def stdlib_file(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None
    assert spec.origin is not None
    return spec.origin


def shared_extension() -> tuple[str, str]:
    """A stdlib extension module built as a shared object here (not a builtin)."""
    for name in ("_json", "_bisect", "_csv", "_struct", "zlib", "_ssl"):
        if name in sys.builtin_module_names:
            continue
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and spec.origin.endswith(".so"):
            return name, spec.origin
    pytest.skip("no stdlib extension module is a shared object in this build")


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


# --- what gets recorded --------------------------------------------------------------------


def test_package_init_and_submodule_are_both_recorded_with_their_file_identity(
    spool_dir: Path,
) -> None:
    pid, _, err, status = run(trace_argv(spool_dir, PY, "-c", "import wsgiref.simple_server"))
    assert status == 0, err
    found = modules(spool_of(spool_dir, pid).records)
    assert_identity(found["wsgiref"][0], stdlib_file("wsgiref"))
    assert found["wsgiref"][0].path.endswith("/wsgiref/__init__.py")
    assert_identity(found["wsgiref.simple_server"][0], stdlib_file("wsgiref.simple_server"))
    assert found["wsgiref.simple_server"][0].kind == "source"


def test_module_imported_by_a_name_computed_at_run_time_is_recorded(
    spool_dir: Path, tmp_path: Path
) -> None:
    app = write_py(
        tmp_path / "app",
        {"plugins/__init__.py": "", "plugins/csv_export.py": "X = 1\n"},
    )
    code = "import importlib, sys; importlib.import_module('plugins.' + sys.argv[1] + '_export')"
    pid, _, err, status = run(trace_argv(spool_dir, PY, "-c", code, "csv"), cwd=app)
    assert status == 0, err
    found = modules(spool_of(spool_dir, pid).records)
    assert_identity(found["plugins"][0], app / "plugins/__init__.py")
    assert_identity(found["plugins.csv_export"][0], app / "plugins/csv_export.py")


@pytest.mark.parametrize("launch", ["exec", "in-process"])
def test_module_the_program_loads_itself_from_a_spec_is_recorded_and_imports_nothing(
    spool_dir: Path, tmp_path: Path, launch: str
) -> None:
    app = write_py(
        tmp_path / "app",
        {
            "plug.py": "X = 1\n",
            "after.py": "Y = 1\n",
            "main.py": """
                import importlib.util, os, sys
                spec = importlib.util.spec_from_file_location("plug", os.path.abspath("plug.py"))
                m = importlib.util.module_from_spec(spec)
                sys.modules["plug"] = m
                spec.loader.exec_module(m)
                import after
            """,
        },
    )
    command = [PY, "main.py"] if launch == "exec" else ["main.py"]
    pid, _, err, status = run(trace_argv(spool_dir, *command), cwd=app)
    assert status == 0, err
    found = modules(spool_of(spool_dir, pid).records)
    assert_identity(found["plug"][0], app / "plug.py")
    assert (found["plug"][0].by, found["after"][0].by) == ("", "")  # both: the program's


def test_module_from_a_zip_file_is_recorded_as_archive_and_member(
    spool_dir: Path, tmp_path: Path
) -> None:
    src = write_py(tmp_path / "src", {"zipped/__init__.py": "", "zipped/inner.py": "Y = 2\n"})
    archive = Path(shutil.make_archive(str(tmp_path / "lib"), "zip", src))
    code = f"import sys; sys.path.insert(0, {str(archive)!r}); import zipped.inner"
    pid, _, err, status = run(trace_argv(spool_dir, PY, "-c", code))
    assert status == 0, err
    found = modules(spool_of(spool_dir, pid).records)
    inner = found["zipped.inner"][0]
    assert (inner.kind, inner.member) == ("zip", "zipped/inner.py")
    assert_identity(inner, archive)
    assert found["zipped"][0].member == "zipped/__init__.py"


def test_namespace_package_records_each_of_its_directories(spool_dir: Path, tmp_path: Path) -> None:
    a = write_py(tmp_path / "a", {"nsp/one.py": "A = 1\n"})
    b = write_py(tmp_path / "b", {"nsp/two.py": "B = 2\n"})
    code = f"import sys; sys.path[:0] = [{str(a)!r}, {str(b)!r}]; import nsp.one, nsp.two"
    pid, _, err, status = run(trace_argv(spool_dir, PY, "-c", code))
    assert status == 0, err
    found = modules(spool_of(spool_dir, pid).records)
    assert [r.path for r in found["nsp"]] == [str(a / "nsp"), str(b / "nsp")]
    assert {r.kind for r in found["nsp"]} == {"namespace"}
    assert_identity(found["nsp"][1], b / "nsp")
    assert_identity(found["nsp.two"][0], b / "nsp/two.py")


def test_extension_module_is_recorded_with_its_shared_object(spool_dir: Path) -> None:
    name, origin = shared_extension()
    pid, _, err, status = run(trace_argv(spool_dir, PY, "-c", f"import {name}"))
    assert status == 0, err
    record = modules(spool_of(spool_dir, pid).records)[name][0]
    assert record.kind == "extension"
    assert_identity(record, origin)


def test_modules_imported_before_install_are_recorded(spool_dir: Path) -> None:
    code = f"import wsgiref.util; import imgdiff.trace.tracer as t; t.install({str(spool_dir)!r})"
    pid, _, err, status = run([PY, "-c", code], cwd=REPO)
    assert status == 0, err
    found = modules(spool_of(spool_dir, pid).records)
    assert_identity(found["wsgiref.util"][0], stdlib_file("wsgiref.util"))
    assert "encodings" in found  # loaded by the interpreter itself before anything else


def test_reloaded_module_is_recorded_again_with_its_new_identity(
    spool_dir: Path, tmp_path: Path
) -> None:
    app = write_py(tmp_path / "app", {"conf.py": "V = 1\n"})
    code = textwrap.dedent(
        """
        import importlib, os, conf
        with open("conf.py", "w") as f:
            f.write("V = 22\\n")
        os.utime("conf.py", ns=(1, 10**18))
        importlib.reload(conf)
        assert conf.V == 22
        """
    )
    pid, _, err, status = run(trace_argv(spool_dir, PY, "-c", code), cwd=app)
    assert status == 0, err
    first, second = modules(spool_of(spool_dir, pid).records)["conf"]
    assert first.size == 6
    assert_identity(second, app / "conf.py")


def test_file_name_that_is_not_utf8_round_trips_through_the_spool(
    spool_dir: Path, tmp_path: Path
) -> None:
    odd = tmp_path / os.fsdecode(b"lib-caf\xe9")
    write_py(odd, {"oddmod.py": "Z = 3\n"})
    code = f"import sys; sys.path.insert(0, {str(odd)!r}); import oddmod"
    pid, _, err, status = run(trace_argv(spool_dir, PY, "-c", code))
    assert status == 0, err
    record = modules(spool_of(spool_dir, pid).records)["oddmod"][0]
    assert os.fsencode(record.path) == os.fsencode(odd) + b"/oddmod.py"
    assert_identity(record, odd / "oddmod.py")


def test_header_names_the_process_and_this_boot(spool_dir: Path) -> None:
    pid, _, err, status = run(trace_argv(spool_dir, PY, "-c", "pass", "arg one"))
    assert status == 0, err
    s = spool_of(spool_dir, pid)
    assert (s.pid, s.boot_id) == (pid, BOOT_ID)
    assert s.argv[-1] == "arg one"


# --- processes over time: fork, exec, long-running -----------------------------------------


def test_forked_child_gets_its_own_spool_with_inherited_and_new_imports(
    spool_dir: Path, tmp_path: Path
) -> None:
    app = write_py(
        tmp_path / "app",
        {
            "after_fork.py": "C = 1\n",
            "parent_only.py": "P = 1\n",
            "main.py": """
                import os, wsgiref.simple_server
                pid = os.fork()
                if pid == 0:
                    import after_fork
                    print(os.getpid(), flush=True)
                    os._exit(0)
                os.waitpid(pid, 0)
                import parent_only
            """,
        },
    )
    parent, out, err, status = run(trace_argv(spool_dir, PY, "main.py"), cwd=app)
    assert status == 0, err
    child = int(out)
    in_parent = modules(spool_of(spool_dir, parent).records)
    in_child = modules(spool_of(spool_dir, child).records)
    assert "wsgiref.simple_server" in in_child  # inherited: loaded in the child too
    assert_identity(in_child["after_fork"][0], app / "after_fork.py")
    assert "after_fork" not in in_parent
    assert "parent_only" in in_parent
    assert "parent_only" not in in_child
    assert spool_of(spool_dir, child).pid == child


def test_fork_for_a_subprocess_exec_leaves_no_spool_for_the_child(spool_dir: Path) -> None:
    code = (
        "import subprocess; "
        "p = subprocess.Popen(['true'], preexec_fn=lambda: None); p.wait(); print(p.pid)"
    )
    parent, out, err, status = run(trace_argv(spool_dir, PY, "-c", code))
    assert status == 0, err
    assert [p for p, _ in spool.list_spool(str(spool_dir))] == [parent]
    assert int(out) != parent


def test_spool_is_readable_while_the_traced_process_runs(spool_dir: Path) -> None:
    code = textwrap.dedent(
        """
        import importlib, sys
        print("ready", flush=True)
        for line in sys.stdin:
            importlib.import_module(line.strip())
            print("imported", flush=True)
        """
    )
    with running(trace_argv(spool_dir, PY, "-c", code)) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        start = tracer.read_start_time(proc.pid)
        before = spool.read_spool(str(spool_dir), proc.pid, start, boot_id=BOOT_ID, uid=0)
        assert before is not None
        assert "wsgiref.simple_server" not in modules(before)
        proc.stdin.write("wsgiref.simple_server\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "imported"
        after = spool.read_spool(str(spool_dir), proc.pid, start, boot_id=BOOT_ID, uid=0)
        assert after is not None
        assert_identity(modules(after)["wsgiref"][0], stdlib_file("wsgiref"))
        assert "wsgiref.simple_server" in modules(after)


def test_exec_into_another_program_leaves_no_records_for_it(spool_dir: Path) -> None:
    code = "import os, wsgiref; os.execv('/bin/sh', ['sh', '-c', 'echo ready; exec sleep 60'])"
    with running(trace_argv(spool_dir, PY, "-c", code)) as proc:
        start = tracer.read_start_time(proc.pid)
        assert spool.read_spool(str(spool_dir), proc.pid, start, uid=0) is None


def test_failed_exec_keeps_the_spool_of_the_running_program(spool_dir: Path) -> None:
    code = textwrap.dedent(
        """
        import os, wsgiref
        try:
            os.execv("/nonexistent/program", ["program"])
        except OSError:
            pass
        import xml.dom
        print("ready", flush=True)
        import time; time.sleep(60)
        """
    )
    with running(trace_argv(spool_dir, PY, "-c", code)) as proc:
        found = modules(spool_of(spool_dir, proc.pid).records)
        assert "wsgiref" in found
        assert "xml.dom" in found


def test_exec_into_traced_python_replaces_the_spool_with_the_new_image(spool_dir: Path) -> None:
    code = (
        "import os, sys, wsgiref; "
        "os.execv(sys.executable, [sys.executable, '-c', "
        "'import xml.dom; print(\"ready\", flush=True); import time; time.sleep(60)'])"
    )
    with running(trace_argv(spool_dir, PY, "-c", code)) as proc:
        found = modules(spool_of(spool_dir, proc.pid).records)
        assert "xml.dom" in found
        assert "wsgiref" not in found


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")
def test_imports_made_before_a_chroot_are_outside_the_new_root_not_deleted(
    spool_dir: Path, tmp_path: Path
) -> None:
    jail = tmp_path / "jail"
    jail.mkdir()
    code = (
        f"import os, wsgiref; os.chroot({str(jail)!r}); os.chdir('/'); "
        "print('ready', flush=True); import time; time.sleep(60)"
    )
    with running(trace_argv(spool_dir, PY, "-c", code)) as proc:
        assert "wsgiref" in modules(spool_of(spool_dir, proc.pid).records)
        stale = [PY, "-m", "imgdiff", "stale", "--root", str(jail), "--spool", str(spool_dir)]
        _, out, err, status = run([*stale, "--exit-code"])
        assert status == 0, (out, err)  # nothing stale: the host's files were imported


# --- robustness in the traced program ------------------------------------------------------


def test_traceback_of_a_failing_module_body_is_unchanged(spool_dir: Path, tmp_path: Path) -> None:
    app = write_py(
        tmp_path / "app", {"outer.py": "import inner\n", "inner.py": "raise ValueError('x')\n"}
    )
    _, _, plain, _ = run([PY, "-c", "import outer"], cwd=app)
    _, _, traced, status = run(trace_argv(spool_dir, PY, "-c", "import outer"), cwd=app)
    assert status == 1
    assert traced == plain
    assert "importlib" not in traced


def test_unusable_spool_disables_tracing_without_disturbing_the_program(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    _, out, err, status = run(trace_argv(not_a_dir, PY, "-c", "import wsgiref; print('ran')"))
    assert (status, out) == (0, "ran\n")
    assert err.count("imgdiff.trace") == 1


def test_tracer_does_not_follow_a_symlink_planted_at_its_spool_name(
    spool_dir: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    # the same pid and start time survive exec: plant the link, then exec the traced program
    code = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from imgdiff.trace import hooks, tracer
        os.makedirs({str(spool_dir)!r}, exist_ok=True)
        name = tracer.spool_file_name(os.getpid(), tracer.read_start_time())
        os.symlink({str(victim)!r}, os.path.join({str(spool_dir)!r}, name))
        env = hooks.child_env(os.environ, {str(spool_dir)!r})
        os.execve(sys.executable, [sys.executable, "-c", "print('ran')"], env)
        """
    )
    _, out, err, status = run([PY, "-c", code])
    assert (status, out) == (0, "ran\n")
    assert "imgdiff.trace" in err
    assert victim.read_text() == "precious\n"


def test_program_file_that_reuses_the_spool_descriptor_number_is_never_written_or_emptied(
    spool_dir: Path, tmp_path: Path
) -> None:
    code = textwrap.dedent(
        """
        import os, sys
        os.closerange(3, 1024)  # a daemon's clean-up: the spool descriptor too
        fds = [os.open(f"data{i}.txt", os.O_RDWR | os.O_CREAT, 0o644) for i in range(600)]
        for fd in fds:
            os.write(fd, b"program data\\n")
        import wsgiref.simple_server
        if sys.argv[1] == "exec":
            os.execv("/bin/true", ["true"])
        """
    )
    for how in ("exec", "stay"):
        pid, _, err, status = run(trace_argv(spool_dir, PY, "-c", code, how), cwd=tmp_path)
        assert (status, err) == (0, "")
        assert {p.read_text() for p in tmp_path.glob("data*.txt")} == {"program data\n"}
        if how == "stay":  # the spool file reopened by its path: the records go on there
            assert "wsgiref.simple_server" in modules(spool_of(spool_dir, pid).records)


def test_spool_descriptor_leaves_the_low_numbers_to_the_program(spool_dir: Path) -> None:
    code = "import os; print(os.open(os.devnull, os.O_RDONLY))"
    _, plain, err, status = run([PY, "-c", code])
    assert status == 0, err
    _, traced, err, status = run(trace_argv(spool_dir, PY, "-c", code))
    assert (status, traced) == (0, plain), err


def test_second_install_in_the_same_process_records_nothing_twice(spool_dir: Path) -> None:
    code = (
        "import imgdiff.trace.tracer as t, wsgiref; t.install(); t.install(); "
        "print(t.is_installed(), t.is_active())"
    )
    pid, out, err, status = run(trace_argv(spool_dir, PY, "-c", code), cwd=REPO)
    assert status == 0, err
    assert out.split() == ["False", "False"]  # the start-up hook's copy is the one recording
    assert len(modules(spool_of(spool_dir, pid).records)["wsgiref"]) == 1
    assert len(spool.list_spool(str(spool_dir))) == 1


@pytest.mark.parametrize("hooks", ["transient", "wrap", "audit"])
def test_every_hook_flavour_records_packages_and_submodules(spool_dir: Path, hooks: str) -> None:
    code = (
        "import imgdiff.trace.tracer as t; "
        f"t._install({str(spool_dir)!r}, {hooks!r}); "
        "import wsgiref.simple_server; print(t.hooks())"
    )
    pid, out, err, status = run([PY, "-c", code], cwd=REPO)
    assert (status, out) == (0, f"{hooks}\n"), err
    found = modules(spool_of(spool_dir, pid).records)
    assert_identity(found["wsgiref"][0], stdlib_file("wsgiref"))
    assert_identity(found["wsgiref.simple_server"][0], stdlib_file("wsgiref.simple_server"))
    # who imported what: the module whose body ran the import statement
    by = {name: records[0].by for name, records in found.items()}
    if hooks == "audit":
        assert by["wsgiref.handlers"] is None  # an audit event does not say
    else:
        assert by["wsgiref.handlers"] == "wsgiref.simple_server"
        assert by["wsgiref.util"] == "wsgiref.handlers"
        assert by["wsgiref.simple_server"] == ""  # the program (here: -c code)


@pytest.mark.parametrize("hooks", ["transient", "wrap"])
def test_import_is_attributed_to_a_module_of_its_own_thread(
    spool_dir: Path, tmp_path: Path, hooks: str
) -> None:
    app = write_py(
        tmp_path / "app",
        {
            "slow.py": "import __main__; __main__.started.set(); __main__.go.wait()\n",
            "fast.py": "X = 1\n",
        },
    )
    code = textwrap.dedent(
        f"""
        import sys, threading
        sys.path[:0] = [{str(app)!r}, {str(REPO)!r}]
        import imgdiff.trace.tracer as t
        t._install({str(spool_dir)!r}, {hooks!r})
        started, go = threading.Event(), threading.Event()
        worker = threading.Thread(target=__import__, args=("slow",))
        worker.start()
        started.wait()  # slow's body runs in the worker
        import fast
        go.set()
        worker.join()
        """
    )
    pid, _, err, status = run([PY, "-c", code])
    assert status == 0, err
    found = modules(spool_of(spool_dir, pid).records)
    assert (found["slow"][0].by, found["fast"][0].by) == ("", "")


def test_tracing_keeps_no_frame_on_the_stack_while_a_module_body_runs(
    spool_dir: Path, tmp_path: Path
) -> None:
    app = write_py(
        tmp_path / "app", {"probe.py": "import sys; DEPTH = len(__import__('inspect').stack())\n"}
    )
    code = "import sys, probe; print(probe.DEPTH)"
    _, plain, err, status = run([PY, "-c", code], cwd=app)
    assert status == 0, err
    _, traced, err, status = run(trace_argv(spool_dir, PY, "-c", code), cwd=app)
    assert status == 0, err
    assert traced == plain


# --- entry points --------------------------------------------------------------------------


def test_cli_runs_a_script_in_process_with_its_arguments_and_exit_status(
    spool_dir: Path, tmp_path: Path
) -> None:
    app = write_py(
        tmp_path / "app",
        {
            "helper.py": "H = 1\n",
            "serve.py": """
                import sys, helper
                print(__name__, sys.argv[1:], sys.path[0])
                sys.exit(3)
            """,
        },
    )
    pid, out, err, status = run(trace_argv(spool_dir, "serve.py", "--port", "8"), cwd=app)
    assert status == 3, err
    assert out.split(maxsplit=1)[0] == "__main__"
    assert "['--port', '8']" in out
    assert out.rstrip().endswith(str(app))
    found = modules(spool_of(spool_dir, pid).records)
    assert_identity(found["__main__"][-1], app / "serve.py")
    assert_identity(found["helper"][0], app / "helper.py")


def test_cli_runs_a_module_in_process(spool_dir: Path, tmp_path: Path) -> None:
    app = write_py(
        tmp_path / "app",
        {"svc/__init__.py": "", "svc/main.py": "import sys; print(__name__, sys.argv[1:])\n"},
    )
    pid, out, err, status = run(trace_argv(spool_dir, "-m", "svc.main", "x"), cwd=app)
    assert status == 0, err
    assert out == "__main__ ['x']\n"
    found = modules(spool_of(spool_dir, pid).records)
    assert_identity(found["svc"][0], app / "svc/__init__.py")
    assert_identity(found["__main__"][-1], app / "svc/main.py")


def test_cli_runs_a_package_in_process_recording_its_dunder_main(
    spool_dir: Path, tmp_path: Path
) -> None:
    app = write_py(tmp_path / "app", {"tool/__init__.py": "", "tool/__main__.py": "X = 1\n"})
    pid, _, err, status = run(trace_argv(spool_dir, "-m", "tool"), cwd=app)
    assert status == 0, err
    found = modules(spool_of(spool_dir, pid).records)
    assert_identity(found["__main__"][-1], app / "tool/__main__.py")
    assert_identity(found["tool"][0], app / "tool/__init__.py")


def test_cli_execs_other_programs_and_python_started_by_them_traces_itself(
    spool_dir: Path,
) -> None:
    wrapper = 'exec "$0" -c "import wsgiref; import os; print(os.getpid())"'
    pid, out, err, status = run(trace_argv(spool_dir, "sh", "-c", wrapper, PY))
    assert status == 0, err
    assert int(out) == pid  # the shell exec'd python: same process
    assert "wsgiref" in modules(spool_of(spool_dir, pid).records)


def test_python_started_with_dash_m_by_an_exec_wrapper_records_its_main_module(
    spool_dir: Path, tmp_path: Path
) -> None:
    app = write_py(tmp_path / "app", {"tool.py": "print('tool')\n"})
    pid, out, err, status = run(trace_argv(spool_dir, PY, "-m", "tool"), cwd=app)
    assert (status, out) == (0, "tool\n"), err
    assert_identity(modules(spool_of(spool_dir, pid).records)["__main__"][0], app / "tool.py")


def test_python_script_started_through_the_exec_path_records_the_script(
    spool_dir: Path, tmp_path: Path
) -> None:
    app = write_py(tmp_path / "app", {"job.py": "print('job')\n"})
    pid, _, err, status = run(trace_argv(spool_dir, PY, "job.py"), cwd=app)
    assert status == 0, err
    assert_identity(modules(spool_of(spool_dir, pid).records)["__main__"][0], app / "job.py")


def test_start_up_hook_still_runs_the_sitecustomize_it_shadows(
    spool_dir: Path, tmp_path: Path
) -> None:
    hook = "import sys; print('site hook ran for', sys.argv[0])\n"
    other = write_py(tmp_path / "other", {"sitecustomize.py": hook})
    code = f"import sys; print({hooks.SITEHOOK_DIR!r} in sys.path)"
    argv = trace_argv(spool_dir, PY, "-c", code)
    pid, out, err, status = run(argv, env=clean_env(PYTHONPATH=f"{other}{os.pathsep}{REPO}"))
    assert status == 0, err
    # the launcher (-m imgdiff.trace) has it too; then the traced python, hook dir gone
    assert out.splitlines() == ["site hook ran for -m", "site hook ran for -c", "False"]
    assert spool_of(spool_dir, pid).records


def test_command_not_found_exits_127(spool_dir: Path) -> None:
    _, _, err, status = run(trace_argv(spool_dir, "no-such-command-imgdiff"))
    assert status == 127
    assert "not found" in err


def test_pth_hook_traces_start_up_and_uninstall_removes_it(spool_dir: Path, tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    _, out, err, status = run(
        [PY, "-m", "imgdiff.trace", "--install-pth", str(site), "--spool", str(spool_dir)],
        cwd=REPO,
    )
    assert status == 0, err
    assert out.strip() == str(site / hooks.PTH_NAME)
    code = f"import site; site.addsitedir({str(site)!r}); import wsgiref; print('ok')"
    pid, out, err, status = run([PY, "-c", code])
    assert (status, out, err) == (0, "ok\n", "")
    assert "wsgiref" in modules(spool_of(spool_dir, pid).records)
    uninstall = [PY, "-m", "imgdiff.trace", "--uninstall-pth", str(site)]
    assert run(uninstall, cwd=REPO)[3] == 0
    assert not (site / hooks.PTH_NAME).exists()
    assert run(uninstall, cwd=REPO)[1] == "none\n"


def test_uninstall_leaves_a_foreign_pth_file_of_the_same_name(tmp_path: Path) -> None:
    (tmp_path / hooks.PTH_NAME).write_text("import something_else\n")
    with pytest.raises(ValueError, match=r"not written by imgdiff\.trace"):
        hooks.uninstall_pth(str(tmp_path))
    assert (tmp_path / hooks.PTH_NAME).exists()


# --- the reader against hostile spool files ------------------------------------------------

PID, START = 4242, 777


def record_line(module: str = "m", path: str = "/usr/lib/m.py") -> bytes:
    return tracer.encode_record(module, path, (1, 2, 3, 4), "source").encode()


def header_line(pid: int = PID, start: int = START, boot_id: str = BOOT_ID) -> bytes:
    return tracer.encode_header(pid, start, boot_id, "/usr/bin/python3", ["app"], []).encode()


def plant(spool_dir: Path, data: bytes, pid: int = PID, start: int = START) -> Path:
    spool_dir.mkdir(exist_ok=True)
    path = spool_dir / tracer.spool_file_name(pid, start)
    path.write_bytes(data)
    return path


def read(spool_dir: Path, **kw: object) -> list[ImportRecord] | None:
    return spool.read_spool(str(spool_dir), PID, START, **kw)  # type: ignore[arg-type]


def test_reader_returns_records_written_by_the_writer(spool_dir: Path) -> None:
    plant(spool_dir, header_line() + record_line("a", "/a.py") + record_line("b", "/b.py"))
    records = read(spool_dir, boot_id=BOOT_ID, uid=0)
    assert records == [
        ImportRecord("a", "/a.py", 1, 2, 3, 4, "source"),
        ImportRecord("b", "/b.py", 1, 2, 3, 4, "source"),
    ]


def test_reader_gives_each_record_the_root_it_was_made_under(spool_dir: Path) -> None:
    header = tracer.encode_header(PID, START, BOOT_ID, "/usr/bin/python3", [], [], (8, 2))
    chroot = tracer.encode_root((9, 77)).encode()
    plant(spool_dir, header.encode() + record_line("a") + chroot + record_line("b"))
    loaded = spool.load_spool(str(spool_dir), PID, START)
    assert loaded is not None
    assert [(r.module, r.root) for r in loaded.records] == [("a", (8, 2)), ("b", (9, 77))]
    assert loaded.malformed == 0


def test_reader_returns_none_without_a_file_for_that_process(spool_dir: Path) -> None:
    plant(spool_dir, header_line() + record_line(), start=START + 1)
    assert read(spool_dir) is None
    assert spool.read_spool(str(spool_dir / "missing"), PID, START) is None


def test_reader_refuses_a_symlinked_spool_file(spool_dir: Path, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.jsonl"
    real.write_bytes(header_line() + record_line())
    spool_dir.mkdir()
    (spool_dir / tracer.spool_file_name(PID, START)).symlink_to(real)
    assert read(spool_dir) is None


def test_reader_does_not_block_on_a_fifo_at_the_spool_name(spool_dir: Path) -> None:
    spool_dir.mkdir()
    os.mkfifo(spool_dir / tracer.spool_file_name(PID, START))
    assert read(spool_dir) is None


def test_reader_trusts_only_a_file_owned_by_the_process_uid_or_root(spool_dir: Path) -> None:
    path = plant(spool_dir, header_line() + record_line())
    os.chown(path, 65534, 65534)
    assert read(spool_dir, uid=1000) is None  # another user wrote imports for uid 1000
    assert read(spool_dir, uid=65534) is not None
    os.chown(path, 0, 0)
    assert read(spool_dir, uid=1000) is not None  # root's word is trusted


def test_reader_ignores_a_spool_from_another_boot_or_for_another_process(
    spool_dir: Path,
) -> None:
    plant(spool_dir, header_line(boot_id="00000000-0000-0000-0000-000000000000") + record_line())
    assert read(spool_dir, boot_id=BOOT_ID) is None
    assert read(spool_dir) is not None  # boot not checked when not given
    plant(spool_dir, header_line(pid=PID + 1) + record_line())
    assert read(spool_dir) is None


def test_reader_skips_garbage_lines_and_counts_them(spool_dir: Path) -> None:
    garbage = [
        b"not json",
        b"[1, 2]",
        b'{"m": 1, "p": "/x"}',
        b"[" * 200_000,
        b'{"m": "caf\xe9", "p": "/x", "kind": "source"}',
        record_line(path="relative/m.py"),
        record_line().replace(b'"kind": "source"', b'"kind": "wat"'),
        record_line().replace(b'"ino": 2', b'"ino": -2'),
        record_line().replace(b'"dev": 1', b'"dev": true'),
        record_line(path="/\ud800.py"),  # a lone surrogate no file name decodes to
        record_line(module="m\udfff"),
        tracer.encode_record("m", "/a.zip", None, "zip", "m\ud800.py").encode(),
        record_line().replace(b'"kind"', b'"by": "\\ud8ff", "kind"'),
        b"x" * (spool.MAX_LINE_BYTES + 10),
        b"",
    ]
    lines = [g.rstrip(b"\n") for g in garbage]
    plant(spool_dir, header_line() + b"\n".join(lines) + b"\n" + record_line("ok", "/ok.py"))
    loaded = spool.load_spool(str(spool_dir), PID, START)
    assert loaded is not None
    assert [r.module for r in loaded.records] == ["ok"]
    assert loaded.malformed == len(garbage)


def test_reader_tolerates_a_torn_last_line(spool_dir: Path) -> None:
    plant(spool_dir, header_line() + record_line("a", "/a.py") + record_line("b", "/b.py")[:30])
    loaded = spool.load_spool(str(spool_dir), PID, START)
    assert loaded is not None
    assert [r.module for r in loaded.records] == ["a"]
    assert (loaded.torn, loaded.malformed) == (True, 0)


def test_reader_rejects_a_spool_without_a_valid_header(spool_dir: Path) -> None:
    plant(spool_dir, record_line() + record_line())
    assert read(spool_dir) is None
    plant(spool_dir, b"")
    assert read(spool_dir) is None


def test_reader_reads_a_huge_file_only_up_to_its_bound(spool_dir: Path) -> None:
    path = plant(spool_dir, header_line() + record_line("a", "/a.py") + record_line("b", "/b.py"))
    with open(path, "r+b") as f:
        f.truncate(1 << 30)  # sparse: a GiB of NULs with no line end
    t0 = time.perf_counter()
    loaded = spool.load_spool(str(spool_dir), PID, START)
    assert time.perf_counter() - t0 < 10
    assert loaded is not None
    assert [r.module for r in loaded.records] == ["a", "b"]
    assert loaded.truncated


def test_reader_stops_after_the_record_limit(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool, "MAX_RECORDS", 3)
    plant(spool_dir, header_line() + record_line() * 10)
    loaded = spool.load_spool(str(spool_dir), PID, START)
    assert loaded is not None
    assert (len(loaded.records), loaded.truncated) == (3, True)


def test_list_spool_names_only_spool_files(spool_dir: Path) -> None:
    plant(spool_dir, header_line(), pid=1, start=2)
    plant(spool_dir, header_line(), pid=30, start=40)
    for junk in ("x.jsonl", "1-2.json", "01-2.jsonl", "1-2-3.jsonl", ".1-2.jsonl"):
        (spool_dir / junk).write_text("")
    assert spool.list_spool(str(spool_dir)) == [(1, 2), (30, 40)]
    assert spool.list_spool(str(spool_dir / "missing")) == []


def test_prune_deletes_files_of_dead_processes_and_of_other_boots(spool_dir: Path) -> None:
    plant(spool_dir, header_line(1, 2), pid=1, start=2)
    plant(spool_dir, header_line(3, 4), pid=3, start=4)
    plant(spool_dir, header_line(5, 6, boot_id="other-boot"), pid=5, start=6)
    (spool_dir / "unrelated.txt").write_text("keep")
    assert spool.prune(str(spool_dir), {(1, 2), (5, 6)}, boot_id=BOOT_ID) == 2
    assert spool.list_spool(str(spool_dir)) == [(1, 2)]
    assert (spool_dir / "unrelated.txt").exists()
    assert spool.prune(str(spool_dir / "missing"), set()) == 0


# --- format details ------------------------------------------------------------------------


def test_start_time_is_counted_from_the_last_parenthesis_of_the_command_name() -> None:
    fields = " ".join(str(n) for n in range(3, 30))  # field 3 .. 29: field 22 reads "22"
    assert tracer.parse_start_time(f"99 (a) (b ) c) {fields}".encode()) == 22
    with open("/proc/self/stat", "rb") as f:
        own = f.read()
    assert tracer.parse_start_time(own) == tracer.read_start_time()


def test_spool_file_start_matches_the_process_start_time_even_with_odd_command_names(
    spool_dir: Path, tmp_path: Path
) -> None:
    odd = tmp_path / "py) (x y"
    odd.symlink_to(PY)
    code = "print('ready', flush=True); import time; time.sleep(60)"
    # outside the venv (pyvenv.cfg is looked up beside the link): the hook needs no imgdiff deps
    with running(trace_argv(spool_dir, str(odd), "-c", code)) as proc:
        with open(f"/proc/{proc.pid}/stat", "rb") as f:
            stat_line = f.read()
        assert b"(py) (x y)" in stat_line
        start = int(stat_line.rsplit(b")", 1)[1].split()[19])
        assert spool.list_spool(str(spool_dir)) == [(proc.pid, start)]

"""Impact: a real delta joined with real running processes, evidence named by `via`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import imgdiff
from imgdiff.impact import _strongest, assess
from imgdiff.results import Evidence
from imgdiff.runtime import Snapshot

from .procs import build_chroot, processes, replace_file, scratch_dir
from .test_runtime import _wait_for_exe, _wsgi_app


def _mirror(base: Path, live: Path) -> tuple[Path, Path]:
    """OLD and NEW images holding a copy of the live directory at its own path."""
    old, new = base / "old", base / "new"
    for image in (old, new):
        shutil.copytree(live, image / str(live).lstrip("/"), symlinks=True)
    return old, new


def test_python_module_change_reaches_importers_only(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    with scratch_dir() as opt, processes() as procs:
        script = _wsgi_app(opt)
        untraced = procs.start([sys.executable, str(script)])
        traced = procs.start(
            [sys.executable, "-m", "imgdiff.trace", "--spool", str(spool), "--", str(script)]
        )
        bystander = procs.python("print('ready', flush=True); import time; time.sleep(600)")
        old, new = _mirror(tmp_path, opt)
        init = new / str(opt).lstrip("/") / "wsgiref/__init__.py"
        init.write_text(init.read_text() + "\n# patched\n")
        util = init.with_name("util.py")  # reached through simple_server -> handlers
        util.write_text(util.read_text() + "\n# patched\n")
        delta = imgdiff.diff(str(old), str(new), use_cache=False)
        snap = Snapshot.capture(pids=[untraced.pid, traced.pid, bystander.pid], spool=str(spool))
        impact = assess(delta, snap, elf_needed=False)
    by_pid = {p.pid: p for p in impact.affected}
    changed = str(opt / "wsgiref/__init__.py")
    deeper = str(opt / "wsgiref/util.py")
    # the evidence chain: which import statements lead from the program to the module
    assert by_pid[untraced.pid].evidence == (
        Evidence(changed, "import-graph", "modified", "python-source", "wsgiref ← __main__"),
        Evidence(
            deeper, "import-graph", "modified", "python-source",
            "wsgiref.util ← wsgiref.handlers ← wsgiref.simple_server ← __main__",
        ),
    )  # fmt: skip
    # the tracer saw who imported what: a chain too, up to the program (or start-up)
    assert by_pid[traced.pid].evidence == (
        Evidence(changed, "imported", "modified", "python-source",
                 "wsgiref ← (program or start-up)"),
        Evidence(
            deeper, "imported", "modified", "python-source",
            "wsgiref.util ← wsgiref.handlers ← wsgiref.simple_server ← (program or start-up)",
        ),
    )  # fmt: skip
    assert bystander.pid not in by_pid


def test_changed_library_reaches_chrooted_process_that_maps_it(tmp_path: Path) -> None:
    with scratch_dir("/srv") as root, processes() as procs:
        build_chroot(root, ["sleep", "sh"])
        (libc_rel,) = [str(p.relative_to(root)) for p in root.rglob("libc.so.6")]
        libdir = (root / libc_rel).parent
        shutil.copy("/usr/lib/x86_64-linux-gnu/libz.so.1.2.13", libdir)
        proc = procs.start(
            ["chroot", str(root), "/usr/bin/sh", "-c", "echo ready; exec /usr/bin/sleep 600"]
        )
        _wait_for_exe(proc.pid, f"{root}/usr/bin/sleep")
        new = tmp_path / "new"
        shutil.copytree(root, new, symlinks=True)
        libc = new / libc_rel
        replace_file(libc, libc.read_bytes() + b"\0")
        libz = libc.with_name("libz.so.1.2.13")
        replace_file(libz, libz.read_bytes() + b"\0")
        delta = imgdiff.diff(str(root), str(new), use_cache=False)
        impact = assess(delta, Snapshot.capture(str(root)), root=str(root))
    (hit,) = [p for p in impact.affected if p.pid == proc.pid]
    vias = {(e.path, e.via) for e in hit.evidence}
    assert ("/" + libc_rel, "mapped") in vias
    assert not any("libz" in path for path, _ in vias)  # nothing there uses libz
    assert impact.considered == 1


def test_strongest_evidence_per_path_wins() -> None:
    weak = Evidence("/usr/lib/libx.so.1", "elf-needed", "modified", "elf-library")
    strong = Evidence("/usr/lib/libx.so.1", "mapped", "modified", "elf-library")
    other = Evidence("/etc/app.conf", "config", "modified", "config")
    assert _strongest([weak, other, strong]) == (strong, other)


def test_elf_evidence_names_the_loading_chain() -> None:
    """dpkg loads libpcre2-8 only through libselinux: the chain says so."""
    from imgdiff.fs.rootfs import RootFS
    from imgdiff.impact import _needed_chain
    from imgdiff.loaders.elf import elf_closure, load_loader_config

    with RootFS("/") as fs:
        closure = elf_closure(fs, "/usr/bin/dpkg", load_loader_config(fs))
    found = dict(closure.libraries)
    assert _needed_chain(closure, found["libpcre2-8.so.0"]) == "needed by libselinux.so.1 ← dpkg"
    assert _needed_chain(closure, found["libselinux.so.1"]) == "needed by dpkg"
    assert closure.interpreter is not None
    assert _needed_chain(closure, closure.interpreter) == "the loader (PT_INTERP) of dpkg"


def test_processes_that_exit_after_the_snapshot_are_skipped(tmp_path: Path) -> None:
    """The snapshot saw them; by the time their roots are read they are gone (or their
    pid is another process's): no crash, no evidence, no gap."""
    with scratch_dir() as opt, processes() as procs:
        script = _wsgi_app(opt)
        doomed = procs.start([sys.executable, str(script)])
        survivor = procs.start([sys.executable, str(script)])
        old, new = _mirror(tmp_path, opt)
        init = new / str(opt).lstrip("/") / "wsgiref/__init__.py"
        init.write_text(init.read_text() + "\n# patched\n")
        delta = imgdiff.diff(str(old), str(new), use_cache=False)
        snap = Snapshot.capture(pids=[doomed.pid, survivor.pid])
        doomed.kill()
        doomed.wait()
        impact = assess(delta, snap, elf_needed=False)
    assert [p.pid for p in impact.affected] == [survivor.pid]
    assert impact.uninspected == ()


def test_via_carries_the_strength_order_and_its_json_value() -> None:
    from imgdiff.model import Via

    assert [v.value for v in sorted(Via, key=lambda v: v.strength)] == [
        "exe", "mapped", "imported", "open", "config", "deleted", "import-graph", "elf-needed",
    ]  # fmt: skip
    e = Evidence("/etc/app.conf", "config", "modified", "config")
    assert e.via is Via.CONFIG  # converted on construction
    assert json.dumps({"via": e.via}) == '{"via": "config"}'

"""The verdict on the issue's acceptance scenarios, with real images and real processes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from imgdiff import BadInput
from imgdiff.cli import main
from imgdiff.pipeline import plan_update
from imgdiff.plan import Policy
from imgdiff.results import Verdict

from .conftest import gnu_tar, write_tree
from .procs import (
    CGROUP2,
    build_chroot,
    children,
    join_cgroup,
    processes,
    replace_file,
    scratch_dir,
    unit_cgroup,
)
from .test_runtime import _wait_for_exe, _wsgi_app


class Host:
    """OLD live as a chroot with a process in a unit; NEW a copy the test changes."""

    def __init__(self, old: Path, new: Path, unit: str, pid: int) -> None:
        self.old, self.new, self.unit, self.pid = old, new, unit, pid

    def plan(self, policy: Policy | None = None) -> Verdict:
        return plan_update(
            str(self.old), str(self.new), root=str(self.old), policy=policy, use_cache=False
        ).verdict

    def libc(self) -> Path:
        (found,) = self.new.rglob("libc.so.6")
        return found


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    with scratch_dir("/srv") as old, processes() as procs, unit_cgroup() as (unit, cg):
        build_chroot(old, ["sleep", "sh"])
        (old / "etc/app").mkdir(parents=True)
        (old / "etc/app/app.conf").write_text("workers = 4\n")
        (old / "usr/share/doc/app").mkdir(parents=True)
        (old / "usr/share/doc/app/README").write_text("docs\n")
        proc = procs.start(
            ["chroot", str(old), "/usr/bin/sh", "-c",
             "exec 3</etc/app/app.conf; echo ready; exec /usr/bin/sleep 600"]
        )  # fmt: skip
        _wait_for_exe(proc.pid, f"{old}/usr/bin/sleep")
        join_cgroup(cg, proc.pid)
        new = tmp_path / "new"
        shutil.copytree(old, new, symlinks=True)
        yield Host(old, new, unit, proc.pid)


def test_changed_library_restarts_the_unit_that_maps_it(host: Host) -> None:
    libc = host.libc()
    replace_file(libc, libc.read_bytes() + b"\0")
    verdict = host.plan()
    assert verdict.verdict == "restart"
    (step,) = verdict.steps
    assert (step.unit, step.pids) == (host.unit, (host.pid,))
    assert ("/" + str(libc.relative_to(host.new)), "mapped") in {
        (e.path, e.via) for e in step.reasons
    }


def test_changed_config_restarts_the_unit_that_holds_it(host: Host) -> None:
    (host.new / "etc/app/app.conf").write_text("workers = 8\n")
    verdict = host.plan()
    assert verdict.verdict == "restart"
    assert [(e.path, e.via) for e in verdict.steps[0].reasons] == [("/etc/app/app.conf", "config")]


def test_config_named_by_unit_file_package_or_command_line_restarts_the_unit(
    tmp_path: Path,
) -> None:
    """Scenario 3 where nothing holds the changed file open: the unit file names it, the
    package that ships the running program marks it a conffile, or the command line
    names it."""
    from .debs import build_deb, dpkg

    with (
        scratch_dir("/srv") as old,
        processes() as procs,
        unit_cgroup() as (unit, cg),
        unit_cgroup() as (other_unit, other_cg),
    ):
        build_chroot(old, ["sleep", "sh"])
        for d in ("info", "updates"):
            (old / "var/lib/dpkg" / d).mkdir(parents=True)
        (old / "var/lib/dpkg/status").touch()
        tool = {"/usr/bin/apptool": Path("/usr/bin/sleep").read_bytes(),
                "/etc/apptool.conf": b"level = 1\n"}  # fmt: skip
        deb = build_deb(tmp_path, "apptool", "1.0", tool, conffiles=("/etc/apptool.conf",))
        dpkg(old, "-i", str(deb))
        (old / "usr/bin/apptool").chmod(0o755)
        (old / "etc/app").mkdir()
        for name in ("env", "tool.conf", "cmd.conf"):
            (old / "etc/app" / name).write_text("a = 1\n")
        units = old / "etc/systemd/system"
        units.mkdir(parents=True)
        (units / unit).write_text(
            "[Service]\nEnvironmentFile=-/etc/app/env\n"
            "ExecStart=/usr/bin/apptool 600 --config=/etc/app/tool.conf\n"
        )
        tool_proc = procs.start(
            ["chroot", str(old), "/usr/bin/sh", "-c", "echo ready; exec /usr/bin/apptool 600"]
        )
        _wait_for_exe(tool_proc.pid, f"{old}/usr/bin/apptool")
        join_cgroup(cg, tool_proc.pid)
        os.mkfifo(old / "hold")  # a shell blocked opening it: no child to leave behind
        shell = procs.start(
            ["chroot", str(old), "/usr/bin/sh", "-c", "echo ready; read x </hold",
             "sh", "/etc/app/cmd.conf", "/", "/etc/"]  # directories name no file
        )  # fmt: skip
        join_cgroup(other_cg, shell.pid)
        new = tmp_path / "new"
        shutil.copytree(old, new, symlinks=True, ignore=shutil.ignore_patterns("hold"))
        os.mkfifo(new / "hold")

        def plan() -> dict[str | None, set[tuple[str, str, str]]]:
            verdict = plan_update(str(old), str(new), root=str(old), use_cache=False).verdict
            return {
                s.unit: {(e.path, e.via, e.detail) for e in s.reasons}
                for s in verdict.steps
                if s.action == "restart"
            }

        assert plan() == {}
        (new / "etc/apptool.conf").write_text("level = 2\n")
        assert plan() == {unit: {("/etc/apptool.conf", "config", "conffile of dpkg:apptool")}}
        (new / "etc/apptool.conf").write_text("level = 1\n")
        for name in ("env", "tool.conf"):
            (new / "etc/app" / name).write_text("a = 2\n")
        assert plan() == {
            unit: {
                ("/etc/app/env", "config", f"named by {unit}"),
                ("/etc/app/tool.conf", "config", f"named by {unit}"),
            }
        }
        (new / "etc/app/cmd.conf").write_text("a = 2\n")
        assert plan()[other_unit] == {("/etc/app/cmd.conf", "config", "on its command line")}


def _pid_evidence(old: Path, new: Path, pid: int) -> tuple[str, set[tuple[str, str, str]]]:
    """The verdict for updating the live `old` to `new`, and (path, via, detail) of the
    reasons of the steps that name `pid`."""
    verdict = plan_update(str(old), str(new), root=str(old), use_cache=False).verdict
    found = {
        (e.path, e.via.value, e.detail) for s in verdict.steps if pid in s.pids for e in s.reasons
    }
    return verdict.verdict.value, found


def test_conffile_of_a_package_from_the_same_source_restarts_the_program(
    tmp_path: Path,
) -> None:
    """Debian's -common split: the program is `webtool`'s, its configuration a conffile of
    `webtool-common` (built from the same source). The process runs outside any unit
    and does not hold the file open; a conffile of a package from another source, or of
    a part of the same source with a daemon of its own, is no evidence."""
    from imgdiff.manifest import Manifest
    from imgdiff.packages.view import PackageView

    from .debs import build_deb, dpkg

    with scratch_dir("/srv") as old, processes() as procs:
        build_chroot(old, ["sleep", "sh"])
        for d in ("info", "updates"):
            (old / "var/lib/dpkg" / d).mkdir(parents=True)
        (old / "var/lib/dpkg/status").touch()
        conf, other_conf = "/etc/webtool/webtool.conf", "/etc/othertool.conf"
        helper_conf = "/etc/webtool/helperd.conf"
        debs = [
            build_deb(tmp_path, "webtool-common", "1.0-1", {conf: b"workers = 1\n"},
                      conffiles=(conf,), arch="all", source="webtool (1.0-1)"),
            build_deb(tmp_path, "webtool", "1.0-1+b1",
                      {"/usr/sbin/webtool": Path("/usr/bin/sleep").read_bytes()},
                      depends="webtool-common"),
            build_deb(tmp_path, "othertool", "2.0", {other_conf: b"a = 1\n"},
                      conffiles=(other_conf,), source="othersrc"),
            # a part with a daemon of its own (as systemd-timesyncd beside systemd): its
            # configuration is that daemon's, not webtool's
            build_deb(tmp_path, "webtool-helperd", "1.0-1",
                      {helper_conf: b"x = 1\n",
                       "/usr/lib/systemd/systemd-webtool-helperd": b"#!/bin/sh\n"},
                      conffiles=(helper_conf,), source="webtool"),
        ]  # fmt: skip
        dpkg(old, "-i", *map(str, debs))
        (old / "usr/sbin/webtool").chmod(0o755)
        sources = {
            p.name: p.source for p in PackageView.read(Manifest.read(old, use_cache=False)).packages
        }
        assert sources == {
            "webtool": "webtool",
            "webtool-common": "webtool",
            "othertool": "othersrc",
            "webtool-helperd": "webtool",
        }
        proc = procs.start(
            ["chroot", str(old), "/usr/bin/sh", "-c", "echo ready; exec /usr/sbin/webtool 600"]
        )
        _wait_for_exe(proc.pid, f"{old}/usr/sbin/webtool")
        new = tmp_path / "new"
        shutil.copytree(old, new, symlinks=True)

        (new / other_conf.lstrip("/")).write_text("a = 2\n")
        (new / helper_conf.lstrip("/")).write_text("x = 2\n")
        assert _pid_evidence(old, new, proc.pid) == ("no-action", set())
        (new / conf.lstrip("/")).write_text("workers = 2\n")
        assert _pid_evidence(old, new, proc.pid) == (
            "restart",
            {(conf, "config", "conffile of dpkg:webtool-common (same source as webtool)")},
        )


def test_config_of_an_rpm_subpackage_of_the_same_source_restarts_the_program(
    tmp_path: Path,
) -> None:
    """The -common split with rpms: `webtool-common` is a subpackage of the source rpm
    that builds `webtool`, whose program runs; its %config file changes. Another source
    rpm's %config file is no evidence."""
    from .rpm_fixtures import Spec, build, have_rpm_tools, install, subpackage

    if not have_rpm_tools():
        pytest.skip("rpmbuild/rpm not installed (scripts/dev.sh installs them for CI)")
    conf, other_conf = "/etc/webtool/webtool.conf", "/etc/othertool.conf"
    webtool = Spec(
        "webtool",
        "1.0",
        files=(("/usr/sbin/webtool", "placeholder\\n", ""),),
        subpackages=(("common", ((conf, "workers = 1\\n", "%config(noreplace)"),)),),
    )
    othertool = Spec("othertool", "2.0", files=((other_conf, "a = 1\\n", "%config"),))
    topdir = tmp_path / "build"
    rpms = [build(webtool, topdir), subpackage(webtool, "common", topdir), build(othertool, topdir)]
    with scratch_dir("/srv") as old, processes() as procs:
        build_chroot(old, ["sleep", "sh"])
        install(old, "/var/lib/rpm", rpms)
        exe = old / "usr/sbin/webtool"
        exe.write_bytes(Path("/usr/bin/sleep").read_bytes())  # the program: a real one
        exe.chmod(0o755)
        proc = procs.start(
            ["chroot", str(old), "/usr/bin/sh", "-c", "echo ready; exec /usr/sbin/webtool 600"]
        )
        _wait_for_exe(proc.pid, str(exe))
        new = tmp_path / "new"
        shutil.copytree(old, new, symlinks=True)

        (new / other_conf.lstrip("/")).write_text("a = 2\n")
        assert _pid_evidence(old, new, proc.pid) == ("no-action", set())
        (new / conf.lstrip("/")).write_text("workers = 2\n")
        assert _pid_evidence(old, new, proc.pid) == (
            "restart",
            {(conf, "config", "conffile of rpm:webtool-common (same source as webtool)")},
        )


def test_process_still_mapping_a_replaced_file_is_planned_even_if_the_update_agrees(
    host: Host,
) -> None:
    """The live root already has NEW's libc (an earlier update, applied without restarts):
    the delta does not touch libc, but the process maps the replaced one."""
    libc = host.libc()
    live_libc = host.old / libc.relative_to(host.new)
    replace_file(live_libc, live_libc.read_bytes())  # rewritten, same bytes: nothing to do
    assert host.plan().steps == ()
    patched = libc.read_bytes() + b"\0"
    replace_file(libc, patched)
    replace_file(live_libc, patched)
    verdict = host.plan()
    assert verdict.verdict == "restart"
    (step,) = verdict.steps
    assert step.unit == host.unit
    (e,) = step.reasons
    assert (e.path, e.via, e.status, e.detail) == (
        "/" + str(libc.relative_to(host.new)), "deleted", "stale", "replaced on disk",
    )  # fmt: skip


def test_docs_only_change_is_no_action(host: Host) -> None:
    (host.new / "usr/share/doc/app/README").write_text("better docs\n")
    (host.new / "usr/share/doc/app/CHANGES").write_text("new\n")
    verdict = host.plan()
    assert verdict.verdict == "no-action"
    assert "documentation" in verdict.reasons[0]
    assert verdict.steps == ()


def test_kernel_change_needs_a_reboot_and_keeps_the_restart_plan(host: Host) -> None:
    (host.new / "boot").mkdir()
    (host.new / "boot/vmlinuz-6.1.0-99-amd64").write_bytes(b"\0" * 4096)
    libc = host.libc()
    replace_file(libc, libc.read_bytes() + b"\0")
    verdict = host.plan()
    assert verdict.verdict == "reboot"
    assert any("vmlinuz" in r for r in verdict.reasons)
    assert verdict.steps  # what the restart plan would have been


def test_directories_alone_under_boot_need_no_reboot(host: Host) -> None:
    (host.new / "boot/grub").mkdir(parents=True)
    verdict = host.plan()
    assert verdict.verdict == "no-action"
    (host.new / "boot/grub/grub.cfg").write_text("set default=0\n")
    verdict = host.plan()
    assert verdict.verdict == "reboot"
    assert verdict.reason_codes == ("reboot-file-changed",)  # the file, not its directories


def test_changed_library_of_a_containers_init_needs_a_reboot(host: Host) -> None:
    """PID 1 of a pid namespace whose root is OLD (a container's init) maps libc: a libc
    change cannot be restarted around it."""
    with processes() as procs:
        holder = procs.start(
            ["unshare", "--pid", "--fork", "--kill-child", "chroot", str(host.old),
             "/usr/bin/sleep", "600"],
            ready=False,
        )  # fmt: skip
        init = _child_of(holder.pid)
        _wait_for_exe(init, f"{host.old}/usr/bin/sleep")
        libc = host.libc()
        replace_file(libc, libc.read_bytes() + b"\0")
        verdict = host.plan()
    assert verdict.verdict == "reboot"
    (reason,) = [r for r in verdict.reasons if f"pid {init} " in r]
    assert "PID 1 of its pid namespace" in reason
    assert "libc.so.6" in reason
    assert host.pid in {pid for s in verdict.steps for pid in s.pids}  # the plan it supersedes
    assert init not in {pid for s in verdict.steps for pid in s.pids}  # never a step


def test_a_scopes_processes_are_restarted_as_processes_not_as_the_scope(host: Host) -> None:
    """systemd cannot restart a scope (a session, a `systemd-run --scope` command)."""
    scope = f"imgdiff-test-{os.getpid()}.scope"
    with processes() as procs, unit_cgroup(scope) as (_, cg):
        proc = procs.start(
            ["chroot", str(host.old), "/usr/bin/sh", "-c", "echo ready; exec /usr/bin/sleep 600"]
        )
        _wait_for_exe(proc.pid, f"{host.old}/usr/bin/sleep")
        join_cgroup(cg, proc.pid)
        libc = host.libc()
        replace_file(libc, libc.read_bytes() + b"\0")
        verdict = host.plan()
    assert verdict.verdict == "restart"
    (step,) = [s for s in verdict.steps if proc.pid in s.pids]
    assert (step.unit, step.main_pid, step.command) == (None, proc.pid, "/usr/bin/sleep 600")
    assert scope not in {s.unit for s in verdict.steps}


def _child_of(pid: int) -> int:
    for _ in range(500):
        started = children(pid)
        if started:
            return started[0]
        time.sleep(0.01)
    raise AssertionError(f"{pid} started no child")


def test_unreadable_pid_1_is_judged_by_the_roots_init_program(host: Host) -> None:
    from imgdiff.impact import init_evidence
    from imgdiff.pipeline import diff
    from imgdiff.plan import decide
    from imgdiff.results import Impact

    for tree in (host.old, host.new):
        (tree / "sbin").mkdir(exist_ok=True)
        (tree / "sbin/init").symlink_to("/usr/bin/sleep")
    (host.new / "etc/app/app.conf").write_text("workers = 8\n")
    unrelated = diff(str(host.old), str(host.new), use_cache=False)
    assert init_evidence(unrelated, str(host.old)) is None
    libc = host.libc()
    replace_file(libc, libc.read_bytes() + b"\0")
    delta = diff(str(host.old), str(host.new), use_cache=False)
    guessed = init_evidence(delta, str(host.old))
    assert guessed is not None
    assert guessed.pid == 1
    assert guessed.init
    assert guessed.exe == "/usr/bin/sleep"
    (e,) = guessed.evidence
    assert (e.path, e.via) == ("/" + str(libc.relative_to(host.new)), "elf-needed")
    assert e.detail == "PID 1 not readable: assumed from /sbin/init; needed by sleep"
    assert e.confirmed is False  # a guess, and the JSON says so
    assert guessed.assumed_from == "/sbin/init"
    verdict = decide(delta, Impact((guessed,), considered=0, uninspected=()))
    assert verdict.verdict == "reboot"
    assert verdict.reasons[0].startswith(
        "PID 1 (assumed from /sbin/init: /usr/bin/sleep) uses changed files"
    )
    assert verdict.steps == ()  # PID 1 is never a restart step


def test_large_change_needs_a_reimage(host: Host) -> None:
    for path in host.new.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.write_bytes(path.read_bytes() + b"\0")
    verdict = host.plan(Policy(reimage_share=0.5))
    assert verdict.verdict == "reimage"
    assert "of the image's files changed" in verdict.reasons[0]


def test_changed_unit_file_adds_a_daemon_reload_step(host: Host) -> None:
    units = host.new / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    (units / "app.service").write_text("[Service]\nExecStart=/usr/bin/sleep 600\n")
    verdict = host.plan()
    assert verdict.verdict == "restart"
    assert verdict.steps[0].action == "daemon-reload"


def test_added_dropin_or_override_reloads_then_restarts_the_running_unit(host: Host) -> None:
    """A drop-in or an /etc copy added for a running unit changes its effective
    configuration as much as an edit to its unit file does."""
    unit_file = "[Service]\nExecStart=/usr/bin/sleep 600\n"
    prefix = host.unit.split("-")[0]
    for tree in (host.old, host.new):
        (tree / "usr/lib/systemd/system").mkdir(parents=True)
        (tree / "usr/lib/systemd/system" / host.unit).write_text(unit_file)
    for added in (
        f"etc/systemd/system/{host.unit}.d/x.conf",
        f"usr/lib/systemd/system/{host.unit}.d/x.conf",
        "etc/systemd/system/service.d/x.conf",
        f"etc/systemd/system/{prefix}-.service.d/x.conf",
        f"etc/systemd/system/{host.unit}",
    ):
        path = host.new / added
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("[Service]\nNice=5\n")
        verdict = host.plan()
        path.unlink()
        assert verdict.verdict == "restart", added
        reload, restart = verdict.steps
        assert reload.action == "daemon-reload"
        assert (restart.action, restart.unit) == ("restart", host.unit), added
        assert [e.path for e in restart.reasons] == ["/" + added]


def test_a_dropin_added_for_a_running_template_instance_restarts_it(tmp_path: Path) -> None:
    """getty@tty1.service reads getty@.service and getty@tty1.service.d/ too."""
    template = f"imgdiff-test-{uuid.uuid4().hex[:8]}@.service"
    instance = template.replace("@.", "@a.")
    with (
        scratch_dir("/srv") as old,
        processes() as procs,
        unit_cgroup(instance) as (unit, cg),
    ):
        build_chroot(old, ["sleep", "sh"])
        units = old / "usr/lib/systemd/system"
        units.mkdir(parents=True)
        (units / template).write_text("[Service]\nExecStart=/usr/bin/sleep 600\n")
        proc = procs.start(
            ["chroot", str(old), "/usr/bin/sh", "-c", "echo ready; exec /usr/bin/sleep 600"]
        )
        _wait_for_exe(proc.pid, f"{old}/usr/bin/sleep")
        join_cgroup(cg, proc.pid)
        new = tmp_path / "new"
        shutil.copytree(old, new, symlinks=True)
        dropin = new / f"etc/systemd/system/{instance}.d/x.conf"
        dropin.parent.mkdir(parents=True)
        dropin.write_text("[Service]\nNice=5\n")
        verdict = plan_update(str(old), str(new), root=str(old), use_cache=False).verdict
    reload, restart = verdict.steps
    assert reload.action == "daemon-reload"
    assert (restart.action, restart.unit) == ("restart", unit)


def test_python_module_change_plans_only_its_importer(tmp_path: Path) -> None:
    with scratch_dir() as opt, processes() as procs:
        script = _wsgi_app(opt)
        (opt / "plugin.py").write_text("VALUE = 1\n")  # beside the app, never imported
        user = procs.start([sys.executable, str(script)])
        other = procs.python("print('ready', flush=True); import time; time.sleep(600)")
        old, new = tmp_path / "old", tmp_path / "new"
        for image in (old, new):
            shutil.copytree(opt, image / str(opt).lstrip("/"))
        init = new / str(opt).lstrip("/") / "wsgiref/__init__.py"
        init.write_text(init.read_text() + "\n# patched\n")
        (new / str(opt).lstrip("/") / "plugin.py").write_text("VALUE = 2\n")
        # this host is not the tiny OLD image: the drift check of "/" says so, and the
        # policy lets the plan go on
        strict = plan_update(str(old), str(new), use_cache=False).verdict
        verdict = plan_update(
            str(old), str(new), use_cache=False, policy=Policy(allow_drift=True)
        ).verdict
        every_module = plan_update(
            str(old), str(new), use_cache=False,
            policy=Policy(allow_drift=True, untraced="strict"),
        ).verdict  # fmt: skip
    assert strict.verdict == "reimage"
    assert "matches neither OLD nor NEW" in strict.reasons[0]
    assert "by top directory" in strict.reasons[0]  # the host has far more than OLD
    pids = {pid: step for step in verdict.steps for pid in step.pids}
    assert verdict.verdict == "restart"
    assert [(e.path, e.via) for e in pids[user.pid].reasons] == [
        (str(opt / "wsgiref/__init__.py"), "import-graph")
    ]
    assert other.pid not in pids
    # the plan says the untraced processes were judged by their graphs ...
    assert any(
        "untraced Python processes judged by static import graphs" in r for r in verdict.reasons
    )
    # ... and the strict policy counts the module on the app's sys.path it never imports,
    # but nothing that is not on the other process's sys.path
    pids = {pid: step for step in every_module.steps for pid in step.pids}
    assert {(e.path, e.detail) for e in pids[user.pid].reasons} == {
        (str(opt / "wsgiref/__init__.py"), "wsgiref ← __main__"),
        (str(opt / "plugin.py"), "on its sys.path (untraced: policy untraced = strict)"),
    }
    assert other.pid not in pids


def test_plan_json_contract(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    libc = host.libc()
    replace_file(libc, libc.read_bytes() + b"\0")
    assert main(["plan", str(host.old), str(host.new), "--root", str(host.old), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "imgdiff.verdict/1"
    assert doc["verdict"] in ("no-action", "restart", "reboot", "reimage")
    assert set(doc) >= {"verdict", "reasons", "steps", "uninspected"}
    assert len(doc["reason_codes"]) == len(doc["reasons"])  # additive: one code per reason
    for step in doc["steps"]:
        assert set(step) >= {"unit", "pids", "reasons"}
        assert all(set(r) >= {"path", "via"} for r in step["reasons"])


def test_plan_console_output_is_verdict_first_then_a_tree(
    host: Host, capsys: pytest.CaptureFixture[str]
) -> None:
    libc = host.libc()
    replace_file(libc, libc.read_bytes() + b"\0")
    argv = ["plan", str(host.old), str(host.new), "--root", str(host.old), "--timings"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "verdict: restart"
    tree = captured.out[captured.out.index("steps") :]
    unit_at = tree.index(f"systemctl restart {host.unit}")
    pid_at = tree.index(f"pid {host.pid}", unit_at)
    assert tree.index("libc.so.6", pid_at) > pid_at
    assert "(mapped, modified)" in tree
    stages = [line.split()[0] for line in captured.err.splitlines()]
    assert stages == ["delta", "packages", "unit-files", "snapshot", "impact", "drift", "verdict"]


def test_policy_from_toml_and_bad_policy(tmp_path: Path) -> None:
    good = tmp_path / "p.toml"
    good.write_text('reimage_share = 0.2\nunknown = "lenient"\nnever_restart = ["db.service"]\n')
    assert Policy.load(good) == Policy(0.2, Policy().reboot_paths, "lenient", ("db.service",))
    bad = tmp_path / "bad.toml"
    bad.write_text("reimage_share = 7\n")
    with pytest.raises(BadInput, match="reimage_share"):
        Policy.load(bad)
    for text, message in (
        ('untraced = "maybe"\n', "untraced must be graph|strict, not 'maybe'"),
        ('unknown = "never"\n', "unknown must be strict|lenient"),
        ("drift_ignore = [1, 2]\n", "drift_ignore must be a list of strings"),
        ('allow_drift = "yes"\n', "allow_drift must be true or false"),
        ("reimage_share = true\n", "reimage_share must be a number in (0, 1]"),
        ('never_restart = "db.service"\n', "never_restart must be a list of strings"),
        # a typo that would never match, or match everything, is not silently a default
        ('reboot_paths = ["opt/crit/"]\n', "reboot_paths: 'opt/crit/' is not an absolute path"),
        ('reboot_paths = [""]\n', "reboot_paths: '' is not an absolute path"),
        ('drift_ignore = ["etc/"]\n', "drift_ignore: 'etc/' is not an absolute path"),
        ('drift_ignore = [""]\n', "drift_ignore: '' is not an absolute path"),
        ('never_restart = ["db"]\n', "never_restart: 'db' is not a unit name"),
        ('never_restart = [".service"]\n', "never_restart: '.service' is not a unit name"),
    ):
        bad.write_text(text)
        with pytest.raises(BadInput, match=re.escape(message)):
            Policy.load(bad)
    fine = 'drift_ignore = ["/var/", "*.log"]\nnever_restart = ["a@1.service", "b.socket"]\n'
    good.write_text(fine)
    assert Policy.load(good).never_restart == ("a@1.service", "b.socket")
    bad.write_text("nonsense = 1\n")
    with pytest.raises(BadInput, match="unknown policy keys"):
        Policy.load(bad)


def test_a_policy_takes_lists_where_it_keeps_tuples() -> None:
    """Policy(never_restart=["nginx.service"]) raised TypeError ("must be a list of
    strings, not ['nginx.service']"): only tuples passed, which Policy.load converted."""
    given = Policy(
        never_restart=["nginx.service"], drift_ignore=["/var/", "*.log"], reboot_paths=["/boot/"]
    )
    assert given == Policy(
        never_restart=("nginx.service",), drift_ignore=("/var/", "*.log"), reboot_paths=("/boot/",)
    )
    assert isinstance(given.never_restart, tuple)
    assert hash(given) == hash(attrs.evolve(given))  # still frozen and hashable
    with pytest.raises(TypeError, match="never_restart must be a list of strings"):
        Policy(never_restart="nginx.service")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="drift_ignore must be a list of strings"):
        Policy(drift_ignore=["/var/", 7])  # type: ignore[list-item]


def test_a_policy_file_that_is_not_utf8_is_bad_input_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tomllib decodes before it parses: a Latin-1 comment was an internal error (exit 4,
    UnicodeDecodeError) where any other unreadable policy is bad input (exit 3)."""
    policy = tmp_path / "policy.toml"
    policy.write_bytes("reimage_share = 0.3  # \u00e9t\u00e9\n".encode("latin-1"))
    with pytest.raises(BadInput, match="not a readable policy: not UTF-8"):
        Policy.load(policy)
    tree = tmp_path / "t"
    tree.mkdir()
    for verb in (
        ["verify", str(tree), str(tree)],
        ["plan", str(tree), str(tree), "--root", str(tree)],
    ):
        capsys.readouterr()
        assert main([*verb, "--policy", str(policy)]) == 3, verb[0]
        assert f"{policy}: not a readable policy: not UTF-8" in capsys.readouterr().err


def test_uninspected_processes_escalate_only_under_strict(host: Host) -> None:
    from imgdiff.pipeline import diff
    from imgdiff.plan import decide
    from imgdiff.results import Impact
    from imgdiff.runtime import Gap

    (host.new / "etc/other.conf").write_text("unused = 1\n")  # changed, used by nobody
    delta = diff(str(host.old), str(host.new), use_cache=False)
    blind = Impact((), considered=1, uninspected=(Gap(4242, "access denied: maps"),))
    strict = decide(delta, blind, Policy(unknown="strict"))
    assert strict.verdict == "restart"
    assert strict.uninspected == ("pid 4242: access denied: maps",)
    assert decide(delta, blind, Policy(unknown="lenient")).verdict == "no-action"


def test_live_root_that_drifted_from_old_needs_a_reimage(host: Host) -> None:
    (host.old / "etc/ssh").mkdir()  # shipped by OLD; the host keys in it are made at boot
    (host.new / "etc/ssh").mkdir()
    old_image = host.old.with_name(host.old.name + "-image")
    shutil.copytree(host.old, old_image, symlinks=True)  # OLD as shipped
    try:
        (host.new / "etc/app/app.conf").write_text("workers = 8\n")
        (host.old / "etc/app/local-hack.conf").write_text("x\n")  # a change nobody shipped
        # what a running system writes for itself is not drift (Policy.drift_ignore)
        (host.old / "var/log").mkdir(parents=True)
        (host.old / "var/log/app.log").write_text("started\n")
        (host.old / "etc/hostname").write_text("box-17\n")
        (host.old / "etc/ssh/ssh_host_ed25519_key").write_text("secret\n")
        verdict = plan_update(
            str(old_image), str(host.new), root=str(host.old), use_cache=False
        ).verdict
        assert verdict.verdict == "reimage"
        assert "matches neither OLD nor NEW" in verdict.reasons[0]
        assert "(1 path differs from OLD: /etc/app/local-hack.conf)" in verdict.reasons[0]
        allowed = plan_update(
            str(old_image), str(host.new), root=str(host.old), use_cache=False,
            policy=Policy(allow_drift=True),
        ).verdict  # fmt: skip
        assert allowed.verdict == "restart"
    finally:
        shutil.rmtree(old_image)


def test_live_root_already_at_new_says_so(host: Host) -> None:
    old_image = host.old.with_name(host.old.name + "-image")
    shutil.copytree(host.old, old_image, symlinks=True)
    try:
        (host.new / "usr/share/doc/app/README").write_text("new docs\n")
        (host.old / "usr/share/doc/app/README").write_text("new docs\n")  # applied already
        verdict = plan_update(
            str(old_image), str(host.new), root=str(host.old), use_cache=False
        ).verdict
        assert verdict.reasons[0].startswith("the live root already matches NEW")
        assert verdict.verdict == "no-action"
    finally:
        shutil.rmtree(old_image)


def test_verify_restarted_after_acting_on_the_plan(host: Host) -> None:
    from imgdiff.runtime import Snapshot
    from imgdiff.verify import verify_restarted

    libc_new = host.libc()
    replace_file(libc_new, libc_new.read_bytes() + b"\0")
    verdict = host.plan()
    # act: install NEW's libc into the live root, as the update would
    live_libc = host.old / libc_new.relative_to(host.new)
    replace_file(live_libc, libc_new.read_bytes())
    problems = verify_restarted(verdict, Snapshot.capture(str(host.old)))
    assert len(problems) == 1  # not restarted yet: the unit still maps the old libc
    assert problems[0].startswith(f"{host.unit}: pid {host.pid} still uses")
    with processes() as procs:  # "restart" the unit: a new process in the same cgroup
        os.kill(host.pid, signal.SIGKILL)
        fresh = procs.start(
            ["chroot", str(host.old), "/usr/bin/sh", "-c", "echo ready; exec /usr/bin/sleep 600"]
        )
        _wait_for_exe(fresh.pid, f"{host.old}/usr/bin/sleep")
        join_cgroup(CGROUP2 / "system.slice" / host.unit, fresh.pid)
        after = Snapshot.capture(str(host.old))
        assert [p.unit for p in after.processes if p.pid == fresh.pid] == [host.unit]
        assert verify_restarted(verdict, after) == ()


def test_a_root_nearer_new_says_what_keeps_it_from_new(tmp_path: Path) -> None:
    """An update applied in part (updates 1-3 done, one file of the last missing): the
    drift reason names the few paths that differ from NEW, not only the many from OLD."""
    from imgdiff.drift import check_drift

    files = {f"etc/app/f{i}.conf": "v1\n" for i in range(8)}
    old = write_tree(tmp_path / "old", files)
    new = write_tree(tmp_path / "new", dict.fromkeys(files, "v2\n"))
    live = write_tree(
        tmp_path / "live", {**dict.fromkeys(files, "v2\n"), "etc/app/f0.conf": "v1\n"}
    )
    (live / "etc/app/f1.conf").unlink()
    drift = check_drift(str(live), str(old), str(new), use_cache=False)
    assert len(drift.differs) == 7  # f0 is still OLD's
    assert drift.from_new == ("/etc/app/f0.conf", "/etc/app/f1.conf")
    verdict = plan_update(str(old), str(new), root=str(live), use_cache=False).verdict
    assert verdict.verdict == "reimage"
    assert (
        "(7 paths differ from OLD: by top directory /etc 7; it is nearer NEW (2 paths "
        "differ from NEW: /etc/app/f0.conf, /etc/app/f1.conf))" in verdict.reasons[0]
    )
    # nearer OLD: only what differs from OLD is named
    drift = check_drift(str(old), str(old), str(new), use_cache=False)
    assert drift.from_new == ()


def test_drift_walk_prunes_ignored_trees(tmp_path: Path) -> None:
    from imgdiff.image._dir import DirImage
    from imgdiff.manifest import Manifest

    root = write_tree(tmp_path / "r", {"var/log/a.log": "x", "etc/a.conf": "y"})
    pruned = Manifest.read(DirImage(str(root), prune=lambda p: p == "/var"), use_cache=False)
    assert set(pruned.entries) == {"/var", "/etc", "/etc/a.conf"}


def test_drift_ignore_of_one_path_does_not_hide_what_is_below_it(tmp_path: Path) -> None:
    """ "/dir/" is a tree; "/etc/loc" is that one path: a file added below it is drift."""
    from imgdiff.drift import check_drift

    old = write_tree(tmp_path / "old", {"etc/a.conf": "1"})
    new = write_tree(tmp_path / "new", {"etc/a.conf": "2"})
    live = write_tree(tmp_path / "live", {"etc/a.conf": "1", "etc/loc/f": "local"})
    one = check_drift(str(live), str(old), str(new), use_cache=False, ignore=("/etc/loc",))
    assert one.differs == ("/etc/loc/f",)
    tree = check_drift(str(live), str(old), str(new), use_cache=False, ignore=("/etc/loc/",))
    assert tree.differs == ()


def test_unit_files_of_an_archive_come_from_the_first_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Directories (`*.wants`, `*.d`) and alias symlinks among the unit paths must not
    make the archive be streamed a second time."""
    from imgdiff.manifest import Manifest
    from imgdiff.systemd.unitfiles import ImageUnits, is_unit_file

    src = write_tree(
        tmp_path / "img",
        {
            "usr/lib/systemd/system/web.service": "[Unit]\nAfter=db.service\n",
            "usr/lib/systemd/system/web.service.d/x.conf": "[Unit]\nAfter=cache.service\n",
            "etc/systemd/system/multi-user.target.wants/README": "not a unit\n",
        },
    )
    (src / "etc/systemd/system/www.service").symlink_to("/usr/lib/systemd/system/web.service")
    tar = gnu_tar(src, tmp_path / "img.tar")
    m = Manifest.read(str(tar), use_cache=False, capture=is_unit_file)

    def second_pass() -> None:
        raise AssertionError("the archive was streamed again")

    monkeypatch.setattr(m._image, "read", second_pass)
    assert set(ImageUnits.of(m).files()) == {
        "/usr/lib/systemd/system/web.service",
        "/usr/lib/systemd/system/web.service.d/x.conf",
    }


def test_missed_update_is_named_by_the_packages_the_live_root_is_behind_on(
    tmp_path: Path,
) -> None:
    """Updates 3, 4, 5 of a package: the live root is still at 3, OLD is 4 (missed), NEW
    is 5. The live root matches neither, and its dpkg database says why."""
    from imgdiff.drift import check_drift
    from imgdiff.pipeline import diff
    from imgdiff.plan import decide
    from imgdiff.results import Impact

    from .debs import build_deb, dpkg, new_root

    def svc(version: str) -> Path:
        files = {"/usr/bin/svc": f"#!/bin/sh\n# svc {version}\n".encode(),
                 "/etc/svc.conf": b"level = 1\n"}  # fmt: skip
        return build_deb(tmp_path / "debs", "svc", version, files, conffiles=("/etc/svc.conf",))

    (tmp_path / "debs").mkdir()
    roots = {}
    for name, version in (("live", "3.0-1"), ("old", "4.0-1"), ("new", "5.0-1")):
        roots[name] = new_root(tmp_path / name)
        dpkg(roots[name], "-i", str(svc(version)))
    tool = build_deb(tmp_path / "debs", "localtool", "0.1", {"/usr/bin/localtool": b"x\n"})
    dpkg(roots["live"], "-i", str(tool))  # installed by hand on the box

    drift = check_drift(str(roots["live"]), str(roots["old"]), str(roots["new"]), use_cache=False)
    assert "/usr/bin/svc" in drift.differs
    assert not any(p.startswith("/var/") for p in drift.differs)  # dpkg's own files: ignored
    assert not drift.matches_new
    assert drift.packages == (
        "dpkg:svc:amd64 3.0-1 live, 4.0-1 in OLD (live is older: a missed update)",
        "dpkg:localtool:amd64 0.1 is installed live but not in OLD",
    )
    delta = diff(str(roots["old"]), str(roots["new"]), use_cache=False)
    verdict = decide(delta, Impact((), 0, ()), drift=drift)
    assert verdict.verdict == "reimage"
    assert verdict.reasons[1].startswith("installed packages differ from OLD: dpkg:svc:amd64")


def test_plan_from_a_saved_snapshot(host: Host, tmp_path: Path) -> None:
    """Offline/fleet use: the snapshot was saved earlier, here or on another machine. Only
    a snapshot of this boot lets the live root be checked for drift."""
    from imgdiff.runtime import Snapshot

    sleep = host.old / "usr/bin/sleep"
    replace_file(sleep, sleep.read_bytes())  # same bytes, new inode: the running one is gone
    saved = tmp_path / "snap.json"
    Snapshot.capture(str(host.old)).save(saved)
    old_image = tmp_path / "old-image"
    shutil.copytree(host.old, old_image, symlinks=True)  # OLD as shipped
    libc = host.libc()
    replace_file(libc, libc.read_bytes() + b"\0")
    (host.old / "etc/app/local-hack.conf").write_text("x\n")  # the live root drifts

    def plan(snapshot: Path) -> Verdict:
        return plan_update(
            str(old_image), str(host.new), root=str(host.old), snapshot=str(snapshot),
            use_cache=False,
        ).verdict  # fmt: skip

    same_boot = plan(saved)
    assert same_boot.verdict == "reimage"
    assert "/etc/app/local-hack.conf" in same_boot.reasons[0]
    assert [s.unit for s in same_boot.steps] == [host.unit]  # maps the changed libc
    assert same_boot.reasons[-1].startswith("saved snapshot: import graphs and ELF closures")
    assert same_boot.reason_codes[-1] == "saved-snapshot"
    doc = json.loads(saved.read_text())
    doc["boot_id"] = "another-machine"
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(doc))
    remote = plan(elsewhere)
    assert remote.verdict == "restart"
    (step,) = remote.steps
    assert step.unit == host.unit
    # the kernel's "(deleted)" mark, as recorded, is evidence without looking into /proc:
    # unconfirmed, for this snapshot did not compare the bytes (the CLI's does: then a
    # same-bytes rewrite like this one is none)
    deleted = "deleted or replaced when the snapshot was taken (bytes not compared)"
    assert ("/usr/bin/sleep", "deleted", deleted, False) in {
        (e.path, e.via, e.detail, e.confirmed) for e in step.reasons
    }
    assert remote.reasons[-1] == (
        "saved snapshot of another machine or boot: its root was not checked for drift"
    )
    assert remote.reason_codes[-2:] == ("saved-snapshot", "drift-not-checked")


def _unit_names_a_changed_env_file(host: Host) -> None:
    """OLD's unit reads /etc/app/env (EnvironmentFile=), which NEW changes."""
    (host.old / "etc/systemd/system").mkdir(parents=True)
    (host.old / "etc/systemd/system" / host.unit).write_text(
        "[Service]\nEnvironmentFile=/etc/app/env\nExecStart=/usr/bin/sleep 600\n"
    )
    (host.old / "etc/app/env").write_text("A=1\n")
    shutil.copytree(host.old / "etc", host.new / "etc", dirs_exist_ok=True)
    (host.new / "etc/app/env").write_text("A=2\n")


def test_plan_with_images_shipped_as_tar_archives(host: Host, tmp_path: Path) -> None:
    """OLD and NEW as archives (what a registry or build server ships), OLD live as a
    directory: the live root must compare equal to the OLD archive (no drift)."""
    _unit_names_a_changed_env_file(host)
    old_tar = gnu_tar(host.old, tmp_path / "old.tar")
    new_tar = gnu_tar(host.new, tmp_path / "new.tar", compress="zstd")
    verdict = plan_update(str(old_tar), str(new_tar), root=str(host.old), use_cache=False).verdict
    assert verdict.verdict == "restart", verdict.reasons
    (step,) = verdict.steps
    assert step.unit == host.unit
    assert [(e.path, e.via, e.detail) for e in step.reasons] == [
        ("/etc/app/env", "config", f"named by {host.unit}")
    ]


def test_plan_from_saved_manifests_reads_their_unit_files(host: Host, tmp_path: Path) -> None:
    """Saved manifests keep unit files: OLD's unit names the config its service reads,
    so the plan restarts it as it does from the images themselves."""
    from imgdiff import Manifest

    _unit_names_a_changed_env_file(host)
    saved = []
    for tree in (host.old, host.new):
        saved.append(str(tmp_path / f"{tree.name}.manifest"))
        Manifest.read(str(tree), use_cache=False).save(saved[-1])
    verdict = plan_update(*saved, root=str(host.old), use_cache=False).verdict
    assert verdict == host.plan()
    (step,) = verdict.steps
    assert [(e.path, e.via, e.detail) for e in step.reasons] == [
        ("/etc/app/env", "config", f"named by {host.unit}")
    ]


def test_policy_can_reexecute_systemd_instead_of_rebooting(host: Host) -> None:
    from imgdiff.impact import init_evidence
    from imgdiff.pipeline import diff
    from imgdiff.plan import decide
    from imgdiff.results import Impact

    for tree in (host.old, host.new):  # systemd as the init: here, a copy of sleep
        (tree / "usr/lib/systemd").mkdir(parents=True)
        shutil.copy2(tree / "usr/bin/sleep", tree / "usr/lib/systemd/systemd")
        (tree / "sbin").mkdir(exist_ok=True)
        (tree / "sbin/init").symlink_to("/usr/lib/systemd/systemd")
    libc = host.libc()
    replace_file(libc, libc.read_bytes() + b"\0")
    delta = diff(str(host.old), str(host.new), use_cache=False)
    pid1 = init_evidence(delta, str(host.old))
    assert pid1 is not None
    impact = Impact((pid1,), considered=0, uninspected=())
    assert decide(delta, impact).verdict == "reboot"
    reexec = decide(delta, impact, Policy(reexec_pid1=True))
    assert reexec.verdict == "restart", reexec.reasons
    assert reexec.steps[0].action == "daemon-reexec"
    assert reexec.steps[0].pids == (1,)
    assert "re-executes itself in place" in reexec.reasons[0]
    (host.new / "boot").mkdir()
    (host.new / "boot/vmlinuz-6.1.0-99-amd64").write_bytes(b"\0" * 4096)
    kernel_too = diff(str(host.old), str(host.new), use_cache=False)
    assert decide(kernel_too, impact, Policy(reexec_pid1=True)).verdict == "reboot"


def test_each_stage_is_announced_as_it_starts(host: Host) -> None:
    from imgdiff.pipeline import STAGES

    said: list[str] = []
    plan = plan_update(str(host.old), str(host.new), root=str(host.old), use_cache=False,
                       on_stage=said.append)  # fmt: skip
    assert said == [description for _, description in STAGES]
    # the Plan record carries what was weighed and the seconds of every stage, in order
    assert list(plan.timings) == [name for name, _ in STAGES]
    assert all(seconds >= 0 for seconds in plan.timings.values())
    assert plan.to_json() == plan.verdict.to_json()
    assert plan.delta.stats.unchanged > 0  # the images were read and compared
    assert plan.impact.considered == 1


def test_console_shows_a_units_alike_workers_once(tmp_path: Path) -> None:
    from rich.console import Console

    from imgdiff.pipeline import diff
    from imgdiff.plan import decide
    from imgdiff.report.console import render_verdict
    from imgdiff.results import Evidence, Impact, ProcessImpact

    old = write_tree(tmp_path / "old", {"usr/lib/libx.so.1": b"\x7fELF old"})
    new = write_tree(tmp_path / "new", {"usr/lib/libx.so.1": b"\x7fELF new!"})
    delta = diff(str(old), str(new), use_cache=False)
    lib = (Evidence("/usr/lib/libx.so.1", "mapped", "modified", "elf-library"),)
    workers = tuple(
        ProcessImpact(pid, 0, "web.service", "/usr/sbin/web", ("web",), lib)
        for pid in range(100, 112)
    )
    odd = ProcessImpact(99, 0, "web.service", "/usr/sbin/web-master", ("web",), lib)
    verdict = decide(delta, Impact((odd, *workers), considered=13, uninspected=()))
    console = Console(width=200, record=True)
    console.print(render_verdict(verdict))
    text = console.export_text()
    assert "pids 100 101 102 103 104 105 106 107 (+4)  /usr/sbin/web" in text
    assert "pid 99  /usr/sbin/web-master" in text
    assert text.count("/usr/lib/libx.so.1") == 2  # once per group, not per process


def test_non_utf8_names_travel_through_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config file whose name is not UTF-8, held open by a unit's process."""
    name = b"caf\xe9.conf"
    with scratch_dir("/srv") as old, processes() as procs, unit_cgroup() as (unit, cg):
        build_chroot(old, ["sleep", "sh"])
        (old / "etc").mkdir(exist_ok=True)
        Path(os.fsdecode(bytes(old / "etc") + b"/" + name)).write_text("a = 1\n")
        proc = procs.start(
            ["chroot", str(old), "/usr/bin/sh", "-c",
             b"exec 3</etc/" + name + b"; echo ready; exec /usr/bin/sleep 600"]  # type: ignore[list-item]
        )  # fmt: skip
        _wait_for_exe(proc.pid, f"{old}/usr/bin/sleep")
        join_cgroup(cg, proc.pid)
        new = tmp_path / "new"
        shutil.copytree(old, new, symlinks=True)
        Path(os.fsdecode(bytes(new / "etc") + b"/" + name)).write_text("a = 2\n")
        argv = ["plan", str(old), str(new), "--root", str(old), "--no-cache"]
        assert main([*argv, "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert main(argv) == 0
        console = capsys.readouterr().out
    (step,) = doc["steps"]
    assert step["unit"] == unit
    (reason,) = step["reasons"]
    assert os.fsencode(reason["path"]) == b"/etc/" + name  # exact bytes back
    assert "caf\\xe9.conf" in console  # escaped for people, never raw bytes


def test_a_running_unit_that_new_no_longer_has_is_stopped(host: Host) -> None:
    from imgdiff.runtime import Snapshot
    from imgdiff.verify import verify_restarted

    for tree in (host.old, host.new):
        (tree / "etc/systemd/system").mkdir(parents=True)
    (host.old / "etc/systemd/system" / host.unit).write_text(
        "[Service]\nExecStart=/usr/bin/sleep 600\n"
    )  # NEW drops the service
    verdict = host.plan()
    assert verdict.verdict == "restart"
    reload, stop = verdict.steps
    assert reload.action == "daemon-reload"
    assert [e.path for e in reload.reasons] == [f"/etc/systemd/system/{host.unit}"]
    assert (stop.unit, stop.action, stop.pids) == (host.unit, "stop", (host.pid,))
    assert verdict.reasons[-1] == "1 unit no longer in NEW: stopped, not restarted"
    assert verify_restarted(verdict, Snapshot.capture(str(host.old))) == (
        f"{host.unit}: pid {host.pid} still runs, though NEW has no such unit",
    )
    os.kill(host.pid, signal.SIGKILL)  # act: stop it (the fixture reaps it)
    while Path(f"/proc/{host.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
    assert verify_restarted(verdict, Snapshot.capture(str(host.old))) == ()


def test_a_unit_new_newly_enables_is_started(
    host: Host, capsys: pytest.CaptureFixture[str]
) -> None:
    units = host.new / "etc/systemd/system"
    (units / "multi-user.target.wants").mkdir(parents=True)
    (units / "metrics.service").write_text("[Service]\nExecStart=/usr/bin/sleep 600\n")
    (units / "multi-user.target.wants/metrics.service").symlink_to("../metrics.service")
    verdict = host.plan()
    assert verdict.verdict == "restart"
    start = verdict.steps[-1]
    assert (start.unit, start.action, start.pids) == ("metrics.service", "start", ())
    assert [(e.path, e.detail) for e in start.reasons] == [
        ("/etc/systemd/system/multi-user.target.wants/metrics.service", "enabled in NEW")
    ]
    assert verdict.reasons[-1] == "1 unit newly enabled in NEW and not running: start"
    assert main(["plan", str(host.old), str(host.new), "--root", str(host.old)]) == 0
    assert "systemctl start metrics.service" in capsys.readouterr().out


def _coded_verdicts(tmp_path: Path) -> list[Verdict]:
    """`decide` on small deltas under the impacts, drifts and policies that make each of
    its reasons."""
    from imgdiff.pipeline import diff
    from imgdiff.plan import decide
    from imgdiff.results import Delta, Drift, Evidence, Impact, ProcessImpact
    from imgdiff.runtime.snapshot import Gap

    files = {
        "etc/app.conf": "a = 1\n", "usr/lib/python3/dist-packages/m.py": "x = 1\n",
        "etc/systemd/system/a.service": "[Service]\n", "usr/share/doc/a/README": "a\n",
        **{f"boot/f{i}": "b\n" for i in range(22)},
        **{f"usr/share/x/{i}": "x\n" for i in range(40)},
    }  # fmt: skip
    old = write_tree(tmp_path / "old", files)

    def changed(*paths: str) -> Delta:
        new = write_tree(tmp_path / f"new{len(list(tmp_path.iterdir()))}", files)
        for rel in paths:
            (new / rel).write_text("changed\n")
        return diff(str(old), str(new), use_cache=False)

    update = changed("etc/app.conf", "usr/lib/python3/dist-packages/m.py")
    units = changed("etc/app.conf", "etc/systemd/system/a.service")
    kernel = changed(*(f"boot/f{i}" for i in range(22)))
    docs = changed("usr/share/doc/a/README")
    conf = (Evidence("/etc/app.conf", "config", "modified", "config", "held open"),)
    web = ProcessImpact(7, 1, "web.service", "/usr/bin/web", ("web",), conf)
    init = ProcessImpact(1, 1, None, "/usr/lib/systemd/systemd", ("init",), conf, init=True)
    box = ProcessImpact(9, 1, "box.service", "/sbin/init", ("init",), conf, init=True)
    used = Impact((web,), 3, (Gap(5, "access denied"),), untraced_python=(8,))
    nothing = Impact((), 3, ())
    link = "/etc/systemd/system/multi-user.target.wants/b.service"
    return [
        decide(update, used, drift=Drift(("/etc/x",), False, ("dpkg:a 1 live, 2 in OLD",))),
        decide(update, used, Policy(reimage_share=0.01)),
        decide(
            update, Impact((init, box, web), 3, ()),
            Policy(never_restart=("web.service",), reboot_paths=("/etc/app.conf",)),
        ),
        decide(kernel, nothing),
        decide(
            units, Impact((init, web), 3, ()), Policy(reexec_pid1=True),
            removed_units={"web.service"},
        ),
        decide(update, used, drift=Drift(("/etc/app.conf",), True)),
        decide(docs, nothing, enabled_units={"b.service": link}),
        decide(docs, nothing),
        decide(update, nothing),
        decide(changed(), nothing),
    ]  # fmt: skip


def test_every_reason_decide_gives_has_a_documented_code(tmp_path: Path) -> None:
    """Each reason is a `Reason`: its text (what JSON and the console show) with a stable
    code; every code `decide` can give is reached here, and docs/plan.md lists them all."""
    from imgdiff.results import Reason, ReasonCode

    verdicts = _coded_verdicts(tmp_path)
    reasons = [r for v in verdicts for r in v.reasons]
    assert all(isinstance(r, Reason) and isinstance(r, str) for r in reasons)
    pipeline_only = {
        ReasonCode.SAVED_SNAPSHOT, ReasonCode.DRIFT_NOT_CHECKED, ReasonCode.DRIFT_HINT,
        ReasonCode.OTHER,
    }  # fmt: skip
    assert {r.code for r in reasons} == set(ReasonCode) - pipeline_only
    for v in verdicts:
        doc = json.loads(json.dumps(v.to_json()))
        assert doc["reasons"] == [str(r) for r in v.reasons]
        assert doc["reason_codes"] == [r.code.value for r in v.reasons]
        assert list(doc).index("reason_codes") == list(doc).index("reasons") + 1
    doc_page = (Path(__file__).parent.parent / "docs/plan.md").read_text()
    table = doc_page.split("\n### Reason codes\n", 1)[1].split("\n#", 1)[0]
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", table, re.MULTILINE))
    assert documented == {c.value for c in ReasonCode}


def test_reasons_stay_strings_callers_can_compare_pickle_and_extend() -> None:
    import pickle

    from imgdiff.results import Reason, ReasonCode

    why = Reason("none of the 3 running processes uses any of the 2 changes", "unused")
    assert why == "none of the 3 running processes uses any of the 2 changes"
    assert why.code is ReasonCode.UNUSED
    assert pickle.loads(pickle.dumps(why)).code is ReasonCode.UNUSED
    with pytest.raises(AttributeError):
        why.code = ReasonCode.DRIFT
    with pytest.raises(ValueError, match="no-such-code"):
        Reason("x", "no-such-code")
    own = Verdict("restart", ("my own note",))  # a caller's plain text: coded `other`
    assert own.reason_codes == (ReasonCode.OTHER,)
    assert own.to_json()["reason_codes"] == ["other"]


def test_identical_images_say_so_not_that_all_zero_changes_are_documentation(
    tmp_path: Path,
) -> None:
    tree = write_tree(tmp_path / "img", {"etc/app.conf": "x = 1\n", "usr/bin/app": "#!/bin/sh\n"})
    result = plan_update(str(tree), str(tree), root=str(tree), use_cache=False)
    assert result.verdict.verdict == "no-action"
    assert result.verdict.reason_codes[0] == "no-changes"
    assert result.verdict.reasons[0] == "OLD and NEW hold the same files: nothing changes"


class Merged:
    """A usr-merged OLD (/lib, /bin and /lib64 are links into /usr) whose unit `unit`
    runs `argv` chrooted; NEW is a copy the test changes before `plan`."""

    def __init__(self, old: Path, new: Path, unit: str, change: Callable[[Path], None]) -> None:
        self.old, self.new, self.unit, self.change = old, new, unit, change

    def plan(self) -> Verdict:
        shutil.rmtree(self.new, ignore_errors=True)
        shutil.copytree(self.old, self.new, symlinks=True)
        self.change(self.new)
        return plan_update(
            str(self.old), str(self.new), root=str(self.old), use_cache=False
        ).verdict


@contextlib.contextmanager
def usr_merged(
    tmp_path: Path,
    setup: Callable[[Path, str], None],
    argv: list[str],
    change: Callable[[Path], None],
    unit_name: str | None = None,
) -> Iterator[Merged]:
    """OLD built as Debian 12 lays it out (libc.so.6 a link to its versioned file),
    `setup(OLD, UNIT)` run on it, `argv` started in it in the unit UNIT (`unit_name`, or
    a new name)."""
    with scratch_dir("/srv") as old, processes() as procs, unit_cgroup(unit_name) as (unit, cg):
        lib = old / "usr/lib/x86_64-linux-gnu"
        lib.mkdir(parents=True)
        (old / "usr/bin").mkdir()
        (old / "usr/lib64").mkdir()
        shutil.copy2("/bin/sleep", old / "usr/bin/sleep")
        shutil.copy2(os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6"), lib / "libc-2.36.so")
        (lib / "libc.so.6").symlink_to("libc-2.36.so")
        shutil.copy2(os.path.realpath("/lib64/ld-linux-x86-64.so.2"), old / "usr/lib64")
        for top in ("bin", "lib", "lib64"):
            (old / top).symlink_to(f"usr/{top}")
        setup(old, unit)
        proc = procs.start(["chroot", str(old), *argv], ready=False)
        exe = os.path.realpath(f"{old}/{argv[0]}")
        for _ in range(500):  # exec'd, and the loader has mapped libc
            if (
                os.readlink(f"/proc/{proc.pid}/exe") == exe
                and "libc-" in Path(f"/proc/{proc.pid}/maps").read_text()
            ):
                break
            time.sleep(0.01)
        join_cgroup(cg, proc.pid)
        yield Merged(old, tmp_path / "new", unit, change)


def repoint_libc(new: Path) -> None:
    """NEW's libc.so.6 link points at another file (other bytes), as an upgrade leaves it."""
    lib = new / "usr/lib/x86_64-linux-gnu"
    (lib / "libc-2.37.so").write_bytes((lib / "libc-2.36.so").read_bytes() + b"\0")
    (lib / "libc.so.6").unlink()
    (lib / "libc.so.6").symlink_to("libc-2.37.so")


def _unit(root: Path, unit: str, text: str) -> None:
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True, exist_ok=True)
    (units / unit).write_text(f"[Service]\n{text}")


def _evidence(verdict: Verdict) -> set[tuple[str, str]]:
    return {(e.path, e.via) for s in verdict.steps for e in s.reasons}


def test_library_link_new_repoints_on_a_usr_merged_root_restarts_its_user(
    tmp_path: Path,
) -> None:
    """The loader finds /lib/x86_64-linux-gnu/libc.so.6 through /lib -> usr/lib; NEW
    points the link /usr/lib/x86_64-linux-gnu/libc.so.6 at another file."""

    with usr_merged(tmp_path, lambda old, unit: None, ["/bin/sleep", "600"], repoint_libc) as box:
        verdict = box.plan()
        assert verdict.verdict == "restart"
        assert [s.unit for s in verdict.steps] == [box.unit]
        assert ("/usr/lib/x86_64-linux-gnu/libc.so.6", "elf-needed") in _evidence(verdict)


def test_program_named_through_a_link_new_repoints_restarts_its_unit(tmp_path: Path) -> None:
    """The unit runs /opt/app/current/bin/app, current -> releases/v1; NEW points current
    at releases/v2: a restart would run another program."""

    def setup(old: Path, unit: str) -> None:
        (old / "opt/app/releases/v1/bin").mkdir(parents=True)
        shutil.copy2("/bin/sleep", old / "opt/app/releases/v1/bin/app")
        (old / "opt/app/current").symlink_to("releases/v1")

    def release(new: Path) -> None:
        shutil.copytree(new / "opt/app/releases/v1", new / "opt/app/releases/v2")
        with open(new / "opt/app/releases/v2/bin/app", "ab") as f:
            f.write(b"\0")
        (new / "opt/app/current").unlink()
        (new / "opt/app/current").symlink_to("releases/v2")

    with usr_merged(tmp_path, setup, ["/opt/app/current/bin/app", "600"], release) as box:
        verdict = box.plan()
        assert verdict.verdict == "restart"
        assert ("/opt/app/current", "config") in _evidence(verdict)


def test_env_file_named_through_the_lib_link_restarts_its_unit(tmp_path: Path) -> None:
    """EnvironmentFile=/lib/app/env is /usr/lib/app/env on a usr-merged root."""

    def setup(old: Path, unit: str) -> None:
        (old / "usr/lib/app").mkdir()
        (old / "usr/lib/app/env").write_text("A=1\n")
        _unit(old, unit, "EnvironmentFile=/lib/app/env\nExecStart=/bin/sleep 600\n")

    def change(new: Path) -> None:
        (new / "usr/lib/app/env").write_text("A=2\n")

    with usr_merged(tmp_path, setup, ["/bin/sleep", "600"], change) as box:
        verdict = box.plan()
        assert verdict.verdict == "restart"
        assert ("/usr/lib/app/env", "config") in _evidence(verdict)


def test_env_file_new_adds_restarts_the_unit_that_names_it(host: Host) -> None:
    """EnvironmentFile=-/etc/app.env is optional: NEW adding it changes the next start."""
    (host.old / "etc/systemd/system").mkdir(parents=True)
    (host.old / "etc/systemd/system" / host.unit).write_text(
        "[Service]\nEnvironmentFile=-/etc/app.env\nExecStart=/usr/bin/sleep 600\n"
    )
    shutil.copytree(host.old / "etc", host.new / "etc", dirs_exist_ok=True)
    (host.new / "etc/app.env").write_text("OPTS=-x\n")
    verdict = host.plan()
    assert verdict.verdict == "restart"
    assert [(e.path, e.via, e.status) for e in verdict.steps[0].reasons] == [
        ("/etc/app.env", "config", "added")
    ]


def _restarted(verdict: Verdict) -> dict[str | None, set[tuple[str, str, str]]]:
    """unit -> (path, via, detail) of each restart step's evidence."""
    return {
        s.unit: {(e.path, e.via, e.detail) for e in s.reasons}
        for s in verdict.steps
        if s.action == "restart"
    }


def _edit(path: str, text: str = "changed\n") -> Callable[[Path], None]:
    """A change to NEW: `path` (inside it) written with `text`."""

    def change(new: Path) -> None:
        target = new / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    return change


def test_a_comment_inside_a_continued_exec_line_is_skipped(tmp_path: Path) -> None:
    """systemd.syntax(7): a comment line after a backslash is ignored and the line goes
    on: /etc/app.conf is still an argument of ExecStart=."""

    def setup(old: Path, unit: str) -> None:
        (old / "etc").mkdir()
        (old / "etc/app.conf").write_text("a\n")
        _unit(old, unit, "ExecStart=/bin/sleep \\\n# a comment\n; another\n  /etc/app.conf\n")

    with usr_merged(tmp_path, setup, ["/bin/sleep", "600"], _edit("/etc/app.conf")) as box:
        assert _restarted(box.plan()) == {
            box.unit: {("/etc/app.conf", "config", f"named by {box.unit}")}
        }


def test_an_empty_assignment_in_a_dropin_resets_what_the_unit_names(tmp_path: Path) -> None:
    """`ExecStart=` or `EnvironmentFile=` alone in a drop-in empties the list: the
    files the unit file named before it are no longer read."""

    def setup(old: Path, unit: str) -> None:
        (old / "etc").mkdir()
        for name in ("a.conf", "b.conf", "env"):
            (old / "etc" / name).write_text("a\n")
        _unit(old, unit, "ExecStart=/bin/sleep 600 /etc/a.conf\nEnvironmentFile=/etc/env\n")
        dropin = old / f"etc/systemd/system/{unit}.d/o.conf"
        dropin.parent.mkdir(parents=True)
        dropin.write_text(
            "[Service]\nExecStart=\nExecStart=/bin/sleep 600 /etc/b.conf\nEnvironmentFile=\n"
        )

    with usr_merged(tmp_path, setup, ["/bin/sleep", "600"], _edit("/etc/a.conf")) as box:
        assert box.plan().verdict == "no-action"
        box.change = _edit("/etc/env")
        assert box.plan().verdict == "no-action"
        box.change = _edit("/etc/b.conf")
        assert _restarted(box.plan()) == {
            box.unit: {("/etc/b.conf", "config", f"named by {box.unit}")}
        }


def test_a_dropin_masked_by_a_link_to_dev_null_names_nothing(tmp_path: Path) -> None:
    """/etc/…/UNIT.d/10.conf -> /dev/null masks the vendor's drop-in of that name."""

    def setup(old: Path, unit: str) -> None:
        (old / "etc").mkdir()
        (old / "etc/c.conf").write_text("a\n")
        _unit(old, unit, "ExecStart=/bin/sleep 600\n")
        vendor = old / f"usr/lib/systemd/system/{unit}.d/10.conf"
        vendor.parent.mkdir()
        vendor.write_text("[Service]\nEnvironmentFile=/etc/c.conf\n")
        mask = old / f"etc/systemd/system/{unit}.d/10.conf"
        mask.parent.mkdir(parents=True)
        mask.symlink_to("/dev/null")

    with usr_merged(tmp_path, setup, ["/bin/sleep", "600"], _edit("/etc/c.conf")) as box:
        assert box.plan().verdict == "no-action"


def _mask_link(new: Path, unit: str) -> None:
    link = new / "etc/systemd/system" / unit
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to("/dev/null")


def _mask_empty(new: Path, unit: str) -> None:
    empty = new / "etc/systemd/system" / unit
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.write_text("")


@pytest.mark.parametrize("mask", [_mask_link, _mask_empty])
def test_a_running_unit_new_masks_is_stopped(
    tmp_path: Path, mask: Callable[[Path, str], None]
) -> None:
    """A link to /dev/null or an empty unit file masks the unit (systemd.unit(5)): it
    cannot restart, it is stopped."""

    def setup(old: Path, unit: str) -> None:
        (old / "etc").mkdir()
        (old / "etc/a.conf").write_text("a\n")
        _unit(old, unit, "ExecStart=/bin/sleep 600 /etc/a.conf\n")

    with usr_merged(tmp_path, setup, ["/bin/sleep", "600"], lambda new: None) as box:
        box.change = lambda new: mask(new, box.unit)
        verdict = box.plan()
        assert [(s.action, s.unit) for s in verdict.steps] == [
            ("daemon-reload", None), ("stop", box.unit)
        ]  # fmt: skip
        assert verdict.reason_codes[-1] == "unit-removed"


@pytest.mark.parametrize("mask", [_mask_link, _mask_empty])
def test_a_unit_masked_in_old_reads_the_same_either_way(
    tmp_path: Path, mask: Callable[[Path, str], None]
) -> None:
    """Masked in OLD by a link or by an empty file: its vendor file is not what it
    names (the link's mask was not seen, the vendor file was read)."""

    def setup(old: Path, unit: str) -> None:
        (old / "etc").mkdir()
        (old / "etc/a.conf").write_text("a\n")
        _unit(old, unit, "ExecStart=/bin/sleep 600 /etc/a.conf\n")
        mask(old, unit)

    with usr_merged(tmp_path, setup, ["/bin/sleep", "600"], _edit("/etc/a.conf")) as box:
        assert box.plan().verdict == "no-action"


def test_an_instance_with_its_own_unit_file_is_loaded_from_it(tmp_path: Path) -> None:
    """systemd looks for `food@bar.service` itself before its template `food@.service`."""
    instance = f"imgdiff-test-{uuid.uuid4().hex[:8]}@bar.service"

    def setup(old: Path, unit: str) -> None:
        (old / "etc").mkdir()
        for name in ("a.conf", "b.conf"):
            (old / "etc" / name).write_text("a\n")
        _unit(old, unit.replace("@bar.", "@."), "ExecStart=/bin/sleep 600 /etc/a.conf\n")
        _unit(old, unit, "ExecStart=/bin/sleep 600 /etc/b.conf\n")

    argv = ["/bin/sleep", "600"]
    with usr_merged(tmp_path, setup, argv, _edit("/etc/a.conf"), instance) as box:
        assert box.plan().verdict == "no-action"
        box.change = _edit("/etc/b.conf")
        assert _restarted(box.plan()) == {
            instance: {("/etc/b.conf", "config", f"named by {instance}")}
        }


def test_dropins_under_an_alias_name_apply_to_the_unit(tmp_path: Path) -> None:
    """With ALIAS.service -> UNIT, `ALIAS.service.d/*.conf` configures UNIT."""

    def setup(old: Path, unit: str) -> None:
        (old / "etc").mkdir()
        (old / "etc/b.conf").write_text("a\n")
        _unit(old, unit, "ExecStart=/bin/sleep 600\n")
        (old / "usr/lib/systemd/system" / f"alias-{unit}").symlink_to(unit)
        dropin = old / f"etc/systemd/system/alias-{unit}.d/x.conf"
        dropin.parent.mkdir(parents=True)
        dropin.write_text("[Service]\nEnvironmentFile=/etc/b.conf\n")

    with usr_merged(tmp_path, setup, ["/bin/sleep", "600"], _edit("/etc/b.conf")) as box:
        assert _restarted(box.plan()) == {
            box.unit: {("/etc/b.conf", "config", f"named by {box.unit}")}
        }
        added = f"/etc/systemd/system/alias-{box.unit}.d/y.conf"
        box.change = _edit(added, "[Service]\nNice=5\n")
        verdict = box.plan()
        assert [(s.action, s.unit) for s in verdict.steps] == [
            ("daemon-reload", None), ("restart", box.unit)
        ]  # fmt: skip
        assert _restarted(verdict)[box.unit] == {(added, "config", f"applies to {box.unit}")}


@pytest.mark.parametrize("dropins", ["service.d", "imgdiff-.service.d", "imgdiff-test-.service.d"])
def test_type_and_dash_prefix_dropins_old_has_name_what_the_unit_reads(
    tmp_path: Path, dropins: str
) -> None:
    """`service.d/` applies to every service, `imgdiff-.service.d/` to imgdiff-*.service."""

    def setup(old: Path, unit: str) -> None:
        (old / "etc").mkdir()
        (old / "etc/b.conf").write_text("a\n")
        _unit(old, unit, "ExecStart=/bin/sleep 600\n")
        dropin = old / "usr/lib/systemd/system" / dropins / "10.conf"
        dropin.parent.mkdir()
        dropin.write_text("[Service]\nEnvironmentFile=/etc/b.conf\n")

    with usr_merged(tmp_path, setup, ["/bin/sleep", "600"], _edit("/etc/b.conf")) as box:
        assert _restarted(box.plan()) == {
            box.unit: {("/etc/b.conf", "config", f"named by {box.unit}")}
        }


def test_an_env_file_wildcard_matches_the_images_files(tmp_path: Path) -> None:
    """systemd.exec(5): `EnvironmentFile=` takes a wildcard expression; it matches OLD's
    and NEW's paths (never the host's), a `*` crossing no `/` nor matching a leading dot."""

    def setup(old: Path, unit: str) -> None:
        (old / "etc/envd/sub").mkdir(parents=True)
        for name in ("x.env", "x.conf", ".hidden.env", "sub/z.env"):
            (old / "etc/envd" / name).write_text("A=1\n")
        _unit(old, unit, "EnvironmentFile=-/etc/envd/*.env\nExecStart=/bin/sleep 600\n")

    with usr_merged(tmp_path, setup, ["/bin/sleep", "600"], _edit("/etc/envd/x.conf")) as box:
        for unused in ("/etc/envd/x.conf", "/etc/envd/.hidden.env", "/etc/envd/sub/z.env"):
            box.change = _edit(unused)
            assert box.plan().verdict == "no-action", unused
        for used in ("/etc/envd/x.env", "/etc/envd/y.env"):  # changed, added
            box.change = _edit(used)
            assert _restarted(box.plan()) == {box.unit: {(used, "config", f"named by {box.unit}")}}


def test_a_program_the_start_runs_is_named_by_the_unit(tmp_path: Path) -> None:
    """`ExecStart=/usr/bin/wrapper /bin/sleep 600`: the wrapper execs the service, which
    no longer runs it, but the next start does; so for `ExecStartPre=`. The program of
    `ExecReload=` runs later, from what is on disk then: it is not the running service's."""

    def setup(old: Path, unit: str) -> None:
        for prog in ("wrapper", "prepre", "reload"):
            shutil.copy2(old / "usr/bin/sleep", old / "usr/bin" / prog)
        _unit(
            old, unit,
            "ExecStartPre=-/usr/bin/prepre\nExecStart=/usr/bin/wrapper /bin/sleep 600\n"
            "ExecReload=/usr/bin/reload\n",
        )  # fmt: skip

    def grow(prog: str) -> Callable[[Path], None]:
        def change(new: Path) -> None:
            with open(new / "usr/bin" / prog, "ab") as f:
                f.write(b"\0")

        return change

    with usr_merged(tmp_path, setup, ["/bin/sleep", "600"], grow("reload")) as box:
        assert box.plan().verdict == "no-action"
        for prog in ("wrapper", "prepre"):
            box.change = grow(prog)
            assert _restarted(box.plan()) == {
                box.unit: {(f"/usr/bin/{prog}", "config", f"named by {box.unit}")}
            }


def test_a_unit_file_not_read_completely_leaves_its_processes_uninspected(
    tmp_path: Path,
) -> None:
    """Past `MAX_UNIT_BYTES` a unit file is not parsed: what it names is not all known, so
    its processes are not taken as naming nothing, and the plan warns."""
    from imgdiff.systemd.unitfiles import MAX_UNIT_BYTES

    def setup(old: Path, unit: str) -> None:
        (old / "etc").mkdir()
        (old / "etc/a.conf").write_text("a\n")
        padding = "# padding\n" * (MAX_UNIT_BYTES // 10 + 1)
        _unit(old, unit, f"{padding}ExecStart=/bin/sleep 600\nEnvironmentFile=/etc/a.conf\n")

    with usr_merged(tmp_path, setup, ["/bin/sleep", "600"], _edit("/etc/a.conf")) as box:
        unit_file = f"/usr/lib/systemd/system/{box.unit}"
        strict = box.plan()  # the default policy: an uninspected process may be affected
        assert (strict.verdict, strict.reason_codes) == ("restart", ("uninspected",))
        result = plan_update(
            str(box.old), str(box.new), root=str(box.old), use_cache=False,
            policy=Policy(unknown="lenient"),
        )  # fmt: skip
        (pid,) = [g.pid for g in result.impact.uninspected]
        assert result.verdict.uninspected == (
            f"pid {pid}: unit file over 1 MiB, not read completely: {unit_file}",
        )
        assert [w.path for w in result.delta.warnings] == [unit_file]


def test_a_linked_unit_file_is_read_inside_the_image(tmp_path: Path) -> None:
    """/etc/systemd/system/UNIT -> /opt/units/UNIT (`systemctl link`): the unit is read
    from where the link leads in the image, never from the host's file of that path."""
    host_units = tmp_path / "host-units"

    def setup(old: Path, unit: str) -> None:
        (old / "etc/systemd/system").mkdir(parents=True)
        (old / "opt/units").mkdir(parents=True)
        for name in ("a.conf", "b.conf"):
            (old / "etc" / name).write_text("a\n")
        (old / "opt/units" / unit).write_text("[Service]\nExecStart=/bin/sleep 600 /etc/a.conf\n")
        # ../ past the image's root stays at its root, as in a chroot
        (old / "etc/systemd/system" / unit).symlink_to(f"../../../../../../opt/units/{unit}")
        host_units.mkdir()  # a drop-in linked to a path only the host has
        (host_units / "host.conf").write_text("[Service]\nEnvironmentFile=/etc/b.conf\n")
        (old / f"etc/systemd/system/{unit}.d").mkdir()
        (old / f"etc/systemd/system/{unit}.d/host.conf").symlink_to(host_units / "host.conf")

    with usr_merged(tmp_path, setup, ["/bin/sleep", "600"], _edit("/etc/a.conf")) as box:
        assert _restarted(box.plan()) == {
            box.unit: {("/etc/a.conf", "config", f"named by {box.unit}")}
        }
        box.change = _edit("/etc/b.conf")  # named only by the host's file
        assert box.plan().verdict == "no-action"


def test_a_c_escape_in_an_exec_argument_is_decoded(tmp_path: Path) -> None:
    """`"/etc/x\\x2econf"` is /etc/x.conf to systemd (C escapes, systemd.syntax(7))."""

    def setup(old: Path, unit: str) -> None:
        (old / "etc").mkdir()
        (old / "etc/x.conf").write_text("a\n")
        _unit(old, unit, 'ExecStart=/bin/sleep 600 "/etc/x\\x2econf"\n')

    with usr_merged(tmp_path, setup, ["/bin/sleep", "600"], _edit("/etc/x.conf")) as box:
        assert _restarted(box.plan()) == {
            box.unit: {("/etc/x.conf", "config", f"named by {box.unit}")}
        }


def test_a_vendor_unit_file_an_etc_copy_shadows_is_not_what_the_unit_reads(
    tmp_path: Path,
) -> None:
    """/etc/systemd/system/UNIT overrides /usr/lib/systemd/system/UNIT: NEW editing the
    vendor's file changes nothing the unit runs from (a reload, no restart); adding one
    where it would apply (an /etc copy, a drop-in) still counts."""

    def setup(old: Path, unit: str) -> None:
        _unit(old, unit, "ExecStart=/bin/sleep 600\n")
        (old / "etc/systemd/system").mkdir(parents=True)
        shutil.copy2(old / "usr/lib/systemd/system" / unit, old / "etc/systemd/system" / unit)

    def vendor(new: Path) -> None:
        with open(new / "usr/lib/systemd/system" / box.unit, "a") as f:
            f.write("Environment=A=1\n")

    with usr_merged(tmp_path, setup, ["/bin/sleep", "600"], vendor) as box:
        verdict = box.plan()
        assert [(s.action, s.unit) for s in verdict.steps] == [("daemon-reload", None)]
        dropin = f"/etc/systemd/system/{box.unit}.d/x.conf"
        box.change = _edit(dropin, "[Service]\nNice=5\n")
        assert _restarted(box.plan()) == {box.unit: {(dropin, "config", f"applies to {box.unit}")}}


def test_a_saved_manifest_without_a_linked_units_file_warns(host: Host, tmp_path: Path) -> None:
    """A saved manifest keeps the unit directories' files only: a unit linked from
    /opt is not there to read, and the plan says so instead of taking it as empty."""
    from imgdiff import Manifest

    (host.old / "opt/units").mkdir(parents=True)
    (host.old / "opt/units" / host.unit).write_text("[Service]\nExecStart=/usr/bin/sleep 600\n")
    (host.old / "etc/systemd/system").mkdir(parents=True)
    link = f"/etc/systemd/system/{host.unit}"
    (host.old / link.lstrip("/")).symlink_to(f"/opt/units/{host.unit}")
    saved = str(tmp_path / "old.manifest")
    Manifest.read(str(host.old), use_cache=False).save(saved)
    result = plan_update(saved, str(host.new), root=str(host.old), use_cache=False)
    (warning,) = [w for w in result.delta.warnings if w.path == link]
    assert warning.message.startswith("linked unit file not read: ")


_PIP_META = "Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n"
_PIP_SITE = "usr/local/lib/python3.11/dist-packages"


def _dpkg_status(version: str) -> str:
    return (
        "Package: foo\nStatus: install ok installed\nArchitecture: amd64\n"
        f"Version: {version}\nMaintainer: x\nDescription: foo\n\n"
    )


def test_drift_reads_what_is_installed_under_ignored_trees(tmp_path: Path) -> None:
    """/usr/local/ is left out of the file comparison, not out of the package view: a
    live root that is OLD plus one local edit has OLD's pip packages installed."""
    from imgdiff.drift import check_drift

    files = {
        "etc/a.conf": "1",
        f"{_PIP_SITE}/foo-1.0.dist-info/METADATA": _PIP_META,
        "var/lib/dpkg/status": _dpkg_status("1.0"),
    }
    old = write_tree(tmp_path / "old", files)
    new = write_tree(tmp_path / "new", {**files, "etc/a.conf": "2"})
    live = write_tree(tmp_path / "live", {**files, "etc/issue": "local"})
    drift = check_drift(str(live), str(old), str(new), use_cache=False)
    assert drift.differs == ("/etc/issue",)
    assert drift.packages == ()


def test_a_package_database_other_than_olds_over_olds_files_is_drift(tmp_path: Path) -> None:
    """The files are OLD's, /var/lib/dpkg says other versions are installed (/var/ is
    ignored for files, never for what is installed): the box is not in OLD's state."""
    from imgdiff.drift import check_drift

    files = {"etc/a.conf": "1", "var/lib/dpkg/status": _dpkg_status("1.0")}
    old = write_tree(tmp_path / "old", files)
    new = write_tree(tmp_path / "new", {**files, "etc/a.conf": "2"})
    live = write_tree(tmp_path / "live", {**files, "var/lib/dpkg/status": _dpkg_status("2.0")})
    drift = check_drift(str(live), str(old), str(new), use_cache=False)
    assert drift.differs == ("/var/lib/dpkg",)
    assert drift.packages == ("dpkg:foo:amd64 2.0 live, 1.0 in OLD (live is newer)",)
    # a status rewritten with the same versions (a hold, say) is no drift
    same = write_tree(
        tmp_path / "same",
        {**files, "var/lib/dpkg/status": _dpkg_status("1.0").replace("install ok", "hold ok")},
    )
    assert check_drift(str(same), str(old), str(new), use_cache=False).differs == ()


def test_news_files_under_olds_package_database_are_drift_not_already_new(
    tmp_path: Path,
) -> None:
    """The inverse: the files are NEW's, /var/lib/dpkg still says OLD's versions are
    installed (the database restored, or left out of a copy): the box is not NEW either."""
    from imgdiff.drift import check_drift

    files = {"etc/a.conf": "1", "var/lib/dpkg/status": _dpkg_status("1.0")}
    old = write_tree(tmp_path / "old", files)
    new_files = {"etc/a.conf": "2", "var/lib/dpkg/status": _dpkg_status("2.0")}
    new = write_tree(tmp_path / "new", new_files)
    live = write_tree(tmp_path / "live", {**new_files, "var/lib/dpkg/status": _dpkg_status("1.0")})
    drift = check_drift(str(live), str(old), str(new), use_cache=False)
    assert (drift.differs, drift.matches_new, drift.packages) == (("/etc/a.conf",), False, ())
    assert drift.databases == ("/var/lib/dpkg",)
    assert drift.database_packages == ("dpkg:foo:amd64 1.0 live, 2.0 in NEW (live is older)",)
    verdict = plan_update(str(old), str(new), root=str(live), use_cache=False).verdict
    assert verdict.verdict == "reimage"
    assert [(r.code, str(r)) for r in verdict.reasons][1:] == [
        (
            "package-drift",
            "the package database (/var/lib/dpkg) disagrees with the files, which are NEW's: "
            "dpkg:foo:amd64 1.0 live, 2.0 in NEW (live is older)",
        )
    ]
    # NEW's files with NEW's database: already NEW
    live_new = write_tree(tmp_path / "live-new", new_files)
    drift = check_drift(str(live_new), str(old), str(new), use_cache=False)
    assert (drift.matches_new, drift.databases) == (True, ())

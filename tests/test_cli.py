"""The command line for scripts and people: exit codes, formats, filters, messages,
stdin, the default policy, completion and narrow terminals, on real trees and archives."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgdiff import cli
from imgdiff.cli import main

from .conftest import TreePair, crafted_tar, gnu_tar, member
from .procs import build_chroot, processes, replace_file, scratch_dir

IMGDIFF = str(Path(sys.executable).with_name("imgdiff"))
FILES: dict[str, str | bytes] = {
    "usr/bin/tool": b"\x7fELF" + b"\0" * 60,
    "usr/share/doc/tool/README": "read me\n",
    "etc/tool.conf": "a = 1\n",
}


@pytest.fixture(autouse=True)
def _no_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output in a pipe has no width unless $COLUMNS gives one: tests set it themselves."""
    monkeypatch.delenv("COLUMNS", raising=False)


def run(
    *argv: str, stdin: bytes | None = None, timeout: float | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """The installed `imgdiff` with stdout and stderr pipes (not a terminal); `timeout`
    seconds at most (`subprocess.TimeoutExpired` past them)."""
    done = subprocess.run(
        [IMGDIFF, *argv],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        env={k: v for k, v in os.environ.items() if k != "COLUMNS"} | env,
        check=False,
        timeout=timeout,
    )
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode("utf-8", "surrogateescape"),
        done.stderr.decode("utf-8", "surrogateescape"),
    )


@pytest.fixture
def changed(tree_pair: TreePair) -> tuple[Path, Path]:
    """OLD and NEW differing in a config file (modified) and a doc (added)."""
    old, new = tree_pair(FILES)
    (new / "etc/tool.conf").write_text("a = 2\n")
    (new / "usr/share/doc/tool/NEWS").write_text("news\n")
    return old, new


# -- exit codes ---------------------------------------------------------------------------


def test_diff_exit_code_is_opt_in_and_answers_like_git_diff(
    tree_pair: TreePair, changed: tuple[Path, Path], tmp_path: Path
) -> None:
    old, new = changed
    assert main(["diff", str(old), str(new), "-q"]) == 0  # the contract: it ran
    assert main(["diff", str(old), str(new), "-q", "--exit-code"]) == 1
    assert main(["diff", str(old), str(old), "-q", "--exit-code"]) == 0
    # the filters decide: no kernel changed
    assert main(["diff", str(old), str(new), "-q", "--exit-code", "--kind", "kernel"]) == 0
    assert main(["diff", str(old), str(tmp_path / "nope"), "--exit-code"]) == 3  # errors stay


def test_verify_exit_code(changed: tuple[Path, Path]) -> None:
    old, new = changed
    assert main(["verify", str(new), str(old), "-q"]) == 0
    assert main(["verify", str(new), str(old), "-q", "--exit-code"]) == 1
    assert main(["verify", str(old), str(old), "-q", "--exit-code"]) == 0


@pytest.fixture
def live_old(tmp_path: Path) -> Iterator[tuple[Path, Path, int]]:
    """OLD live as a chroot running sleep; NEW a copy for the test to change."""
    with scratch_dir("/srv") as old, processes() as procs:
        build_chroot(old, ["sleep", "sh"])
        proc = procs.start(
            ["chroot", str(old), "/usr/bin/sh", "-c", "echo ready; exec /usr/bin/sleep 600"]
        )
        exe = f"{old}/usr/bin/sleep"
        while os.path.realpath(f"/proc/{proc.pid}/exe") != exe:
            pass  # exec after "ready"
        new = tmp_path / "new"
        shutil.copytree(old, new, symlinks=True)
        yield old, new, proc.pid


def test_plan_exit_code_names_the_verdict(
    live_old: tuple[Path, Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new, _ = live_old
    argv = ["plan", str(old), str(new), "--root", str(old), "--no-cache", "-q", "--exit-code"]
    monkeypatch.setattr(cli, "SYSTEM_POLICY", str(tmp_path / "absent.toml"))
    assert main(argv) == 0  # no-action
    (libc,) = new.rglob("libc.so.6")
    replace_file(libc, libc.read_bytes() + b"\0")  # mapped by sleep
    assert main(argv) == 1  # restart
    assert main(argv[:-1]) == 0  # without --exit-code: it ran
    (new / "boot").mkdir()
    (new / "boot/grub.cfg").write_text("menuentry\n")
    assert main(argv) == 5  # reboot
    policy = tmp_path / "p.toml"
    policy.write_text("reimage_share = 0.01\n")
    monkeypatch.setenv("IMGDIFF_POLICY", str(policy))  # the default policy, from the env
    assert main(argv) == 6  # reimage


def test_stale_exit_code_and_brief(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A process in a chroot maps a library that is then replaced on disk."""
    with scratch_dir("/srv") as root, processes() as procs:
        build_chroot(root, ["sleep", "sh"])
        root_args = ["--root", str(root)]
        assert main(["stale", *root_args, "--exit-code"]) == 0
        capsys.readouterr()
        proc = procs.start(
            ["chroot", str(root), "/usr/bin/sh", "-c", "echo ready; exec /usr/bin/sleep 600"]
        )
        while os.path.realpath(f"/proc/{proc.pid}/exe") != f"{root}/usr/bin/sleep":
            pass
        (libc,) = root.rglob("libc.so.6")
        replace_file(libc, libc.read_bytes() + b"\0")
        assert main(["stale", *root_args]) == 0
        plain = capsys.readouterr().out.splitlines()
        assert main(["stale", *root_args, "--exit-code", "--brief"]) == 1
        brief = capsys.readouterr().out.splitlines()
        assert main(["stale", *root_args, "--format", "table"]) == 0
        table = capsys.readouterr().out
    assert brief == [f"{proc.pid} - /usr/bin/sleep"]  # PID UNIT EXE, one line per process
    fields = [line.split("\t") for line in plain]
    assert fields[0][:3] == [str(proc.pid), "-", "/usr/bin/sleep"]
    # VIA CONFIRMED PATH: the old bytes, still readable through /proc, differ from the new
    assert ["mapped", "confirmed", "/" + str(libc.relative_to(root))] in [f[3:] for f in fields]
    assert "1 process needs a restart" in table


def test_check_keeps_its_answer_as_the_exit_code(changed: tuple[Path, Path]) -> None:
    old, new = changed
    assert main(["check", str(old), str(old), "-q"]) == 0
    assert main(["check", str(old), str(new), "-q", "--format", "plain"]) == 1


def test_check_json_gives_the_differences_as_records_beside_files_text(
    changed: tuple[Path, Path], tmp_path: Path
) -> None:
    old, new = changed
    (old / "only-old").write_text("x\n")
    done = run("check", str(old), str(new), "--json", "--no-cache")
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["files"] == [
        "/etc/tool.conf (content)",
        "/only-old (only in the tree)",
        "/usr/share/doc/tool/NEWS (missing from the tree)",
    ]  # text, as ever
    assert doc["differences"] == [
        {"path": "/etc/tool.conf", "status": "modified", "aspects": ["content"]},
        {"path": "/only-old", "status": "added", "aspects": []},
        {"path": "/usr/share/doc/tool/NEWS", "status": "removed", "aspects": []},
    ]  # as verify reads them: from the image to the tree
    verify = json.loads(run("verify", str(old), str(new), "--json", "--exact").stdout)
    assert verify["differences"] == doc["differences"]


def test_a_saved_manifest_is_named_by_the_file_given_not_the_image_it_recorded(
    changed: tuple[Path, Path], tmp_path: Path
) -> None:
    old, new = changed
    saved = tmp_path / "old.m"
    assert run("manifest", str(old), "-o", str(saved), "--no-cache").returncode == 0
    for argv in (["pack", str(saved), str(new)], ["pack", str(old), str(saved)]):
        done = run(*argv, "-o", str(tmp_path / "d.idd"))
        assert done.returncode == 3
        assert done.stderr.startswith(f"imgdiff: {saved}: "), done.stderr
    verify = json.loads(run("verify", str(old), str(saved), "--json", "--no-cache").stdout)
    assert verify["image"] == str(saved)  # as check's: the argument as given
    check = json.loads(run("check", str(old), str(saved), "--json", "--no-cache").stdout)
    assert check["image"] == str(saved)


def test_check_says_the_tree_it_checked_when_nothing_runs_in_it(
    changed: tuple[Path, Path],
) -> None:
    old, new = changed
    done = run("check", str(old), str(new), "--format", "plain", "--no-cache")
    assert done.returncode == 1
    assert f"imgdiff: warning: no process runs in {old}: nothing was checked" in done.stderr
    assert "no process runs in /:" not in done.stderr


# -- formats ------------------------------------------------------------------------------


def test_plain_is_the_default_in_a_pipe_one_record_per_line(tree_pair: TreePair) -> None:
    deep = "usr/lib/" + "/".join(f"directory-{i:02}" for i in range(12)) + "/module.py"
    old, new = tree_pair({**FILES, deep: "x = 1\n"})
    (new / deep).write_text("x = 2\n")
    (new / "etc/tab\tname").write_text("t\n")
    done = run("diff", str(old), str(new), "--no-cache")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [
        "added\tconfig\t/etc/tab\\x09name",  # a tab in a name never splits a record
        f"modified\tpython-source\t/{deep}",  # 170 characters: never wrapped
    ]
    table = run("diff", str(old), str(new), "--no-cache", "--format", "table")
    assert "┃" in table.stdout
    assert f"/{deep}" in table.stdout  # in a pipe a table does not wrap either
    as_json = run("diff", str(old), str(new), "--no-cache", "--json")
    assert json.loads(as_json.stdout)["schema"] == "imgdiff.delta/1"


def test_plain_records_of_the_other_listing_verbs(
    changed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = changed
    assert main(["verify", str(new), str(old), "--format", "plain"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "modified\tcontent\t/etc/tool.conf",
        "added\t-\t/usr/share/doc/tool/NEWS",
    ]
    assert main(["snapshot", "--format", "plain"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert rows
    assert all(len(r) == 3 and r[0].isdigit() for r in rows)
    assert main(["plan", str(old), str(new), "--root", str(old), "--format", "plain"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "verdict\tno-action"
    assert all(line.split("\t")[0] in {"verdict", "reason"} for line in out)


def test_warnings_go_to_stderr_one_line_each_and_q_silences_them(tmp_path: Path) -> None:
    """A member under a symlink: extraction cannot place it, and a warning names it."""
    long = "d" * 150
    good = tmp_path / "a.tar"
    good.write_bytes(crafted_tar([member("real/", type=tarfile.DIRTYPE), member("real/f", b"x")]))
    bad = tmp_path / "b.tar"
    bad.write_bytes(
        crafted_tar([
            member("real/", type=tarfile.DIRTYPE), member("real/f", b"x"),
            member(long, type=tarfile.SYMTYPE, linkname="real"), member(f"{long}/g", b"y"),
        ])
    )  # fmt: skip
    done = run("diff", str(good), str(bad), "--no-cache", "--no-packages")
    assert done.returncode == 0, done.stderr
    warnings = done.stderr.splitlines()
    assert len(warnings) == 1  # 190 characters, one line
    assert warnings[0].startswith(f"imgdiff: warning: /{long}/g: ")
    assert done.stdout == f"added\tsymlink\t/{long}\n"
    quiet = run("diff", str(good), str(bad), "--no-cache", "--no-packages", "-q")
    assert quiet.stderr == ""
    assert quiet.stdout == done.stdout


def test_table_warnings_go_to_stderr_first_50_unless_v_none_with_q(tmp_path: Path) -> None:
    """60 members under a symlink: 60 warnings, written as plain writes them."""
    real = [member("real/", type=tarfile.DIRTYPE), member("real/f", b"x")]
    good = tmp_path / "a.tar"
    good.write_bytes(crafted_tar(real))
    bad = tmp_path / "b.tar"
    under = [member(f"link/g{i:02}", b"y") for i in range(60)]
    bad.write_bytes(
        crafted_tar([*real, member("link", type=tarfile.SYMTYPE, linkname="real"), *under])
    )
    argv = ("diff", str(good), str(bad), "--no-cache", "--no-packages", "--format", "table")
    done = run(*argv)
    assert done.returncode == 0, done.stderr
    # (the title holds the tmp path, named after this test: "warning" alone is in it)
    assert "warnings:" not in done.stdout
    assert "warning:" not in done.stdout
    assert "/link/g00" not in done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 51
    assert all(line.startswith("imgdiff: warning: /link/g") for line in lines[:50])
    assert lines[50] == "imgdiff: 10 more warnings (-v shows them)"
    verbose = run(*argv, "-v")
    assert sum(line.startswith("imgdiff: warning: ") for line in verbose.stderr.splitlines()) == 60
    quiet = run(*argv, "-q")
    assert quiet.stderr == ""
    assert quiet.stdout == done.stdout


# -- diff filters and the table -----------------------------------------------------------


def test_diff_filters(changed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    old, new = changed

    def listed(*extra: str) -> list[str]:
        assert main(["diff", str(old), str(new), "--format", "plain", *extra]) == 0
        return [line.split("\t")[2] for line in capsys.readouterr().out.splitlines()]

    assert listed() == ["/etc/tool.conf", "/usr/share/doc/tool/NEWS"]
    assert listed("--kind", "docs") == ["/usr/share/doc/tool/NEWS"]
    assert listed("--kind", "docs,config", "--status", "modified") == ["/etc/tool.conf"]
    assert listed("--path", "/usr/*") == ["/usr/share/doc/tool/NEWS"]
    assert listed("--path", "/usr/*", "--path", "/etc/*.conf") == listed()
    assert main(["diff", str(old), str(new), "--json", "--status", "added"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [c["path"] for c in doc["changes"]] == ["/usr/share/doc/tool/NEWS"]
    assert doc["stats"]["modified"] == 1  # stats stay the whole delta's
    with pytest.raises(SystemExit) as exc:
        main(["diff", str(old), str(new), "--kind", "binary"])
    assert exc.value.code == 2
    assert "choose from" in capsys.readouterr().err


@pytest.fixture(scope="module")
def dpkg_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from .debs import LIBZ, build_deb, dpkg, new_root

    work = tmp_path_factory.mktemp("clipkg")
    libz = Path(LIBZ).read_bytes()

    def lib(version: str, payload: bytes) -> Path:
        files = {
            "/lib/x86_64-linux-gnu/libdemo.so.1": payload,
            "/usr/share/doc/demo-lib/README": b"demo " + version.encode() + b"\n",
        }
        return build_deb(work / version, "demo-lib", version, files)

    tool = build_deb(work, "demo-tool", "1.0", {"/usr/bin/demo-tool": b"#!/bin/sh\n"})
    tool2 = build_deb(work, "demo-tool", "2.0", {"/usr/bin/demo-tool": b"#!/bin/sh\n# 2\n"})
    old = new_root(work / "old")
    dpkg(old, "-i", str(lib("20230311+deb12u1", libz)), str(tool))
    new = new_root(work / "new")
    dpkg(new, "-i", str(lib("20250419~deb12u2", libz + b"\0patched")), str(tool2))
    return old, new


def test_package_filter_and_packages_table_folds_on_a_narrow_terminal(
    dpkg_pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = dpkg_pair
    base = ["diff", str(old), str(new), "--no-cache", "--format", "plain"]
    assert main([*base, "--package", "demo-lib"]) == 0
    paths = {line.split("\t")[2] for line in capsys.readouterr().out.splitlines()}
    assert "/usr/lib/x86_64-linux-gnu/libdemo.so.1" in paths or (
        "/lib/x86_64-linux-gnu/libdemo.so.1" in paths
    )
    assert "/usr/bin/demo-tool" not in paths
    assert main([*base, "--package", "dpkg:demo-t*"]) == 0
    assert "/usr/bin/demo-tool" in capsys.readouterr().out
    narrow = run("packages", str(old), str(new), "--no-cache", "--format", "table", COLUMNS="60")
    assert narrow.returncode == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert max(len(line) for line in lines) <= 60
    assert "…" not in narrow.stdout  # folded, never cut
    rows = [line for line in lines if "│" in line]
    new_column = "".join(r.split("│")[3].strip() for r in rows)
    assert "20250419~deb12u2" in new_column  # whole, over two lines


def test_no_packages_leaves_owners_out_and_refuses_the_package_filter(
    dpkg_pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = dpkg_pair
    base = ["diff", str(old), str(new), "--no-cache", "--json"]
    assert main(base) == 0
    owned = json.loads(capsys.readouterr().out)["changes"]
    assert any("dpkg:demo-tool:amd64" in c["packages"] for c in owned)
    assert main([*base, "--no-packages"]) == 0
    unread = json.loads(capsys.readouterr().out)["changes"]
    assert unread
    assert all("packages" not in c for c in unread)  # not looked up, which is not "none"
    with pytest.raises(SystemExit) as exc:  # it would match nothing, silently
        main([*base, "--no-packages", "--package", "demo-tool", "--exit-code"])
    assert exc.value.code == 2
    assert "--package needs the owners --no-packages leaves unread" in capsys.readouterr().err


def test_table_puts_code_first_and_says_what_it_hides(
    tree_pair: TreePair, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = {f"usr/share/doc/pam/pam_{i:03}.txt": "doc\n" for i in range(250)}
    old, new = tree_pair({**docs, **FILES})
    for name in docs:
        (new / name).write_text("doc 2\n")
    (new / "usr/bin/tool").write_bytes(b"\x7fELF" + b"\1" * 60)
    assert main(["diff", str(old), str(new), "--format", "table", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert out.index("/usr/bin/tool") < out.index("pam_000.txt")
    assert "200 of 251 changes shown; 51 more match (--all lists them)" in out
    assert main(["diff", str(old), str(new), "--format", "table", "--kind", "docs"]) == 0
    assert "200 of 251 changes shown; 50 more match" in (out := capsys.readouterr().out)
    assert "1 left out by the filters" in out
    assert main(["diff", str(old), str(new), "--format", "table", "--all"]) == 0
    assert "251 of 251 changes shown" in capsys.readouterr().out


def test_table_title_escapes_a_name_that_is_not_utf8(
    changed: tuple[Path, Path], tmp_path: Path
) -> None:
    old, new = changed
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/d\xe9r"))
    odd.mkdir()
    shutil.copytree(old, odd / "old", symlinks=True)
    done = run("diff", str(odd / "old"), str(new), "--format", "table", "--no-cache")
    assert done.returncode == 0, done.stderr
    title = "".join(done.stdout.split())  # a title wraps at the table's width
    assert f"{tmp_path}/d\\xe9r/old→{new}" in title
    assert "\udce9" not in done.stdout  # no raw byte


def test_identical_inputs_say_no_differences(
    tree_pair: TreePair, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tree_pair(FILES)
    assert main(["diff", str(old), str(new), "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no differences: ")
    assert "┃" not in out  # no empty table
    assert main(["packages", str(old), str(new), "--format", "table"]) == 0
    assert "no package changes" in capsys.readouterr().out


# -- messages -----------------------------------------------------------------------------


def test_unwritable_output_is_bad_input_before_any_work(
    changed: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, _ = changed
    target = tmp_path / "missing-dir/x.manifest"
    assert main(["manifest", str(old), "-o", str(target)]) == 3
    err = capsys.readouterr().err
    assert err == f"imgdiff: {target}: cannot write: no such directory {target.parent}\n"
    assert main(["snapshot", "-o", str(tmp_path)]) == 3
    assert "is a directory" in capsys.readouterr().err
    assert main(["pack", str(old), str(old), "-o", "/proc/x.idd"]) == 3


def test_an_output_over_a_device_fifo_or_symlink_is_refused_and_left_alone(
    changed: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outputs are renamed over their path: `pack -o /dev/null` replaced the node."""
    old, new = changed
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    kept = tmp_path / "kept.manifest"
    kept.write_text("mine\n")
    link = tmp_path / "link"
    link.symlink_to(kept)
    for target in (null, fifo, link):
        before = os.lstat(target)
        assert main(["pack", str(old), str(new), "-o", str(target)]) == 3
        assert main(["manifest", str(old), "-o", str(target)]) == 3
        err = capsys.readouterr().err
        assert err.startswith(f"imgdiff: {target}: cannot write: "), err
        after = os.lstat(target)
        assert (after.st_mode, after.st_ino, after.st_rdev) == (
            before.st_mode, before.st_ino, before.st_rdev,
        )  # fmt: skip
    assert kept.read_text() == "mine\n"


def test_debug_prints_the_traceback_of_an_internal_error(
    changed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: object) -> int:
        # stands for a bug in a verb: no real input reaches an internal error on purpose
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli._VERBS, "diff", broken)
    old, new = changed
    assert main(["diff", str(old), str(new)]) == 4
    err = capsys.readouterr().err
    assert err == "imgdiff: internal error: RuntimeError: a bug (--debug prints the traceback)\n"
    assert main(["diff", str(old), str(new), "--debug"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert 'raise RuntimeError("a bug")' in err


def test_verbose_and_quiet_work_on_every_verb_before_or_after_it() -> None:
    parser = cli._parser()
    (sub_action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    verbs: dict[str, argparse.ArgumentParser] = sub_action.choices
    assert set(verbs) == set(cli._VERBS)
    for verb, sub in verbs.items():
        options = {o for a in sub._actions for o in a.option_strings}
        assert {"-v", "-q", "--debug", "--verbose", "--quiet"} <= options, verb
    args = parser.parse_args(["-v", "stale"])
    assert (args.verbose, args.quiet) == (1, False)
    args = parser.parse_args(["-q", "stale", "-v", "-v"])
    assert (args.verbose, args.quiet) == (2, True)


def test_verbose_says_the_policy_and_the_time(
    changed: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = changed
    policy = tmp_path / "p.toml"
    policy.write_text("reimage_share = 0.9\n")
    argv = ["plan", str(old), str(new), "--root", str(old), "--policy", str(policy), "-v"]
    assert main([*argv, "--json"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"imgdiff: policy from {policy}"
    assert err[-1].startswith("imgdiff: plan took ")
    assert err[1].split()[0] == "delta"  # seconds per stage


def test_unknown_option_after_a_verb_prints_that_verbs_usage() -> None:
    done = run("verify", "a", "b", "--all")
    assert done.returncode == 2
    assert done.stderr.startswith("usage: imgdiff verify ")
    assert done.stderr.endswith("imgdiff verify: error: unrecognized arguments: --all\n")


def test_an_unknown_option_before_any_verb_is_named() -> None:
    done = run("--bogus")
    assert done.returncode == 2
    assert "imgdiff: error: unrecognized arguments: --bogus" in done.stderr
    assert "required" not in done.stderr
    assert "the following arguments are required: VERB" in run().stderr


def test_output_dash_is_refused_not_a_file_named_dash(
    changed: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old, _ = changed
    monkeypatch.chdir(tmp_path)
    for argv in (["manifest", str(old), "-o", "-"], ["snapshot", "--root", str(old), "-o", "-"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert "-o - is not supported" in capsys.readouterr().err
    assert not (tmp_path / "-").exists()


def test_help_text_of_packages_and_manifest() -> None:
    packages = run("packages", "--help", COLUMNS="300").stdout
    assert "docker-save" in packages
    assert "no package databases" in packages
    manifest = run("manifest", "--help", COLUMNS="300").stdout
    assert "where to write it" in manifest
    assert "-o FILE, --output FILE" in manifest


@pytest.mark.parametrize(
    "verb", [["pack"], ["apply"], ["rollback"], ["demo"], ["fleet", "plan"], ["diff"]]
)
def test_help_names_exactly_the_formats_a_verb_accepts(
    verb: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main([*verb, "--help"])
    out = capsys.readouterr().out
    accepted = re.search(r"\n +--format \{([a-z,]+)\}(.*?)\n +--json", out, re.DOTALL)
    assert accepted is not None
    named = {f for f in ("table", "plain", "json") if re.search(rf"\b{f}\b", accepted[2])}
    assert named == set(accepted.group(1).split(","))


def test_input_error_lists_every_accepted_kind(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image\n")
    done = run("diff", str(junk), str(junk))
    assert done.returncode == 3
    (line,) = done.stderr.splitlines()
    for kind in ("directory", "tar", "zstd", "OCI", "docker-save", "delta archive", "manifest"):
        assert kind in line


@pytest.mark.parametrize(
    ("verb", "where"),
    [("diff", 0), ("diff", 1), ("verify", 1), ("packages", 0), ("apply", 0), ("stale", 0)],
)
@pytest.mark.parametrize("node", ["fifo", "/dev/null"])
def test_a_fifo_or_device_is_refused_without_being_opened(
    tmp_path: Path, verb: str, where: int, node: str
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    if node == "fifo":
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        node = str(fifo)
    args = [str(tree), str(tree)]
    args[where] = node
    argv = ["stale", "--against", node] if verb == "stale" else [verb, *args]
    # opened for reading, a FIFO without a writer blocks for ever: the timeout says so
    done = run(*argv, timeout=30)
    assert done.returncode == 3, done.stderr
    (line,) = done.stderr.splitlines()
    assert f"{node}: " in line
    assert "regular file" in line


# -- stdin --------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [None, "gzip", "zstd"])
def test_dash_reads_an_image_from_stdin(
    changed: tuple[Path, Path], tmp_path: Path, compress: str | None
) -> None:
    old, new = changed
    archive = gnu_tar(new, tmp_path / "new.tar", compress)
    from_file = run("diff", str(old), str(archive), "--no-cache")
    spool = tmp_path / "spool"
    spool.mkdir()
    data = archive.read_bytes()
    from_stdin = run("diff", str(old), "-", "--no-cache", stdin=data, TMPDIR=str(spool))
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert from_stdin.stdout == from_file.stdout
    assert len(from_stdin.stdout.splitlines()) == 2
    assert not list(spool.iterdir())  # the copy of stdin is removed
    both = run("diff", "-", "-", stdin=b"")
    assert both.returncode == 3
    assert "one image only" in both.stderr


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_copy_of_stdin_is_removed_when_the_cli_is_told_to_stop(
    tmp_path: Path, signo: signal.Signals
) -> None:
    # timeout(1), systemd and CI runners stop a job with SIGTERM, a closed terminal with
    # SIGHUP: each unwinds as Ctrl-C does, and exits as a shell reports the signal
    spool = tmp_path / "spool"
    spool.mkdir()
    (tmp_path / "empty").mkdir()
    proc = subprocess.Popen(
        [IMGDIFF, "diff", str(tmp_path / "empty"), "-", "--no-cache"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=os.environ | {"TMPDIR": str(spool)},
    )  # fmt: skip
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"\0" * (1 << 20))  # a copy under way, stdin still open
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while not list(spool.glob("imgdiff-stdin-*/stdin")):
            assert time.monotonic() < deadline, "no copy of stdin was made"
            time.sleep(0.05)
        proc.send_signal(signo)
        assert proc.wait(timeout=60) == 128 + signo
    finally:
        proc.kill()
        proc.stdin.close()
        proc.wait()
    assert not list(spool.iterdir())


def test_main_leaves_the_callers_signal_handlers_as_it_found_them(tmp_path: Path) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    assert main(["diff", str(tmp_path), str(tmp_path), "--no-cache"]) == 0
    assert {s: signal.getsignal(s) for s in before} == before


def test_stdin_is_named_dash_everywhere_the_user_sees_it(
    changed: tuple[Path, Path], tmp_path: Path
) -> None:
    old, new = changed
    data = gnu_tar(new, tmp_path / "new.tar", None).read_bytes()
    runs = [run("diff", str(old), "-", "--json", "--no-cache", stdin=data) for _ in range(2)]
    assert runs[0].stdout == runs[1].stdout  # no random temporary path
    assert json.loads(runs[0].stdout)["new"]["path"] == "-"
    table = run("diff", str(old), "-", "--format", "table", "--no-cache", stdin=data)
    assert f"{old}→-" in "".join(table.stdout.split())  # the title, wrapped or not
    assert "imgdiff-stdin" not in table.stdout
    for argv in (["verify", str(new), "-"], ["check", str(new), "-"]):
        assert json.loads(run(*argv, "--json", "--no-cache", stdin=data).stdout)["image"] == "-"
    empty = run("diff", str(old), "-", stdin=b"")
    assert empty.returncode == 3
    assert empty.stderr == "imgdiff: -: empty file\n"
    saved = tmp_path / "s.m"
    assert run("manifest", "-", "-o", str(saved), stdin=data).returncode == 0
    recorded = json.loads(run("diff", str(saved), str(new), "--json", "--no-cache").stdout)
    assert recorded["old"]["path"] == "-"  # the image it was made from, as given


def test_a_saved_manifest_from_stdin(changed: tuple[Path, Path], tmp_path: Path) -> None:
    old, new = changed
    saved = tmp_path / "old.manifest"
    assert main(["manifest", str(old), "-o", str(saved), "-q"]) == 0
    done = run("verify", str(new), "-", "--exit-code", stdin=saved.read_bytes())
    assert done.returncode == 1, done.stderr
    assert "/etc/tool.conf" in done.stdout


# -- the default policy -------------------------------------------------------------------


def test_default_policy_from_env_then_system_file_and_policy_flag_wins(
    changed: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = changed
    ignore_etc = tmp_path / "etc.toml"
    ignore_etc.write_text('drift_ignore = ["/etc/", "/usr/share/doc/"]\n')
    ignore_nothing = tmp_path / "none.toml"
    ignore_nothing.write_text("drift_ignore = []\n")
    argv = ["verify", str(new), str(old), "-q", "--exit-code"]
    monkeypatch.setattr(cli, "SYSTEM_POLICY", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("IMGDIFF_POLICY", raising=False)
    assert main(argv) == 1
    monkeypatch.setattr(cli, "SYSTEM_POLICY", str(ignore_etc))
    assert main(argv) == 0  # the system file, when it exists
    monkeypatch.setenv("IMGDIFF_POLICY", str(ignore_nothing))
    assert main(argv) == 1  # $IMGDIFF_POLICY before the system file
    assert main([*argv, "--policy", str(ignore_etc)]) == 0  # --policy before both
    monkeypatch.setenv("IMGDIFF_POLICY", str(tmp_path / "missing.toml"))
    assert main(argv) == 3  # a named policy must exist


# -- completion ---------------------------------------------------------------------------


def test_completion_scripts_come_from_the_parser(tmp_path: Path) -> None:
    bash = run("--print-completion", "bash")
    assert bash.returncode == 0
    script = tmp_path / "imgdiff.bash"
    script.write_text(bash.stdout)
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    for word in ("plan", "rollback", "--exit-code", "--brief", "--format"):
        assert word in bash.stdout
    complete = (
        f"source {script}; COMP_WORDS=(imgdiff $WORDS); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); "
        '_shtab_imgdiff; echo "${COMPREPLY[@]}"'
    )

    def completed(words: str) -> str:
        done = subprocess.run(
            ["bash", "-c", complete],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "WORDS": words},
        )
        return done.stdout.strip()

    assert completed("di") == "diff"
    assert completed("plan --exit") == "--exit-code"
    assert completed("stale --br") == "--brief"
    assert completed("diff --kind elf-l") == "elf-library"  # a closed vocabulary's values
    assert completed("diff --status ad") == "added"
    assert "_shtab_compgen_files" in bash.stdout  # image arguments complete file names
    zsh = run("--print-completion", "zsh")
    assert zsh.returncode == 0
    assert zsh.stdout.startswith("#compdef imgdiff")
    assert "--exit-code" in zsh.stdout


# -- narrow terminals ---------------------------------------------------------------------


def test_narrow_terminal_folds_paths_and_hangs_wrapped_reasons(changed: tuple[Path, Path]) -> None:
    old, new = changed
    deep = "/usr/share/doc/tool/" + "long-directory-name/" * 4 + "file.txt"
    (new / deep.lstrip("/")).parent.mkdir(parents=True)
    (new / deep.lstrip("/")).write_text("x\n")
    table = run("diff", str(old), str(new), "--format", "table", COLUMNS="60")
    lines = table.stdout.splitlines()
    assert max(len(line) for line in lines) <= 60
    rows = [line.split("│") for line in lines if line.count("│") == 2]
    assert deep in "".join(r[2].strip() for r in rows)  # folded, whole
    plan = run("plan", str(old), str(new), "--root", str(old), "--format", "table", COLUMNS="40")
    lines = plan.stdout.splitlines()
    assert lines[0] == "verdict: reimage"  # a small tree: most of it changed
    assert lines[1].startswith("  • ")
    assert lines[2].startswith("    ")  # under the text, not under the bullet
    assert lines[2][4] != " "
    assert max(len(line) for line in lines) <= 40


# -- progress on a terminal ---------------------------------------------------------------

CORPUS = Path("/var/tmp/imgdiff-corpus")


def _stderr_on_a_terminal(*argv: str) -> str:
    """Run imgdiff with stderr on a pseudo-terminal (CI unset); what it drew, escapes out."""
    master, slave = os.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"COLUMNS": "150"}
    proc = subprocess.Popen(
        [IMGDIFF, *argv], stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL, env=env
    )
    os.close(slave)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    assert proc.wait() == 0
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", drawn.decode("utf-8", "replace"))


@pytest.mark.skipif(not (CORPUS / "new.tar").exists(), reason="corpus image absent")
def test_progress_counts_entries_with_an_eta_while_reading_and_hashing(tmp_path: Path) -> None:
    drawn = _stderr_on_a_terminal(
        "diff", "--no-cache", str(CORPUS / "old"), str(CORPUS / "new.tar")
    )
    frames = drawn.replace("\r", "\n").splitlines()
    reading = [f for f in frames if "reading" in f and " entries " in f]
    assert reading  # counts while the archive streams (and is hashed)
    assert any(re.search(r"MiB/231\.\d MiB \d:\d\d:\d\d \d:\d\d:\d\d", f) for f in reading)
    saved = tmp_path / "old.manifest"
    drawn = _stderr_on_a_terminal("manifest", "--no-cache", str(CORPUS / "old"), "-o", str(saved))
    frames = drawn.replace("\r", "\n").splitlines()
    # the walk's count stays shown while hashing, which has bytes and an ETA
    assert any(re.search(r"hashing .*11,6\d\d entries .*MiB/[\d.]+ MiB", f) for f in frames)
    assert not _stderr_on_a_terminal("diff", "-q", str(saved), str(CORPUS / "old")).strip()

"""The plan of a running program whose libraries NEW moves: names NEW's loader resolves
elsewhere, closures imgdiff cannot compute, metadata-only changes, glibc-hwcaps variants.

Every test builds a usr-merged OLD with gcc (a `libfoo.so.1` and an `app` that maps it),
starts `app` chrooted in it, and plans OLD -> NEW (`tests.test_plan.usr_merged`).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from imgdiff.results import Evidence, Verdict

from .test_plan import usr_merged

pytestmark = [
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="chroot and ldconfig -r need root"),
]

LIB = "usr/lib/x86_64-linux-gnu"
FOO = f"/{LIB}/libfoo.so.1"
APP = "int foo_version(void);\n#include <unistd.h>\nint main(void) { foo_version(); sleep(600); }\n"


def build_lib(dest: Path, version: int) -> None:
    src = dest.parent / f".foo{version}.c"
    dest.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(f"int foo_version(void) {{ return {version}; }}\n")
    run("gcc", "-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "-o", str(dest), str(src))
    src.unlink()


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def with_app(*link: str) -> Callable[[Path, str], None]:
    """OLD's setup: libfoo.so.1 (version 2) and /usr/bin/app linked with `link`."""

    def setup(old: Path, unit: str) -> None:
        build_lib(old / LIB / "libfoo.so.1", 2)
        (old / "app.c").write_text(APP)
        lib = str(old / LIB / "libfoo.so.1")
        run("gcc", "-o", str(old / "usr/bin/app"), str(old / "app.c"), lib, *link)
        (old / "app.c").unlink()
        (old / "etc/ld.so.conf.d").mkdir(parents=True)
        (old / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
        run("ldconfig", "-r", str(old))

    return setup


def elf_evidence(verdict: Verdict) -> list[Evidence]:
    return [e for s in verdict.steps for e in s.reasons if e.via == "elf-needed"]


def test_library_new_adds_in_a_new_ld_so_conf_directory_restarts_its_user(tmp_path: Path) -> None:
    """NEW's ld.so.conf adds /opt/x, holding another libfoo.so.1, and its cache says so:
    the next start loads it, though no file the process maps changed."""

    def change(new: Path) -> None:
        build_lib(new / "opt/x/libfoo.so.1", 3)
        (new / "etc/ld.so.conf.d/00x.conf").write_text("/opt/x\n")
        run("ldconfig", "-r", str(new))

    with usr_merged(tmp_path, with_app(), ["/usr/bin/app"], change) as box:
        verdict = box.plan()
        assert verdict.verdict == "restart"
        (e,) = [e for e in elf_evidence(verdict) if e.path == "/opt/x/libfoo.so.1"]
        assert e.confirmed
        assert "libfoo.so.1 resolves to /opt/x/libfoo.so.1 in NEW" in e.detail


def test_same_bytes_found_elsewhere_in_new_are_no_evidence(tmp_path: Path) -> None:
    """NEW finds libfoo.so.1 in /opt/x, a copy of the very file in use: nothing to do."""

    def change(new: Path) -> None:
        (new / "opt/x").mkdir(parents=True)
        shutil.copy2(new / LIB / "libfoo.so.1", new / "opt/x/libfoo.so.1")
        (new / "etc/ld.so.conf.d/00x.conf").write_text("/opt/x\n")
        run("ldconfig", "-r", str(new))

    with usr_merged(tmp_path, with_app(), ["/usr/bin/app"], change) as box:
        verdict = box.plan()
        assert elf_evidence(verdict) == []
        assert verdict.verdict == "no-action"


def test_hwcaps_variant_new_adds_is_unconfirmed_evidence(tmp_path: Path) -> None:
    """NEW adds a glibc-hwcaps/x86-64-v2 libfoo.so.1: the loader picks it on a CPU that
    supports x86-64-v2, which imgdiff does not assume either way."""

    def change(new: Path) -> None:
        build_lib(new / LIB / "glibc-hwcaps/x86-64-v2/libfoo.so.1", 3)
        run("ldconfig", "-r", str(new))  # with a cache, the loader looks variants up there

    with usr_merged(tmp_path, with_app(), ["/usr/bin/app"], change) as box:
        verdict = box.plan()
        assert verdict.verdict == "restart"
        (e,) = elf_evidence(verdict)
        assert e.path == f"/{LIB}/glibc-hwcaps/x86-64-v2/libfoo.so.1"
        assert not e.confirmed
        assert "on a CPU that supports it" in e.detail


def test_mode_and_owner_changes_of_mapped_code_are_no_evidence(tmp_path: Path) -> None:
    """The same bytes with another mode or owner: the code in use is what NEW has."""

    def change(new: Path) -> None:
        os.chmod(new / LIB / "libfoo.so.1", 0o600)
        os.chown(new / LIB / "libc-2.36.so", 1, 1)

    with usr_merged(tmp_path, with_app(), ["/usr/bin/app"], change) as box:
        verdict = box.plan()
        assert verdict.verdict == "no-action"


def test_program_whose_closure_cannot_be_read_is_uninspected(tmp_path: Path) -> None:
    """app's PT_DYNAMIC file offset points past the end of the file: it runs (the loader
    reads the dynamic section from memory), imgdiff cannot read its needs, so it is a
    gap, not clean, when NEW changes a library."""

    def setup(old: Path, unit: str) -> None:
        with_app()(old, unit)
        exe = old / "usr/bin/app"
        data = bytearray(exe.read_bytes())
        phoff = struct.unpack_from("<Q", data, 32)[0]
        phentsize, phnum = struct.unpack_from("<HH", data, 54)
        for at in range(phoff, phoff + phnum * phentsize, phentsize):
            if struct.unpack_from("<I", data, at)[0] == 2:  # PT_DYNAMIC: p_offset
                struct.pack_into("<Q", data, at + 8, len(data) + 4096)
        exe.write_bytes(bytes(data))

    def change(new: Path) -> None:
        build_lib(new / LIB / "libfoo.so.1", 3)

    with usr_merged(tmp_path, setup, ["/usr/bin/app"], change) as box:
        verdict = box.plan()
        assert verdict.verdict == "restart"
        assert elf_evidence(verdict) == []
        assert any("ELF closure not known" in gap for gap in verdict.uninspected)


def test_needed_name_found_only_through_a_relative_runpath_is_uninspected(
    tmp_path: Path,
) -> None:
    """RUNPATH `opt/v` is relative to the working directory (/ here, so the program
    runs): imgdiff does not search it, so what app loads is not known."""

    def setup(old: Path, unit: str) -> None:
        with_app("-Wl,--enable-new-dtags,-rpath,opt/v")(old, unit)
        (old / "opt/v").mkdir(parents=True)
        (old / LIB / "libfoo.so.1").rename(old / "opt/v/libfoo.so.1")

    def change(new: Path) -> None:
        build_lib(new / "opt/v/libfoo.so.1", 3)

    with usr_merged(tmp_path, setup, ["/usr/bin/app"], change) as box:
        verdict = box.plan()
        assert verdict.verdict == "restart"
        assert any("libfoo.so.1" in gap for gap in verdict.uninspected)


def mapped_foo(pid: int) -> str:
    """The libfoo.so.1 the process maps (whichever the CPU made the loader pick)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    found = {line.split()[-1] for line in maps.splitlines() if line.endswith("libfoo.so.1")}
    assert len(found) == 1, found
    return found.pop()


@pytest.mark.parametrize("changed", ["mapped", "other"])
def test_hwcaps_variant_the_process_maps_decides_which_change_is_its(
    tmp_path: Path, changed: str
) -> None:
    """OLD has libfoo.so.1 and a glibc-hwcaps/x86-64-v2 variant; the process maps one of
    them (which depends on this CPU, read from its maps). NEW changing that one is
    confirmed evidence; NEW changing the other is none: its next start, on this CPU,
    picks the same variant."""
    variant = f"/{LIB}/glibc-hwcaps/x86-64-v2/libfoo.so.1"

    def setup(old: Path, unit: str) -> None:
        with_app()(old, unit)
        build_lib(old / variant.lstrip("/"), 2)
        run("ldconfig", "-r", str(old))

    target: list[str] = []

    def change(new: Path) -> None:
        build_lib(new / target[0].lstrip("/"), 3)

    with usr_merged(tmp_path, setup, ["/usr/bin/app"], change) as box:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        app = [p for p in pids if _is_app(p, box.old)]
        assert len(app) == 1
        inside = mapped_foo(app[0]).removeprefix(str(box.old))
        assert inside in (FOO, variant)
        other = variant if inside == FOO else FOO
        target.append(inside if changed == "mapped" else other)
        verdict = box.plan()
        found = [e for s in verdict.steps for e in s.reasons]
        if changed == "mapped":
            assert [(e.path, e.confirmed) for e in found] == [(target[0], True)]
        else:
            assert found == []
            assert verdict.verdict == "no-action"


def _is_app(pid: int, old: Path) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/exe") == str(old / "usr/bin/app")
    except OSError:
        return False

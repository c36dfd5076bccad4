"""ELF kinds and dynamic-linking facts from real binaries, and refusal of corrupted ones."""

from __future__ import annotations

import io
import json
import os
import platform
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import attrs
import pytest

from imgdiff.elf import (
    MAX_DYNAMIC_ENTRIES,
    ElfInfo,
    ElfParseError,
    elf_kind,
    parse_header,
    read_elf_info,
)
from imgdiff.errors import ImgdiffError

LS = Path("/bin/ls")
LIBC = Path("/usr/lib/x86_64-linux-gnu/libc.so.6")
LIBZ = Path("/usr/lib/x86_64-linux-gnu/libz.so.1")
LIBSSL = Path("/usr/lib/x86_64-linux-gnu/libssl.so.3")
LDCONFIG = Path("/sbin/ldconfig")
LDSO = Path("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")

PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE = 1, 2, 3, 4
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ = 0, 1, 5, 10


class Hang(BaseException):
    """Raised by the alarm; a BaseException so no `except Exception` can swallow it."""


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """Fail a test that runs for 5 s instead of letting a parser loop forever."""

    def fire(signum: int, frame: FrameType | None) -> None:
        raise Hang("ELF parsing did not finish within 5 s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(5)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path} is not on this system")
    return path


def head_of(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(4096)


def info_of(path: Path, name: str | None = None) -> ElfInfo:
    with open(path, "rb") as f:
        return read_elf_info(f, os.fstat(f.fileno()).st_size, name=name or str(path))


def info_of_bytes(data: bytes | bytearray, name: str = "crafted") -> ElfInfo:
    return read_elf_info(io.BytesIO(bytes(data)), len(data), name=name)


# ------------------------------------------------------------------ readelf as the oracle


def readelf_info(path: Path) -> ElfInfo:
    """What binutils' readelf says about `path`, in ElfInfo form."""
    if shutil.which("readelf") is None:
        pytest.skip("readelf is not installed")

    def run(flag: str) -> str:
        return subprocess.run(
            ["readelf", "-W", flag, str(path)], capture_output=True, text=True, check=True
        ).stdout

    dyn, notes, phdrs = run("-d"), run("-n"), run("-l")
    soname = re.findall(r"\(SONAME\)\s+Library soname: \[(.*)\]", dyn)
    rpath = re.findall(r"\(RPATH\)\s+Library rpath: \[(.*)\]", dyn)
    runpath = re.findall(r"\(RUNPATH\)\s+Library runpath: \[(.*)\]", dyn)
    interp = re.findall(r"Requesting program interpreter: (.*)\]", phdrs)
    build_id = re.findall(r"Build ID: ([0-9a-f]+)", notes)
    return ElfInfo(
        soname=soname[0] if soname else None,
        needed=tuple(re.findall(r"\(NEEDED\)\s+Shared library: \[(.*)\]", dyn)),
        rpath=tuple(rpath[0].split(":")) if rpath else (),
        runpath=tuple(runpath[0].split(":")) if runpath else (),
        interpreter=interp[0] if interp else None,
        build_id=build_id[0] if build_id else None,
    )


# ------------------------------------------------------------------ binaries built with gcc


@attrs.frozen
class Demo:
    lib: Path  # libdemo.so.1, SONAME libdemo.so.1, build-id sha1
    exe_rpath: Path  # links libdemo, DT_RPATH /opt/demo:$ORIGIN/../lib
    exe_runpath: Path  # links libdemo, DT_RUNPATH /opt/demo
    obj: Path  # gcc -c output, no notes
    module: Path  # ld -r --build-id output named .ko, like a kernel module
    static: Path  # gcc -static: ET_EXEC without PT_INTERP
    static_pie: Path  # gcc -static-pie: ET_DYN without PT_INTERP


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    if shutil.which("gcc") is None or shutil.which("ld") is None:
        pytest.skip("gcc/ld are not installed")
    d = tmp_path_factory.mktemp("demo")
    (d / "demo.c").write_text("int demo(void) { return 42; }\n")
    (d / "main.c").write_text("int demo(void);\nint main(void) { return demo() - 42; }\n")
    (d / "plain.c").write_text("int main(void) { return 0; }\n")

    def cc(*args: str) -> None:
        subprocess.run(["gcc", *args], cwd=d, check=True, capture_output=True)

    cc("-shared", "-fPIC", "-Wl,-soname,libdemo.so.1", "-Wl,--build-id=sha1",
       "-o", "libdemo.so.1", "demo.c")  # fmt: skip
    link = ["main.c", "-L.", "-l:libdemo.so.1", "-Wl,--build-id=sha1"]
    cc(*link, "-Wl,--disable-new-dtags", "-Wl,-rpath,/opt/demo:$ORIGIN/../lib", "-o", "rp")
    cc(*link, "-Wl,--enable-new-dtags", "-Wl,-rpath,/opt/demo", "-o", "rnp")
    cc("-c", "demo.c", "-o", "demo.o")
    subprocess.run(["ld", "-r", "--build-id=sha1", "demo.o", "-o", "demo.ko"], cwd=d, check=True)
    cc("-static", "plain.c", "-o", "static")
    cc("-static-pie", "plain.c", "-o", "static-pie")
    return Demo(
        d / "libdemo.so.1", d / "rp", d / "rnp", d / "demo.o", d / "demo.ko",
        d / "static", d / "static-pie",
    )  # fmt: skip


# ------------------------------------------------------------------ kinds


def test_non_elf_content_is_not_elf() -> None:
    assert parse_header(b"#!/bin/sh\necho hi\n") is None
    assert parse_header(b"") is None
    assert elf_kind(b"\x7fEL") is None  # three bytes cannot be the magic
    assert elf_kind(b"PK\x03\x04", "/usr/lib/x.so") is None


def test_pie_executable_is_executable_not_library() -> None:
    head = head_of(need(LS))
    header = parse_header(head)
    assert header is not None
    assert (header.elf_class, header.endian, header.e_type) == (64, "little", 3)
    assert header.has_interp
    assert header.has_dynamic
    if platform.machine() == "x86_64":
        assert header.machine == 62  # EM_X86_64
    assert elf_kind(head, "/usr/bin/ls") == "elf-executable"
    assert elf_kind(head) == "elf-executable"


def test_libc_has_pt_interp_yet_is_a_library_by_its_name() -> None:
    head = head_of(need(LIBC))
    header = parse_header(head)
    assert header is not None
    assert header.e_type == 3
    assert header.has_interp
    assert elf_kind(head, "/usr/lib/x86_64-linux-gnu/libc.so.6") == "elf-library"
    assert elf_kind(head, "/usr/lib/x86_64-linux-gnu/libcap.so") == "elf-library"
    assert elf_kind(head) == "elf-executable"  # without a name it looks like a PIE program


@pytest.mark.parametrize("lib", [LIBZ, LIBSSL, LDSO], ids=lambda p: p.name)
def test_shared_object_without_interp_is_library(lib: Path) -> None:
    head = head_of(need(lib))
    header = parse_header(head)
    assert header is not None
    assert not header.has_interp
    assert header.has_dynamic
    assert elf_kind(head, str(lib)) == "elf-library"


def test_system_static_pie_ldconfig_is_executable() -> None:
    head = head_of(need(LDCONFIG))
    header = parse_header(head)
    assert header is not None
    if header.has_interp:
        pytest.skip("ldconfig is dynamically linked here")
    assert header.e_type == 3
    assert header.entry != 0
    assert elf_kind(head, "/sbin/ldconfig") == "elf-executable"


def test_static_and_static_pie_executables_are_executables(demo: Demo) -> None:
    static = parse_header(head_of(demo.static))
    static_pie = parse_header(head_of(demo.static_pie))
    assert static is not None
    assert static_pie is not None
    assert static.e_type == 2
    assert not static.has_interp
    assert static_pie.e_type == 3
    assert not static_pie.has_interp
    assert static_pie.entry != 0
    assert elf_kind(head_of(demo.static), "/usr/bin/static") == "elf-executable"
    assert elf_kind(head_of(demo.static_pie), "/usr/sbin/static-pie") == "elf-executable"


def test_built_library_is_library_and_program_is_executable(demo: Demo) -> None:
    assert elf_kind(head_of(demo.lib), "plugin-without-so-name") == "elf-library"
    assert elf_kind(head_of(demo.exe_runpath), "/usr/bin/demo") == "elf-executable"


def test_program_headers_past_a_saved_head_do_not_make_a_library_malformed(
    demo: Demo, tmp_path: Path
) -> None:
    """patchelf (as auditwheel, Nix and conda use it) grows the program header table past
    the 1 KiB a saved manifest keeps of each ELF file: the same library is elf-library
    from the tree, its tar and its saved manifest (the manifest said elf-unparseable)."""
    if shutil.which("patchelf") is None:
        pytest.skip("patchelf is not installed (scripts/dev.sh installs it)")
    tree = tmp_path / "tree"
    (tree / "usr/lib").mkdir(parents=True)
    lib = tree / "usr/lib/libgrown.so.1"
    shutil.copy2(demo.lib, lib)
    for n in range(12):  # each run adds a program header here: 9 + 12 of 56 bytes > 1 KiB
        subprocess.run(["patchelf", "--add-needed", f"libdep{n}.so", str(lib)], check=True)
    header = parse_header(lib.read_bytes()[:4096])
    assert header is not None
    assert len(lib.read_bytes()[:1024]) == 1024
    with pytest.raises(ElfParseError, match="beyond the first 1024 bytes"):
        parse_header(lib.read_bytes()[:1024])  # what the manifest keeps of it
    saved = tmp_path / "tree.manifest"
    subprocess.run([sys.executable, "-m", "imgdiff", "manifest", str(tree), "-o", str(saved)],
                   check=True)  # fmt: skip
    subprocess.run(["tar", "-C", str(tree), "-cf", str(tmp_path / "tree.tar"), "."], check=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    kinds = []
    for image in (tree, tmp_path / "tree.tar", saved):
        out = subprocess.run(
            [sys.executable, "-m", "imgdiff", "diff", str(empty), str(image), "--json"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "malformed" not in out.stderr
        (found,) = [
            c for c in json.loads(out.stdout)["changes"] if c["path"] == str(lib)[len(str(tree)) :]
        ]
        kinds.append(found["kind"])
    assert kinds == ["elf-library"] * 3


def test_relocatable_object_is_object_even_named_ko(demo: Demo) -> None:
    for obj in (demo.obj, demo.module):
        header = parse_header(head_of(obj))
        assert header is not None
        assert header.e_type == 1
        assert not header.has_interp
        assert not header.has_dynamic
        assert elf_kind(head_of(obj), obj.name) == "elf-object"


def test_core_dump_type_is_core_and_its_segments_are_not_scanned() -> None:
    head = bytearray(head_of(need(LS)))
    head[16:18] = struct.pack("<H", 4)  # ET_CORE
    head[32:40] = struct.pack("<Q", 1 << 40)  # e_phoff far away: a core's table may be huge
    assert elf_kind(bytes(head)) == "elf-core"


def crafted_be32(interp: bytes = b"/lib/ld.so.1\0") -> bytes:
    """A minimal big-endian 32-bit MIPS executable: header, PT_INTERP, PT_LOAD, the path."""
    ehsize, phentsize, phnum = 52, 32, 2
    at = ehsize + phnum * phentsize
    size = at + len(interp)
    ident = b"\x7fELF\x01\x02\x01" + bytes(9)
    ehdr = ident + struct.pack(
        ">HHIIIIIHHHHHH", 2, 8, 1, 0x400100, ehsize, 0, 0, ehsize, phentsize, phnum, 40, 0, 0
    )
    interp_ph = struct.pack(">8I", PT_INTERP, at, at, at, len(interp), len(interp), 4, 1)
    load_ph = struct.pack(">8I", PT_LOAD, 0, 0, 0, size, size, 5, 0x1000)
    return ehdr + interp_ph + load_ph + interp


def test_big_endian_32bit_header_is_read() -> None:
    data = crafted_be32()
    header = parse_header(data)
    assert header is not None
    assert (header.elf_class, header.endian, header.machine, header.e_type) == (32, "big", 8, 2)
    assert header.has_interp
    assert not header.has_dynamic
    assert elf_kind(data) == "elf-executable"
    assert info_of_bytes(data) == ElfInfo(interpreter="/lib/ld.so.1")


# ------------------------------------------------------------------ read_elf_info


@pytest.mark.parametrize("path", [LS, LIBC, LIBZ, LIBSSL, LDCONFIG, LDSO], ids=lambda p: p.name)
def test_info_of_system_binaries_matches_readelf(path: Path) -> None:
    assert info_of(need(path)) == readelf_info(path)


def test_libc_soname_needed_interpreter_and_build_id() -> None:
    info = info_of(need(LIBC))
    assert info.soname == "libc.so.6"
    assert info.needed == ("ld-linux-x86-64.so.2",)
    assert info.interpreter is not None
    assert info.interpreter.endswith("ld-linux-x86-64.so.2")
    assert info.build_id is not None
    assert re.fullmatch(r"[0-9a-f]{40}", info.build_id)


def test_built_library_soname_and_build_id(demo: Demo) -> None:
    info = info_of(demo.lib)
    assert info.soname == "libdemo.so.1"
    assert info.interpreter is None
    assert info.rpath == ()
    assert info.runpath == ()
    assert info.build_id is not None
    assert len(info.build_id) == 40
    assert info == readelf_info(demo.lib)


def test_spare_dynamic_slots_after_dt_null_are_not_counted(demo: Demo, tmp_path: Path) -> None:
    # ld --spare-dynamic-tags=9000 leaves 9000 DT_NULL slots: a valid program (the loader
    # reads up to the first DT_NULL), whose p_filesz counts more than MAX_DYNAMIC_ENTRIES
    spare = tmp_path / "spare"
    subprocess.run(
        ["gcc", "main.c", "-L.", "-l:libdemo.so.1", "-Wl,--spare-dynamic-tags=9000",
         "-o", str(spare)],
        cwd=demo.lib.parent, check=True, capture_output=True,
    )  # fmt: skip
    assert segment(spare.read_bytes(), PT_DYNAMIC).p_filesz // 16 > MAX_DYNAMIC_ENTRIES
    info = info_of(spare)
    assert "libdemo.so.1" in info.needed
    assert info.interpreter is not None
    assert elf_kind(head_of(spare), str(spare)) == "elf-executable"


def test_rpath_and_runpath_are_split_verbatim(demo: Demo) -> None:
    rp = info_of(demo.exe_rpath)
    assert rp.rpath == ("/opt/demo", "$ORIGIN/../lib")
    assert rp.runpath == ()
    assert "libdemo.so.1" in rp.needed
    assert rp.soname is None
    rnp = info_of(demo.exe_runpath)
    assert rnp.runpath == ("/opt/demo",)
    assert rnp.rpath == ()
    assert rp == readelf_info(demo.exe_rpath)
    assert rnp == readelf_info(demo.exe_runpath)


def test_kernel_module_build_id_comes_from_its_note_section(demo: Demo) -> None:
    info = info_of(demo.module)
    assert info.build_id is not None
    assert info == readelf_info(demo.module)
    assert info == ElfInfo(build_id=info.build_id)


def test_object_without_notes_has_no_facts(demo: Demo) -> None:
    assert info_of(demo.obj) == ElfInfo()


def test_static_executable_has_build_id_but_no_dynamic_facts(demo: Demo) -> None:
    info = info_of(demo.static)
    assert info == readelf_info(demo.static)
    assert info.interpreter is None
    assert info.needed == ()
    assert info.build_id is not None


def test_non_elf_file_is_refused_with_its_name() -> None:
    with pytest.raises(ElfParseError, match="not an ELF file") as caught:
        info_of_bytes(b"#!/bin/sh\n", name="/usr/bin/script")
    assert "/usr/bin/script" in str(caught.value)
    assert isinstance(caught.value, ImgdiffError)
    assert isinstance(caught.value, ValueError)


# ------------------------------------------------------------------ corrupted files


@attrs.frozen
class Phdr:
    at: int  # where the program header itself sits
    p_type: int
    p_offset: int
    p_vaddr: int
    p_filesz: int


def phdrs(data: bytes | bytearray) -> list[Phdr]:
    """The program headers of a little-endian ELF64 file (independent of imgdiff.elf)."""
    phoff, phentsize, phnum = (
        struct.unpack_from("<Q", data, 32)[0],
        *struct.unpack_from("<HH", data, 54),
    )
    out = []
    for i in range(phnum):
        at = phoff + i * phentsize
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, at
        )
        out.append(Phdr(at, p_type, p_offset, p_vaddr, p_filesz))
    return out


def segment(data: bytes | bytearray, p_type: int) -> Phdr:
    return next(p for p in phdrs(data) if p.p_type == p_type)


def dyn_entries(data: bytes | bytearray) -> Iterator[tuple[int, int, int]]:
    """(file offset, d_tag, d_val) of each dynamic entry up to DT_NULL."""
    dyn = segment(data, PT_DYNAMIC)
    for at in range(dyn.p_offset, dyn.p_offset + dyn.p_filesz, 16):
        tag, val = struct.unpack_from("<qQ", data, at)
        yield at, tag, val
        if tag == DT_NULL:
            return


def dyn_entry(data: bytes | bytearray, tag: int) -> tuple[int, int]:
    return next((at, val) for at, t, val in dyn_entries(data) if t == tag)


def set_u16(data: bytearray, at: int, value: int) -> None:
    data[at : at + 2] = struct.pack("<H", value)


def set_u32(data: bytearray, at: int, value: int) -> None:
    data[at : at + 4] = struct.pack("<I", value)


def set_u64(data: bytearray, at: int, value: int) -> None:
    data[at : at + 8] = struct.pack("<Q", value)


@pytest.fixture(scope="module")
def victim() -> bytes:
    """A real dynamically linked PIE program to corrupt: /bin/ls."""
    data = need(LS).read_bytes()
    if data[:6] != b"\x7fELF\x02\x01":
        pytest.skip("/bin/ls is not a little-endian ELF64 file")
    return data


def broken_header_cases() -> dict[str, Callable[[bytearray], bytes]]:
    def truncated(d: bytearray) -> bytes:
        return bytes(d[:40])

    def bad_class(d: bytearray) -> bytes:
        d[4] = 9
        return bytes(d)

    def huge_phnum(d: bytearray) -> bytes:
        set_u16(d, 56, 0xFFF0)
        return bytes(d)

    def pn_xnum(d: bytearray) -> bytes:
        set_u16(d, 56, 0xFFFF)
        return bytes(d)

    def tiny_phentsize(d: bytearray) -> bytes:
        set_u16(d, 54, 8)
        return bytes(d)

    def phoff_beyond_file(d: bytearray) -> bytes:
        set_u64(d, 32, len(d) + 4096)
        return bytes(d)

    return {
        "truncated header": truncated,
        "invalid EI_CLASS": bad_class,
        "e_phnum huge": huge_phnum,
        "e_phnum PN_XNUM": pn_xnum,
        "e_phentsize too small": tiny_phentsize,
        "e_phoff beyond file": phoff_beyond_file,
    }


@pytest.mark.parametrize("case", list(broken_header_cases()))
def test_broken_header_is_unparseable_and_refused(victim: bytes, case: str) -> None:
    data = broken_header_cases()[case](bytearray(victim))
    assert elf_kind(data[:4096], "/usr/bin/ls") == "elf-unparseable"
    with pytest.raises(ElfParseError, match="/usr/bin/ls"):
        info_of_bytes(data, name="/usr/bin/ls")


def corruption_cases() -> dict[str, tuple[Callable[[bytearray], bytes], str]]:
    """Corruptions past the header: each read_elf_info must refuse, with this message."""

    def dynamic_beyond_file(d: bytearray) -> bytes:
        set_u64(d, segment(d, PT_DYNAMIC).at + 8, len(d) + 100)  # p_offset
        return bytes(d)

    def no_dt_null(d: bytearray, filesz: int) -> bytes:
        # the segment moved to the end of the file: DT_DEBUG entries and never a DT_NULL
        dynamic = segment(d, PT_DYNAMIC)
        set_u64(d, dynamic.at + 8, len(d))  # p_offset
        set_u64(d, dynamic.at + 32, filesz)  # p_filesz
        return bytes(d) + struct.pack("<qQ", 21, 0) * (MAX_DYNAMIC_ENTRIES + 1)

    def dynamic_huge_count(d: bytearray) -> bytes:
        return no_dt_null(d, (MAX_DYNAMIC_ENTRIES + 1) * 16)

    def dynamic_count_2_to_the_60(d: bytearray) -> bytes:
        return no_dt_null(d, 1 << 60)

    def needed_beyond_strtab(d: bytearray) -> bytes:
        at, _ = dyn_entry(d, DT_NEEDED)
        set_u64(d, at + 8, dyn_entry(d, DT_STRSZ)[1] + 10)
        return bytes(d)

    def needed_points_at_empty_string(d: bytearray) -> bytes:
        at, _ = dyn_entry(d, DT_NEEDED)
        set_u64(d, at + 8, 0)  # offset 0 of a string table is its leading NUL
        return bytes(d)

    def strtab_unmapped(d: bytearray) -> bytes:
        set_u64(d, dyn_entry(d, DT_STRTAB)[0] + 8, 1 << 50)
        return bytes(d)

    def strsz_beyond_file(d: bytearray) -> bytes:
        set_u64(d, dyn_entry(d, DT_STRSZ)[0] + 8, 1 << 40)
        return bytes(d)

    def note_huge_namesz(d: bytearray) -> bytes:
        set_u32(d, segment(d, PT_NOTE).p_offset, 0xFFFFFFF0)
        return bytes(d)

    def note_huge_descsz(d: bytearray) -> bytes:
        set_u32(d, segment(d, PT_NOTE).p_offset + 4, 0x7FFFFFFF)
        return bytes(d)

    def note_segment_beyond_file(d: bytearray) -> bytes:
        set_u64(d, segment(d, PT_NOTE).at + 32, len(d))  # p_filesz
        return bytes(d)

    def endless_notes(d: bytearray) -> bytes:
        # 5000 empty notes (12 zero bytes each) in a note segment appended to the file.
        for p in phdrs(d):
            if p.p_type == PT_NOTE:
                set_u64(d, p.at + 8, len(d))
                set_u64(d, p.at + 32, 5000 * 12)
        return bytes(d) + bytes(5000 * 12)

    def interp_not_terminated(d: bytearray) -> bytes:
        interp = segment(d, PT_INTERP)
        d[interp.p_offset + interp.p_filesz - 1] = ord("x")
        return bytes(d)

    def two_dynamic_segments(d: bytearray) -> bytes:
        set_u32(d, segment(d, PT_INTERP).at, PT_DYNAMIC)
        return bytes(d)

    return {
        "dynamic segment beyond file": (dynamic_beyond_file, "dynamic segment"),
        "dynamic segment with a huge count": (dynamic_huge_count, "entries"),
        "dynamic segment of 2**60 bytes": (dynamic_count_2_to_the_60, "entries"),
        "DT_NEEDED offset beyond strtab": (needed_beyond_strtab, "DT_NEEDED string offset"),
        "DT_NEEDED empty name": (needed_points_at_empty_string, "empty DT_NEEDED"),
        "DT_STRTAB not in any PT_LOAD": (strtab_unmapped, "DT_STRTAB"),
        "DT_STRSZ beyond file": (strsz_beyond_file, "string table"),
        "note with a huge namesz": (note_huge_namesz, "overruns"),
        "note with a huge descsz": (note_huge_descsz, "overruns"),
        "note segment beyond file": (note_segment_beyond_file, "note area"),
        "5000 notes": (endless_notes, "notes"),
        "PT_INTERP not NUL-terminated": (interp_not_terminated, "PT_INTERP"),
        "two PT_DYNAMIC": (two_dynamic_segments, "more than one"),
    }


@pytest.mark.parametrize("case", list(corruption_cases()))
def test_corrupted_structure_is_refused_quickly(victim: bytes, case: str) -> None:
    corrupt, message = corruption_cases()[case]
    data = corrupt(bytearray(victim))
    start = time.perf_counter()
    with pytest.raises(ElfParseError, match=message) as caught:
        info_of_bytes(data, name="/usr/bin/ls")
    assert str(caught.value).startswith("/usr/bin/ls: ")
    assert time.perf_counter() - start < 1.0


def test_file_shorter_than_stated_size_is_refused(victim: bytes) -> None:
    with pytest.raises(ElfParseError, match=r"shorter than its stated size|beyond the file"):
        read_elf_info(io.BytesIO(victim[:5000]), len(victim), name="ls")


def test_garbage_section_headers_do_not_matter_for_linked_files(victim: bytes) -> None:
    # pyelftools would walk these (DynamicSegment reads every section); we never do.
    data = bytearray(victim)
    set_u64(data, 40, 1 << 62)  # e_shoff
    set_u16(data, 58, 0)  # e_shentsize
    set_u16(data, 60, 0)  # e_shnum 0: "the count is in section 0"
    assert info_of_bytes(data) == info_of_bytes(victim)


def test_object_with_absurd_extended_section_count_is_refused(demo: Demo) -> None:
    data = bytearray(demo.module.read_bytes())
    shoff = struct.unpack_from("<Q", data, 40)[0]
    set_u16(data, 60, 0)  # e_shnum 0: extended numbering
    set_u64(data, shoff + 32, 1 << 40)  # section 0's sh_size: 2**40 sections
    with pytest.raises(ElfParseError, match="section headers"):
        info_of_bytes(data, name="demo.ko")


def test_random_corruption_never_escapes_as_another_exception(victim: bytes) -> None:
    rng = random.Random(20240611)
    deadline = time.perf_counter() + 4.0
    outcomes = {"info": 0, "refused": 0}
    for _ in range(300):
        data = bytearray(victim)
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.5:
                data[rng.randrange(4096)] = rng.randrange(256)  # headers and notes
            else:
                at = rng.randrange(len(data) - 8)
                set_u64(data, at, rng.choice([0, 1 << 31, (1 << 32) - 1, (1 << 64) - 1]))
        assert elf_kind(bytes(data[:4096]), "ls") in {
            "elf-executable", "elf-library", "elf-object", "elf-core", "elf-unparseable", None,
        }  # fmt: skip
        try:
            info_of_bytes(data)
            outcomes["info"] += 1
        except ElfParseError:
            outcomes["refused"] += 1
        assert time.perf_counter() < deadline
    assert outcomes["info"]
    assert outcomes["refused"]


def test_runpath_longer_than_path_max_is_read(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    # Nix-style: many store directories in one DT_RUNPATH, 6 KB in all.
    dirs = [f"/nix/store/{i:032d}-dep-{i}/lib" for i in range(120)]
    (tmp_path / "p.c").write_text("int main(void) { return 0; }\n")
    subprocess.run(
        ["gcc", "p.c", "-Wl,--enable-new-dtags", "-Wl,-rpath," + ":".join(dirs), "-o", "p"],
        cwd=tmp_path,
        check=True,
    )
    assert len(":".join(dirs)) > 4096
    assert info_of(tmp_path / "p").runpath == tuple(dirs)

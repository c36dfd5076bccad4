"""ELF facts for classification: the kind of a binary and the few dynamic-linking facts we need.

This module owns reading ELF files from an image, and it reads as little as possible. The
fast path (`parse_header`, `elf_kind`) is pure `struct` work on the first bytes the caller
already holds: the ELF header and the program header *types*, so classifying a changed file
costs microseconds. `read_elf_info` is the slow path, called lazily for files a later stage
asks about. It reads the PT_INTERP segment, the PT_DYNAMIC segment (DT_SONAME, DT_NEEDED,
DT_RPATH, DT_RUNPATH, resolved through DT_STRTAB/DT_STRSZ and the PT_LOAD mapping, exactly
as the dynamic loader does) and GNU build-id notes (from PT_NOTE, or from SHT_NOTE sections
in relocatable objects such as kernel modules). It must not touch symbol tables, version
sections, DWARF or compressed sections, and must not trust any size, offset or count in the
file: image content is hostile. pyelftools (0.33) is used only for what it does soundly here,
its `ELFStructs` record layouts (class-, endian- and machine-aware, with enum names). Its
`ELFFile.iter_segments`/`DynamicSegment` are deliberately avoided: building a
`DynamicSegment` walks the whole section header table and constructs every section (symbol
and version tables included), which is unbounded on crafted files (e_shnum = 0 reads the
count from section 0) and costs ~2.6 ms on libc; its string and note readers silently turn
bad offsets into empty strings. So this module checks every offset against the file size,
bounds every loop by a constant, and turns any failure into `ElfParseError` naming the file.
"""

from __future__ import annotations

import functools
import struct
from typing import TYPE_CHECKING, BinaryIO, Final, Literal

import attrs

from imgdiff.errors import ImgdiffError, escape_path

if TYPE_CHECKING:  # pyelftools costs ~23 ms to import: only `read_elf_info` loads it
    from collections.abc import Iterator

    from elftools.construct import Container
    from elftools.elf.structs import ELFStructs

__all__ = [
    "ElfHeader",
    "ElfInfo",
    "ElfParseError",
    "elf_kind",
    "parse_header",
    "read_elf_info",
]

MAGIC: Final = b"\x7fELF"

ET_REL: Final = 1
ET_EXEC: Final = 2
ET_DYN: Final = 3
ET_CORE: Final = 4

PT_DYNAMIC: Final = 2
PT_INTERP: Final = 3

# Safety bounds. Real files stay far below each of them (a glibc program has ~14 program
# headers, ~35 dynamic entries and 2 note segments); anything beyond is treated as hostile.
MAX_PHDR_TABLE: Final = 64 * 1024  # bytes of program header table
MAX_DYNAMIC_ENTRIES: Final = 4096
MAX_NOTES: Final = 4096  # notes examined per file, all segments/sections together
MAX_SECTION_TABLE: Final = 4 << 20  # bytes of section headers scanned for SHT_NOTE (objects)
MAX_STRING: Final = 4096  # PATH_MAX: longest interpreter, soname or needed name
MAX_PATH_LIST: Final = 64 * 1024  # longest DT_RPATH/DT_RUNPATH (Nix store paths add up)
MAX_BUILD_ID: Final = 256  # bytes; sha1 ids are 20, --build-id=0x<hex> may be longer

_SHT_NOTE: Final = 7
_NT_GNU_BUILD_ID: Final = "NT_GNU_BUILD_ID"

# Header layouts after e_ident: e_type, e_machine, e_version, e_entry, e_phoff, e_shoff,
# e_flags, e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx.
_EHDR: Final = {
    (32, "little"): struct.Struct("<16xHHIIIIIHHHHHH"),
    (32, "big"): struct.Struct(">16xHHIIIIIHHHHHH"),
    (64, "little"): struct.Struct("<16xHHIQQQIHHHHHH"),
    (64, "big"): struct.Struct(">16xHHIQQQIHHHHHH"),
}
_U32: Final = {"little": struct.Struct("<I"), "big": struct.Struct(">I")}
_PHDR_SIZE: Final = {32: 32, 64: 56}
_SHDR_SIZE: Final = {32: 40, 64: 64}
_DYN_SIZE: Final = {32: 8, 64: 16}
_NHDR_SIZE: Final = 12  # n_namesz, n_descsz, n_type: three 32-bit words in both classes


class ElfParseError(ImgdiffError, ValueError):
    """The file starts with the ELF magic but its structure is truncated or malformed."""


@attrs.frozen(slots=True)
class ElfHeader:
    """What the ELF header and program header types say about a file.

    `entry` (e_entry) is kept because it separates static-pie executables (an entry point,
    no PT_INTERP) from shared objects (entry 0) without reading the dynamic section.
    For ET_CORE files the program headers are not scanned (they describe a dead process's
    memory), so `has_interp`/`has_dynamic` are False.
    """

    elf_class: Literal[32, 64]
    endian: Literal["little", "big"]
    machine: int
    e_type: int
    has_interp: bool
    has_dynamic: bool
    entry: int = 0


@attrs.frozen(slots=True)
class ElfInfo:
    """Dynamic-linking facts of one ELF file; strings are decoded like `os.fsdecode`.

    `rpath`/`runpath` are the DT_RPATH/DT_RUNPATH strings split on ':' verbatim (`$ORIGIN`
    unexpanded; an empty element is kept because the loader reads it as the current
    directory). `build_id` is the GNU build-id in lower-case hex.
    """

    soname: str | None = None
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    interpreter: str | None = None
    build_id: str | None = None


@attrs.frozen(slots=True)
class _Layout:
    """The validated ELF header fields both paths need."""

    elf_class: Literal[32, 64]
    endian: Literal["little", "big"]
    e_type: int
    machine: int
    entry: int
    phoff: int
    phentsize: int
    phnum: int
    shoff: int
    shentsize: int
    shnum: int


def _layout(head: bytes) -> _Layout | None:
    """Decode the ELF header; None without the magic, ElfParseError if it is broken."""
    if head[:4] != MAGIC:
        return None
    if len(head) < 16:
        raise ElfParseError(f"truncated ELF identification ({len(head)} bytes)")
    elf_class: Literal[32, 64]
    endian: Literal["little", "big"]
    if head[4] == 1:
        elf_class = 32
    elif head[4] == 2:
        elf_class = 64
    else:
        raise ElfParseError(f"invalid EI_CLASS {head[4]}")
    if head[5] == 1:
        endian = "little"
    elif head[5] == 2:
        endian = "big"
    else:
        raise ElfParseError(f"invalid EI_DATA {head[5]}")
    layout = _EHDR[elf_class, endian]
    if len(head) < layout.size:
        raise ElfParseError(f"truncated ELF header ({len(head)} of {layout.size} bytes)")
    (e_type, machine, _version, entry, phoff, shoff, _flags, _ehsize, phentsize, phnum,
     shentsize, shnum, _shstrndx) = layout.unpack_from(head)  # fmt: skip
    if e_type == ET_CORE:
        phnum = 0  # a core's segments are a dead process's memory map: nothing to classify
    if phnum:
        if phnum == 0xFFFF:  # PN_XNUM: the real count hides in section 0, never in programs
            raise ElfParseError("extended program header numbering (PN_XNUM)")
        if phentsize < _PHDR_SIZE[elf_class]:
            raise ElfParseError(f"e_phentsize {phentsize} is too small")
        if phnum * phentsize > MAX_PHDR_TABLE:
            raise ElfParseError(f"program header table of {phnum} x {phentsize} bytes")
    return _Layout(
        elf_class, endian, e_type, machine, entry, phoff, phentsize, phnum, shoff, shentsize, shnum
    )


def parse_header(head: bytes) -> ElfHeader | None:
    """Decode the ELF header and program header types from the first bytes of a file.

    Pass the first 4096 bytes (or the whole file if shorter). Returns None when `head` does
    not start with the ELF magic. Raises `ElfParseError` when it does but the header is
    truncated or inconsistent, or the program header table does not lie within `head`
    (real linkers put it right after the header; a table beyond 4 KiB is not guessed at).
    """
    lay = _layout(head)
    if lay is None:
        return None
    has_interp = has_dynamic = False
    if lay.phnum:
        end = lay.phoff + lay.phnum * lay.phentsize
        if end > len(head):
            raise ElfParseError(
                f"program header table (offset {lay.phoff}, {lay.phnum} entries) "
                f"lies beyond the first {len(head)} bytes"
            )
        u32 = _U32[lay.endian]
        for off in range(lay.phoff, end, lay.phentsize):  # at most 2048 steps (64 KiB / 32)
            p_type = u32.unpack_from(head, off)[0]
            if p_type == PT_INTERP:
                has_interp = True
            elif p_type == PT_DYNAMIC:
                has_dynamic = True
    return ElfHeader(
        elf_class=lay.elf_class,
        endian=lay.endian,
        machine=lay.machine,
        e_type=lay.e_type,
        has_interp=has_interp,
        has_dynamic=has_dynamic,
        entry=lay.entry,
    )


def _header_beyond(head: bytes) -> ElfHeader | None:
    """A sound ELF header whose program header table begins in `head` and runs on past it
    (a saved manifest keeps 1 KiB; each `patchelf --add-needed` may add a header): its
    program header types unknown, read as absent, so the kind rests on e_type, the name
    and the entry point. None when the header is broken or the table starts past `head`
    (where nothing tells a table at the end of a file from one past it)."""
    try:
        lay = _layout(head)
    except ElfParseError:
        return None
    if lay is None or not lay.phoff < len(head) < lay.phoff + lay.phnum * lay.phentsize:
        return None  # not ELF, the table is there and malformed, or it starts past head
    return ElfHeader(lay.elf_class, lay.endian, lay.machine, lay.e_type, False, False, lay.entry)


def _library_name(path: str) -> bool:
    """Named `*.so` or `*.so.*`, like every shared library and plugin on Linux."""
    name = path.rpartition("/")[2]
    return name.endswith(".so") or ".so." in name


def elf_kind(head: bytes, path: str | None = None) -> str | None:
    """The kind of ELF file `head` (its first bytes) starts, or None if it is not ELF.

    'elf-executable' for ET_EXEC, PIE executables (ET_DYN with PT_INTERP) and static-pie
    executables (ET_DYN with an entry point, no PT_INTERP, not named like a library);
    'elf-library' for other ET_DYN files, and for any ET_DYN named `*.so` or `*.so.*`
    (`path` gives the name): glibc's libc.so.6 and libcap.so.2 carry PT_INTERP so they
    can be run, yet they are libraries. 'elf-object' for ET_REL (kernel modules included;
    `imgdiff.classify` recognises those by path), 'elf-core' for ET_CORE, and
    'elf-unparseable' when the magic is there but the header is broken or of no known type.
    A program header table that runs on past `head` is not broken: the kind is then
    decided as if it held no PT_INTERP (the same kind in practice: PIE executables have
    an entry point).
    """
    try:
        header = parse_header(head)
    except ElfParseError:
        header = _header_beyond(head)
        if header is None:
            return "elf-unparseable"
    if header is None:
        return None
    if header.e_type == ET_EXEC:
        return "elf-executable"
    if header.e_type == ET_DYN:
        if path is not None and _library_name(path):
            return "elf-library"
        if header.has_interp:
            return "elf-executable"
        # Shared objects are linked without an entry point (e_entry 0); static-pie
        # executables such as Debian's /sbin/ldconfig have one but no PT_INTERP.
        return "elf-executable" if header.entry else "elf-library"
    if header.e_type == ET_REL:
        return "elf-object"
    if header.e_type == ET_CORE:
        return "elf-core"
    return "elf-unparseable"


# --------------------------------------------------------------------------- read_elf_info


@functools.lru_cache(maxsize=8)
def _basic_structs(little_endian: bool, elf_class: int) -> ELFStructs:
    from elftools.elf.structs import ELFStructs

    structs = ELFStructs(little_endian=little_endian, elfclass=elf_class)
    structs.create_basic_structs()
    return structs


# Building the advanced structs is most of pyelftools' per-file cost (~0.4 ms); they depend
# only on these header fields, and are stateless parsers, so they are shared. The cache is
# bounded, so crafted machine values cannot grow it.
@functools.lru_cache(maxsize=32)
def _structs(
    little_endian: bool, elf_class: int, e_type: object, machine: object, osabi: object
) -> ELFStructs:
    # pyelftools passes unknown enum values through as ints; its layouts only switch on
    # known names, so an unknown value means "no special case".
    def known(value: object) -> str | None:
        return value if isinstance(value, str) else None

    from elftools.elf.structs import ELFStructs

    structs = ELFStructs(little_endian=little_endian, elfclass=elf_class)
    structs.create_basic_structs()
    structs.create_advanced_structs(known(e_type), known(machine), known(osabi))
    return structs


class _Reader:
    """Bounds-checked positional reads from a file of known size."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh = fh
        self.size = size

    def read(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ElfParseError(
                f"{what} (offset {offset}, {length} bytes) lies beyond the file ({self.size} bytes)"
            )
        self.fh.seek(offset)
        data = self.fh.read(length)
        if len(data) != length:
            raise ElfParseError(f"{what}: file is shorter than its stated size {self.size}")
        return data

    def cstring(self, offset: int, limit: int, what: str) -> bytes:
        """A NUL-terminated string at `offset` that must end within `limit` bytes."""
        chunk = self.read(offset, limit, what)
        end = chunk.find(b"\0")
        if end < 0:
            raise ElfParseError(f"{what} at offset {offset} is not NUL-terminated in bounds")
        return chunk[:end]


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) & -alignment


class _Notes:
    """Finds the GNU build-id among notes, counting notes across the whole file."""

    def __init__(self, rd: _Reader, structs: ELFStructs) -> None:
        self.rd = rd
        self.structs = structs
        self.left = MAX_NOTES

    def build_id(self, offset: int, size: int, align: int) -> str | None:
        """The GNU build-id among the notes in [offset, offset + size), if any."""
        rd = self.rd
        end = offset + size
        if offset < 0 or end > rd.size:
            raise ElfParseError(f"note area (offset {offset}, {size} bytes) lies beyond the file")
        # Notes in 8-aligned areas (GNU property notes on 64-bit) align desc and the next
        # note to 8 from the note's start, as readelf does; otherwise everything aligns to 4.
        step = 8 if align == 8 else 4
        pos = offset
        while pos + _NHDR_SIZE <= end:  # pos strictly grows: every note is at least 12 bytes
            self.left -= 1
            if self.left < 0:
                raise ElfParseError(f"more than {MAX_NOTES} notes")
            nhdr = self.structs.Elf_Nhdr.parse(rd.read(pos, _NHDR_SIZE, "note header"))
            namesz: int = nhdr.n_namesz
            descsz: int = nhdr.n_descsz
            name_at = pos + _NHDR_SIZE
            desc_at = pos + _align(_NHDR_SIZE + namesz, step)
            if desc_at + descsz > end:
                raise ElfParseError(
                    f"note at offset {pos} (name {namesz} bytes, desc {descsz} bytes) "
                    f"overruns its area ending at {end}"
                )
            if (
                nhdr.n_type == _NT_GNU_BUILD_ID
                and namesz == 4
                and rd.read(name_at, 4, "note name") == b"GNU\0"
            ):
                if not 0 < descsz <= MAX_BUILD_ID:
                    raise ElfParseError(f"GNU build-id of {descsz} bytes")
                return rd.read(desc_at, descsz, "GNU build-id").hex()
            pos += _align(desc_at - pos + descsz, step)
        return None


def _build_id_from_sections(
    rd: _Reader, lay: _Layout, structs: ELFStructs, notes: _Notes
) -> str | None:
    """The GNU build-id from SHT_NOTE sections (objects have no program headers)."""
    if lay.shoff == 0:
        return None
    shdr_size = _SHDR_SIZE[lay.elf_class]
    if lay.shentsize < shdr_size:
        raise ElfParseError(f"e_shentsize {lay.shentsize} is too small")
    count = lay.shnum
    if count == 0:  # extended numbering: the count is section 0's sh_size
        count = structs.Elf_Shdr.parse(rd.read(lay.shoff, shdr_size, "section header 0")).sh_size
    if count * lay.shentsize > MAX_SECTION_TABLE:
        raise ElfParseError(f"{count} section headers of {lay.shentsize} bytes")
    table = rd.read(lay.shoff, count * lay.shentsize, "section header table")
    u32 = _U32[lay.endian]
    for index in range(count):
        at = index * lay.shentsize
        if u32.unpack_from(table, at + 4)[0] != _SHT_NOTE:  # sh_type, before parsing fully
            continue
        shdr = structs.Elf_Shdr.parse(table[at : at + shdr_size])
        found = notes.build_id(shdr.sh_offset, shdr.sh_size, shdr.sh_addralign)
        if found is not None:
            return found
    return None


def _file_offset(loads: list[Container], vaddr: int) -> int | None:
    """Map a virtual address to a file offset through the PT_LOAD segments."""
    for seg in loads:
        if seg.p_vaddr <= vaddr < seg.p_vaddr + seg.p_filesz:
            return int(vaddr - seg.p_vaddr + seg.p_offset)
    return None


_DYN_CHUNK: Final = 64  # dynamic entries read at a time: most files end within the first


def _dynamic_entries(
    rd: _Reader, lay: _Layout, structs: ELFStructs, dyn: Container
) -> Iterator[Container]:
    """The entries of the PT_DYNAMIC segment before its DT_NULL.

    The loader reads entries up to DT_NULL, whatever p_filesz says: `ld
    --spare-dynamic-tags=N` leaves thousands of DT_NULL slots after it (p_filesz counts
    them), and the entries past the first DT_NULL are never read. So entries are read in
    chunks until DT_NULL, the end of the segment or MAX_DYNAMIC_ENTRIES entries before any
    DT_NULL (hostile: refused).
    """
    entsize = _DYN_SIZE[lay.elf_class]
    count = dyn.p_filesz // entsize
    at = 0
    while at < count:
        if at >= MAX_DYNAMIC_ENTRIES:
            raise ElfParseError(f"dynamic segment of more than {MAX_DYNAMIC_ENTRIES} entries")
        chunk = min(_DYN_CHUNK, count - at)
        raw = rd.read(dyn.p_offset + at * entsize, chunk * entsize, "dynamic segment")
        for offset in range(0, len(raw), entsize):
            entry = structs.Elf_Dyn.parse(raw[offset : offset + entsize])
            if entry.d_tag == "DT_NULL":
                return
            yield entry
        at += chunk


def _read_dynamic(
    rd: _Reader, lay: _Layout, structs: ELFStructs, dyn: Container, loads: list[Container]
) -> ElfInfo:
    """SONAME, NEEDED, RPATH and RUNPATH from the PT_DYNAMIC segment."""
    singles: dict[str, int] = {}
    needed: list[int] = []
    for entry in _dynamic_entries(rd, lay, structs, dyn):
        tag = entry.d_tag
        if tag == "DT_NEEDED":
            needed.append(entry.d_val)
        elif tag in ("DT_SONAME", "DT_RPATH", "DT_RUNPATH", "DT_STRTAB", "DT_STRSZ"):
            if tag in singles:  # linkers never emit these twice; loaders disagree on which wins
                raise ElfParseError(f"duplicate {tag}")
            singles[tag] = entry.d_val
    if not needed and not any(t in singles for t in ("DT_SONAME", "DT_RPATH", "DT_RUNPATH")):
        return ElfInfo()
    if "DT_STRTAB" not in singles or "DT_STRSZ" not in singles:
        raise ElfParseError("dynamic strings without DT_STRTAB/DT_STRSZ")
    strsz = singles["DT_STRSZ"]
    strtab = _file_offset(loads, singles["DT_STRTAB"])
    if strtab is None:
        raise ElfParseError(f"DT_STRTAB {singles['DT_STRTAB']:#x} is not in any PT_LOAD segment")
    if strtab + strsz > rd.size:
        raise ElfParseError(f"dynamic string table (offset {strtab}, {strsz} bytes) beyond file")

    def string(tag: str, offset: int) -> str:
        if offset >= strsz:
            raise ElfParseError(f"{tag} string offset {offset} beyond string table size {strsz}")
        longest = MAX_PATH_LIST if tag in ("DT_RPATH", "DT_RUNPATH") else MAX_STRING
        value = rd.cstring(strtab + offset, min(strsz - offset, longest), f"{tag} string")
        # An empty name is what an out-of-range or zeroed offset yields; no linker writes it.
        if not value and tag in ("DT_NEEDED", "DT_SONAME"):
            raise ElfParseError(f"empty {tag} string (offset {offset})")
        return _decode(value)

    def path_list(tag: str) -> tuple[str, ...]:
        return tuple(string(tag, singles[tag]).split(":")) if tag in singles else ()

    return ElfInfo(
        soname=string("DT_SONAME", singles["DT_SONAME"]) if "DT_SONAME" in singles else None,
        needed=tuple(string("DT_NEEDED", off) for off in needed),
        rpath=path_list("DT_RPATH"),
        runpath=path_list("DT_RUNPATH"),
    )


def _read_info(fh: BinaryIO, size: int) -> ElfInfo:
    rd = _Reader(fh, size)
    head = rd.read(0, min(size, 64), "ELF header")
    lay = _layout(head)
    if lay is None:
        raise ElfParseError("not an ELF file")
    little = lay.endian == "little"
    ehdr = _basic_structs(little, lay.elf_class).Elf_Ehdr.parse(head)
    structs = _structs(little, lay.elf_class, ehdr.e_type, ehdr.e_machine, ehdr.e_ident.EI_OSABI)

    phdr_size = _PHDR_SIZE[lay.elf_class]
    interps: list[Container] = []
    dynamics: list[Container] = []
    notes: list[Container] = []
    loads: list[Container] = []
    if lay.phnum:
        table = rd.read(lay.phoff, lay.phnum * lay.phentsize, "program header table")
        for at in range(0, len(table), lay.phentsize):  # phnum is bounded by _layout
            phdr = structs.Elf_Phdr.parse(table[at : at + phdr_size])
            if phdr.p_type == "PT_LOAD":
                loads.append(phdr)
            elif phdr.p_type == "PT_DYNAMIC":
                dynamics.append(phdr)
            elif phdr.p_type == "PT_INTERP":
                interps.append(phdr)
            elif phdr.p_type == "PT_NOTE":
                notes.append(phdr)
    if len(interps) > 1 or len(dynamics) > 1:
        raise ElfParseError("more than one PT_INTERP or PT_DYNAMIC segment")

    info = _read_dynamic(rd, lay, structs, dynamics[0], loads) if dynamics else ElfInfo()

    interpreter = None
    # Separate debug files (objcopy --only-keep-debug) keep the header with no bytes.
    if interps and interps[0].p_filesz:
        seg = interps[0]
        if seg.p_filesz > MAX_STRING:
            raise ElfParseError(f"PT_INTERP of {seg.p_filesz} bytes")
        raw = rd.read(seg.p_offset, seg.p_filesz, "PT_INTERP")
        # The kernel refuses an interpreter path that does not end in NUL.
        if raw[-1] != 0 or raw[0] == 0:
            raise ElfParseError("PT_INTERP is empty or not NUL-terminated")
        interpreter = _decode(raw[: raw.index(b"\0")])

    note_reader = _Notes(rd, structs)
    build_id = None
    for seg in notes:  # bounded by phnum
        build_id = note_reader.build_id(seg.p_offset, seg.p_filesz, seg.p_align)
        if build_id is not None:
            break
    if not notes:  # relocatable objects (kernel modules) keep notes in sections only
        build_id = _build_id_from_sections(rd, lay, structs, note_reader)
    return attrs.evolve(info, interpreter=interpreter, build_id=build_id)


def read_elf_info(fh: BinaryIO, size: int, *, name: str) -> ElfInfo:
    """Read interpreter, soname, needed, rpath, runpath and build-id from an ELF file.

    `fh` is a seekable binary file of `size` bytes (its position is left undefined); `name`
    is used in error messages only. Raises `ElfParseError` naming `name` for anything
    malformed: truncation, out-of-range offsets or counts, duplicate or empty names, and any
    exception from pyelftools. I/O errors (`OSError`) from `fh` propagate unchanged: they
    are about the image being read, not about this file's content.
    """
    try:
        return _read_info(fh, size)
    except OSError:
        raise
    except ElfParseError as exc:
        raise ElfParseError(f"{escape_path(name)}: {exc}") from None
    except Exception as exc:  # pyelftools raises far more than ELFError on crafted input
        raise ElfParseError(
            f"{escape_path(name)}: malformed ELF ({type(exc).__name__}: {exc})"
        ) from exc

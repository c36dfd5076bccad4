"""What glibc's loader fixes per architecture: directories, `$LIB`, `$PLATFORM`, cache flags.

This module owns the per-ABI tables (an ABI being ELF class, byte order and machine) the
loader emulation needs: Debian's multiarch triplets and the default search directories,
the values `$LIB` and `$PLATFORM` may take, the legacy hwcap subdirectory names, and the
`ld.so.cache` entry flags each port's loader accepts. It must not read any file: these
are facts about glibc builds, with their sources beside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

# e_machine values (ELF gABI / glibc elf.h)
EM_386: Final = 3
EM_MIPS: Final = 8
EM_PPC: Final = 20
EM_PPC64: Final = 21
EM_S390: Final = 22
EM_ARM: Final = 40
EM_SPARCV9: Final = 43
EM_X86_64: Final = 62
EM_AARCH64: Final = 183
EM_RISCV: Final = 243
EM_LOONGARCH: Final = 258

Endian = Literal["little", "big"]
Abi = tuple[int, str, int]  # ELF class (32/64), byte order ("little"/"big"), e_machine

# Debian/Ubuntu multiarch triplets (the first directories of their loaders' default path).
_TRIPLETS: Final[Mapping[Abi, tuple[str, ...]]] = {
    (64, "little", EM_X86_64): ("x86_64-linux-gnu",),
    (32, "little", EM_X86_64): ("x86_64-linux-gnux32",),
    (32, "little", EM_386): ("i386-linux-gnu",),
    (64, "little", EM_AARCH64): ("aarch64-linux-gnu",),
    (64, "big", EM_AARCH64): ("aarch64_be-linux-gnu",),
    (32, "little", EM_ARM): ("arm-linux-gnueabihf", "arm-linux-gnueabi"),
    (64, "little", EM_PPC64): ("powerpc64le-linux-gnu",),
    (64, "big", EM_PPC64): ("powerpc64-linux-gnu",),
    (32, "big", EM_PPC): ("powerpc-linux-gnu",),
    (64, "big", EM_S390): ("s390x-linux-gnu",),
    (64, "little", EM_RISCV): ("riscv64-linux-gnu",),
    (64, "little", EM_MIPS): ("mips64el-linux-gnuabi64",),
    (64, "big", EM_MIPS): ("mips64-linux-gnuabi64",),
    (32, "little", EM_MIPS): ("mipsel-linux-gnu",),
    (32, "big", EM_MIPS): ("mips-linux-gnu",),
    (64, "little", EM_LOONGARCH): ("loongarch64-linux-gnu",),
    (64, "big", EM_SPARCV9): ("sparc64-linux-gnu",),
}

# What `$PLATFORM` (the loader's dl_platform) may be, the kernel's AT_PLATFORM first. The
# x86 loader does not keep AT_PLATFORM: since glibc 2.26 (and still in 2.42) it names the
# platform after the CPU (sysdeps/x86/cpu-features.c): on Intel CPUs "haswell" (AVX2, FMA,
# BMI1/2, LZCNT, MOVBE, POPCNT) or "xeon_phi" (AVX512ER/PF), otherwise "x86_64"; on i386
# "i686" (CMOV) or "i586" (CX8). More than one value: it depends on the CPU model.
PLATFORMS: Final[Mapping[Abi, tuple[str, ...]]] = {
    (64, "little", EM_X86_64): ("x86_64", "haswell", "xeon_phi"),
    (32, "little", EM_X86_64): ("x86_64", "haswell", "xeon_phi"),  # x32: the same code
    (32, "little", EM_386): ("i686", "i586"),
    (64, "little", EM_AARCH64): ("aarch64",),
    (64, "big", EM_AARCH64): ("aarch64_be",),
}

# The legacy hwcap subdirectory names of glibc < 2.37 (HWCAP_IMPORTANT, highest bit first:
# the order they nest in after tls/ and the platform), each present on some CPUs only.
LEGACY_HWCAPS: Final[Mapping[Abi, tuple[str, ...]]] = {
    (64, "little", EM_X86_64): ("avx512_1", "x86_64"),
    (32, "little", EM_X86_64): ("avx512_1", "x86_64"),
    (32, "little", EM_386): ("sse2",),
    (64, "little", EM_AARCH64): ("atomics",),
    (64, "big", EM_AARCH64): ("atomics",),
}

# Cache entry flags each loader accepts (glibc `_dl_cache_check_flags` per port;
# FLAG_ELF_LIBC6 = 3 plus the port's FLAG_*_LIB64/ABI bits from ldconfig.h). An ABI not
# listed accepts every ELF entry and relies on the class and machine check of the file.
CACHE_FLAGS: Final[Mapping[Abi, frozenset[int]]] = {
    (64, "little", EM_X86_64): frozenset({0x0303}),
    (32, "little", EM_X86_64): frozenset({0x0803}),
    (32, "little", EM_386): frozenset({1, 3}),
    (64, "little", EM_AARCH64): frozenset({0x0A03}),
    (64, "big", EM_AARCH64): frozenset({0x0A03}),
    (32, "little", EM_ARM): frozenset({3, 0x0903, 0x0B03}),
    (64, "little", EM_PPC64): frozenset({0x0503}),
    (64, "big", EM_PPC64): frozenset({0x0503}),
    (32, "big", EM_PPC): frozenset({1, 3}),
    (64, "big", EM_S390): frozenset({0x0403}),
    (32, "big", EM_S390): frozenset({1, 3}),
    (64, "little", EM_RISCV): frozenset({0x0F03, 0x1003}),
    (64, "little", EM_LOONGARCH): frozenset({0x1103, 0x1203}),
    (64, "big", EM_SPARCV9): frozenset({0x0103}),
}


def default_search_dirs(elf_class: int, endian: str, machine: int) -> tuple[str, ...]:
    """The loader's built-in directories for programs of this ELF class and machine.

    The union of what distributions compile in, in the order their loaders search:
    the multiarch triplet directories (Debian, Ubuntu), then `lib64`/`lib32` (Fedora,
    SUSE, Debian multilib), then `lib` (Arch, Alpine-like layouts). Files of another class
    or machine in any of them are skipped by the search, as `ld.so` skips them.
    """
    dirs: list[str] = []
    for triplet in _TRIPLETS.get((elf_class, endian, machine), ()):
        dirs += [f"/lib/{triplet}", f"/usr/lib/{triplet}"]
    if elf_class == 64:
        dirs += ["/lib64", "/usr/lib64"]
    elif machine == EM_X86_64:
        dirs += ["/libx32", "/usr/libx32"]
    else:
        dirs += ["/lib32", "/usr/lib32"]
    return (*dirs, "/lib", "/usr/lib")


def lib_values(abi: Abi) -> tuple[str, ...]:
    """What `$LIB` may expand to: it is a build-time choice of each distribution's glibc."""
    elf_class, _endian, machine = abi
    values = [f"lib/{t}" for t in _TRIPLETS.get(abi, ())]
    if elf_class == 64:
        values.append("lib64")
    elif machine == EM_X86_64:
        values.append("libx32")
    else:
        values.append("lib32")
    values.append("lib")
    return tuple(values)

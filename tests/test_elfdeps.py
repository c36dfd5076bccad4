"""ELF dependency closures inside a root, checked against what glibc does on this host.

Every fixture is a real ELF file: small libraries and programs built with gcc, and the
host's own libc, loader and /bin/ls copied into a fake root. Where the answer is not
obvious, the host's glibc is asked for it on a host copy (running the program, `ldd`):
the host's `ldd` only ever runs on binaries built here, never on anything inside a root.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from imgdiff.errors import BadInput
from imgdiff.fs.rootfs import RootFS
from imgdiff.loaders.elf import (
    CacheEntry,
    ElfClosure,
    FactsCache,
    LoaderConfig,
    default_search_dirs,
    elf_closure,
    load_loader_config,
    parse_ld_so_cache,
    reverse_index,
)
from imgdiff.loaders.elf import closure as closure_module

from .conftest import write_tree

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None or not Path("/lib64/ld-linux-x86-64.so.2").exists(),
    reason="needs gcc and an x86-64 glibc host",
)

MULTIARCH = "/lib/x86_64-linux-gnu"
LDSO = "/lib64/ld-linux-x86-64.so.2"
DEMO_LIB = "/opt/demo/bin/../lib/libdemo.so.1"  # as the loader spells it via $ORIGIN/../lib
DEP_LIB = "/opt/demo/bin/../lib/libdep.so.1"

SOURCES = {
    "dep.c": "int dep(void) { return 7; }\n",
    "demo.c": "int dep(void);\nint demo(void) { return dep() + 1; }\n",
    "main.c": (
        "#include <stdio.h>\nint demo(void);\n"
        'int main(void) { printf("%d\\n", demo()); return 0; }\n'
    ),
    "demo32.c": "int demo(void) { return 1; }\n",
    "cyca_stub.c": "int a(void) { return 1; }\n",
    "cycb.c": "int a(void);\nint b(void) { return a(); }\n",
    "cyca.c": "int b(void);\nint a(void) { return 2; }\nint c(void) { return b(); }\n",
    "cycle_main.c": "int c(void);\nint main(void) { return c() - 2; }\n",
    "noso.c": "int noso(void) { return 3; }\n",
    "noso_main.c": "int noso(void);\nint main(void) { return noso() - 3; }\n",
    "cached.c": "int cached(void) { return 5; }\n",
    "cached_main.c": "int cached(void);\nint main(void) { return cached() - 5; }\n",
    "z_main.c": "int zlibVersion(void);\nint main(void) { return !zlibVersion(); }\n",
}


# Programs needing libdemo.so.1, and the DT_RUNPATH (True) or DT_RPATH (False) they carry.
DEMO_PROGRAMS = {
    "demo-runpath": ("$ORIGIN/../lib", True),
    "demo-rpath": ("$ORIGIN/../lib", False),
    "demo-skip32": ("$ORIGIN/../lib32:$ORIGIN/../lib", True),
    "demo-broken": ("$ORIGIN/../broken:$ORIGIN/../lib", True),
    "demo-truncated": ("$ORIGIN/../truncated:$ORIGIN/../lib", True),
    "demo-dst": ("$ORIGIN/../$LIB:$ORIGIN/../${PLATFORM}", True),
}

# gcc command lines, run in the build directory (no shell: `$ORIGIN` stays literal).
BUILD = [
    "-shared -fPIC -Wl,-soname,libdep.so.1 dep.c -o lib/libdep.so.1",
    "-shared -fPIC -Wl,-soname,libdemo.so.1 demo.c -Llib -Wl,--no-as-needed -l:libdep.so.1"
    " -o lib/libdemo.so.1",
    *(
        f"main.c -Llib -l:libdemo.so.1 -Wl,-rpath-link,lib"
        f" -Wl,{'--enable-new-dtags' if runpath else '--disable-new-dtags'},-rpath,{path}"
        f" -o bin/{name}"
        for name, (path, runpath) in DEMO_PROGRAMS.items()
    ),
    # a needed name that is a path: the library's soname becomes the DT_NEEDED string
    "-shared -fPIC -Wl,-soname,$ORIGIN/../lib/libnoso.so noso.c -o lib/libnoso.so",
    "noso_main.c lib/libnoso.so -o bin/noso",
    # libcyca needs libcycb needs libcyca: libcycb is linked against a stub first
    "-shared -fPIC -Wl,-soname,libcyca.so.1 cyca_stub.c -o stub/libcyca.so.1",
    "-shared -fPIC -Wl,-soname,libcycb.so.1 cycb.c -Wl,--no-as-needed stub/libcyca.so.1"
    " -o lib/libcycb.so.1",
    "-shared -fPIC -Wl,-soname,libcyca.so.1 cyca.c -Wl,--no-as-needed lib/libcycb.so.1"
    " -o lib/libcyca.so.1",
    "cycle_main.c -Llib -l:libcyca.so.1 -Wl,-rpath-link,lib -o bin/cycle",
    "-shared -fPIC -Wl,-soname,libcached.so.1 cached.c -o lib/libcached.so.1",
    "cached_main.c -Llib -l:libcached.so.1 -o bin/usecached",
    # libz is on the host only; these RPATH entries reach it only by leaving the root
    "z_main.c -l:libz.so.1 -Wl,--disable-new-dtags,-rpath,"
    "/usr/lib/evil/x86_64-linux-gnu:/usr/lib/up/x86_64-linux-gnu -o bin/usez",
]


def gcc(command: str, cwd: Path) -> None:
    subprocess.run(["gcc", *command.split()], cwd=cwd, check=True, capture_output=True)


def build_32bit_library(build: Path, out: str) -> None:
    """A 32-bit libdemo.so.1: built with -m32 when gcc can, else a class-patched copy."""
    try:
        gcc(f"-m32 -shared -fPIC -nostdlib -Wl,-soname,libdemo.so.1 demo32.c -o {out}", build)
    except subprocess.CalledProcessError:
        data = bytearray((build / "lib/libdemo.so.1").read_bytes())
        data[4] = 1  # EI_CLASS = ELFCLASS32: the loader checks the class first
        (build / out).write_bytes(bytes(data))


def ldd(program: Path, strip: Path | None = None) -> dict[str, str | None]:
    """`ldd` on a host binary: needed name (or interpreter path) -> path, None if not found."""
    out = subprocess.run(["ldd", str(program)], check=False, capture_output=True, text=True).stdout
    found: dict[str, str | None] = {}
    for raw in out.splitlines():
        line = raw.strip()
        if " => " in line:
            name, _, rest = line.partition(" => ")
            found[name] = None if rest.startswith("not found") else rest.rsplit(" (", 1)[0]
        elif line.startswith("/"):
            found[line.rsplit(" (", 1)[0]] = line.rsplit(" (", 1)[0]
    if strip is not None:
        prefix = str(strip)
        found = {k: v[len(prefix) :] if v and v.startswith(prefix) else v for k, v in found.items()}
    return found


def clone(src: Path, dest: Path) -> Path:
    """A copy of a root made of hard links: cheap, and the same inodes."""
    shutil.copytree(src, dest, symlinks=True, copy_function=os.link)
    return dest


@attrs.frozen
class World:
    build: Path  # sources and build products
    root: Path  # the fake root
    host: Path  # a host copy of /opt/demo, outside the root, for running and ldd


def install(root: Path, files: dict[str, Path | str]) -> None:
    """Copy real files into the root at the given paths (symlinks followed)."""
    for inside, source in files.items():
        target = root / inside.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    base = tmp_path_factory.mktemp("elfdeps")
    build = write_tree(base / "build", SOURCES)
    for sub in ("lib", "bin", "stub", "lib32"):
        (build / sub).mkdir()
    for command in BUILD:
        gcc(command, build)
    build_32bit_library(build, "lib32/libdemo.so.1")

    root = base / "root"
    install(
        root, {f"/opt/demo/bin/{name}": build / "bin" / name for name in (*DEMO_PROGRAMS, "noso")}
    )
    install(
        root,
        {
            f"/opt/demo/lib/{n}": build / "lib" / n
            for n in ("libdemo.so.1", "libdep.so.1", "libnoso.so")
        },
    )
    install(root, {"/opt/demo/lib32/libdemo.so.1": build / "lib32/libdemo.so.1"})
    (root / "opt/demo/broken").mkdir()
    (root / "opt/demo/broken/libdemo.so.1").write_text("not ELF: text where a library was\n" * 3)
    (root / "opt/demo/truncated").mkdir()
    truncated = (build / "lib/libdemo.so.1").read_bytes()[:1000]
    (root / "opt/demo/truncated/libdemo.so.1").write_bytes(truncated)
    # the host's real libc and what /bin/ls needs, and its loader laid out as Debian does:
    # the file in the multiarch directory, /lib64/ld-linux-x86-64.so.2 a symlink to it
    needed = {n: p for n, p in ldd(Path("/bin/ls")).items() if p is not None and n != LDSO}
    install(root, {f"{MULTIARCH}/{name}": path for name, path in needed.items() if path})
    install(root, {"/bin/ls": "/bin/ls", f"{MULTIARCH}/ld-linux-x86-64.so.2": LDSO})
    (root / "lib64").mkdir()
    os.symlink(f"{MULTIARCH}/ld-linux-x86-64.so.2", root / LDSO.lstrip("/"))
    install(
        root, {f"/usr/local/lib/{n}": build / "lib" / n for n in ("libcyca.so.1", "libcycb.so.1")}
    )
    install(
        root, {f"/usr/local/bin/{n}": build / "bin" / n for n in ("cycle", "usecached", "usez")}
    )
    write_tree(
        root / "etc",
        {
            "ld.so.conf": "include ld.so.conf.d/*.conf\n",
            "ld.so.conf.d/local.conf": "# locally built libraries\n/usr/local/lib\n",
        },
    )
    host = base / "host"
    shutil.copytree(root / "opt/demo", host / "opt/demo")
    return World(build=build, root=root, host=host)


@pytest.fixture
def fs(world: World) -> Iterator[RootFS]:
    with RootFS(str(world.root)) as rootfs:
        yield rootfs


def closure_of(root: Path, program: str, cache: FactsCache | None = None) -> ElfClosure:
    with RootFS(str(root)) as rootfs:
        return elf_closure(rootfs, program, load_loader_config(rootfs), cache=cache)


def run_on_host(program: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(program)], check=False, capture_output=True, text=True, timeout=10)


# --------------------------------------------------------------------------- search order


def test_runpath_resolves_via_origin_but_is_not_inherited_by_the_library(world: World) -> None:
    closure = closure_of(world.root, "/opt/demo/bin/demo-runpath")
    assert closure.interpreter == LDSO
    assert dict(closure.libraries) == {
        "libdemo.so.1": DEMO_LIB,
        "libc.so.6": f"{MULTIARCH}/libc.so.6",
    }
    # libdemo has no paths of its own and RUNPATH is not inherited: libdep is not found
    assert closure.unresolved == ("libdep.so.1",)
    assert any("libdep.so.1: not found" in note for note in closure.notes)
    host_program = world.host / "opt/demo/bin/demo-runpath"
    expected = ldd(host_program, strip=world.host)
    assert expected["libdemo.so.1"] == DEMO_LIB
    assert expected["libdep.so.1"] is None
    assert run_on_host(host_program).returncode == 127


def test_rpath_is_inherited_along_the_loading_chain(world: World) -> None:
    closure = closure_of(world.root, "/opt/demo/bin/demo-rpath")
    libraries = dict(closure.libraries)
    assert libraries == {
        "libdemo.so.1": DEMO_LIB,
        "libc.so.6": f"{MULTIARCH}/libc.so.6",
        "libdep.so.1": DEP_LIB,
    }
    assert [name for name, _ in closure.libraries] == ["libdemo.so.1", "libc.so.6", "libdep.so.1"]
    assert closure.unresolved == ()
    assert (DEMO_LIB, DEP_LIB) in closure.edges
    assert ("/opt/demo/bin/demo-rpath", DEMO_LIB) in closure.edges
    host_program = world.host / "opt/demo/bin/demo-rpath"
    expected = ldd(host_program, strip=world.host)
    assert expected["libdemo.so.1"] == libraries["libdemo.so.1"]
    assert expected["libdep.so.1"] == libraries["libdep.so.1"]
    assert run_on_host(host_program).stdout == "8\n"


@pytest.mark.parametrize("with_cache", [False, True], ids=["conf-and-defaults", "host-cache"])
def test_ls_closure_matches_host_ldd(world: World, tmp_path: Path, with_cache: bool) -> None:
    root = world.root
    if with_cache:  # the host's own cache: its entries point where the root has the files
        if not Path("/etc/ld.so.cache").exists():
            pytest.skip("host has no ld.so.cache")
        root = clone(world.root, tmp_path / "root")
        shutil.copy("/etc/ld.so.cache", root / "etc/ld.so.cache")
    closure = closure_of(root, "/bin/ls")
    # a host with glibc-hwcaps builds of these libraries loads the one its CPU supports; the
    # root holds that file at the plain path, where a CPU without it would find the base one
    expected = {
        name: path and re.sub(r"/glibc-hwcaps/[^/]+/", "/", path)
        for name, path in ldd(Path("/bin/ls")).items()
    }
    interpreter = expected.pop(LDSO)
    assert closure.interpreter == interpreter
    assert closure.unresolved == ()
    assert dict(closure.libraries) == expected  # same names, same paths, same order of need
    assert [n for n, _ in closure.libraries] == list(expected)
    libc = expected["libc.so.6"]
    assert libc is not None
    assert (libc, LDSO) in closure.edges  # libc's ld-linux-x86-64.so.2 is the interpreter


def test_class_mismatch_is_skipped_like_ld_so(world: World) -> None:
    closure = closure_of(world.root, "/opt/demo/bin/demo-skip32")
    assert dict(closure.libraries)["libdemo.so.1"] == DEMO_LIB
    assert any(
        "/opt/demo/bin/../lib32/libdemo.so.1" in note and "ELFCLASS32" in note
        for note in closure.notes
    )
    expected = ldd(world.host / "opt/demo/bin/demo-skip32", strip=world.host)
    assert expected["libdemo.so.1"] == DEMO_LIB


@pytest.mark.parametrize(
    ("program", "candidate", "reason"),
    [
        ("demo-broken", "/opt/demo/bin/../broken/libdemo.so.1", "invalid ELF header"),
        ("demo-truncated", "/opt/demo/bin/../truncated/libdemo.so.1", "beyond the file"),
    ],
)
def test_corrupt_library_in_the_path_stops_the_search_like_ld_so(
    world: World, program: str, candidate: str, reason: str
) -> None:
    closure = closure_of(world.root, f"/opt/demo/bin/{program}")
    assert "libdemo.so.1" in closure.unresolved
    assert "libdemo.so.1" not in dict(closure.libraries)
    assert any(candidate in note and reason in note for note in closure.notes), closure.notes
    # glibc refuses to start it (exit 127 "invalid ELF header"; SIGBUS on the truncated one)
    result = run_on_host(world.host / "opt/demo/bin" / program)
    assert result.returncode != 0
    assert "libdemo.so.1" not in ldd(world.host / "opt/demo/bin" / program)


def test_needed_name_with_a_slash_is_a_path_after_origin_expansion(world: World) -> None:
    closure = closure_of(world.root, "/opt/demo/bin/noso")
    assert dict(closure.libraries)["$ORIGIN/../lib/libnoso.so"] == "/opt/demo/bin/../lib/libnoso.so"
    assert closure.unresolved == ()
    assert run_on_host(world.host / "opt/demo/bin/noso").returncode == 0


# What glibc's x86-64 loader may substitute for $PLATFORM: AT_PLATFORM ("x86_64"), or since
# glibc 2.26 a name it derives from CPU features on Intel CPUs (sysdeps/x86/cpu-features.c).
X86_64_PLATFORMS = ("x86_64", "haswell", "xeon_phi")
CPU_NOTE = "depends on the CPU model"


def host_platform() -> str | None:
    """What this host's loader substitutes for $PLATFORM, as it reports it (glibc >= 2.33)."""
    out = subprocess.run(
        [LDSO, "--list-diagnostics"], check=False, capture_output=True, text=True
    ).stdout
    found = re.search(r'^dl_platform="([^"]*)"$', out, re.M)
    return found.group(1) if found else None


def dst_world(world: World, tmp_path: Path, *wheres: str) -> tuple[Path, Path]:
    """A root and a host copy where libdemo.so.1 is moved from lib/ to each of `wheres`."""
    root = clone(world.root, tmp_path / "root")
    host = clone(world.host, tmp_path / "host")
    for tree in (root, host):
        for where in wheres:
            (tree / "opt/demo" / where).mkdir(parents=True, exist_ok=True)
            shutil.copy(tree / "opt/demo/lib/libdemo.so.1", tree / "opt/demo" / where)
        (tree / "opt/demo/lib/libdemo.so.1").unlink()
    return root, host


@pytest.mark.parametrize("where", ["lib/x86_64-linux-gnu", "lib64"])
def test_lib_token_expands_as_the_host_loader_does(
    world: World, tmp_path: Path, where: str
) -> None:
    """RUNPATH `$ORIGIN/../$LIB:$ORIGIN/../${PLATFORM}`, libdemo under `$LIB` or nowhere.

    No platform directory holds libdemo, so no CPU model changes what the loader does.
    """
    root, host = dst_world(world, tmp_path, where)
    closure = closure_of(root, "/opt/demo/bin/demo-dst")
    expected = ldd(host / "opt/demo/bin/demo-dst", strip=host)["libdemo.so.1"]
    # $LIB is where the root's loader lives (lib/x86_64-linux-gnu, as on this Debian host)
    assert dict(closure.libraries).get("libdemo.so.1") == expected
    assert ("libdemo.so.1" in closure.unresolved) == (expected is None)
    assert closure.alternatives == ()
    assert not any(CPU_NOTE in note for note in closure.notes), closure.notes


@pytest.mark.parametrize("platform", X86_64_PLATFORMS)
def test_platform_token_answer_depends_on_the_cpu_model(
    world: World, tmp_path: Path, platform: str
) -> None:
    """libdemo under one platform directory only: found on some CPU models, not on others.

    Whatever this host's CPU is, its loader's answer is the one the note gives for the
    platform it picks, and that platform is one imgdiff considers.
    """
    root, host = dst_world(world, tmp_path, platform)
    closure = closure_of(root, "/opt/demo/bin/demo-dst")
    path = f"/opt/demo/bin/../{platform}/libdemo.so.1"
    assert dict(closure.libraries)["libdemo.so.1"] == path
    assert closure.alternatives == ()
    assert "libdemo.so.1" not in closure.unresolved
    notes = [note for note in closure.notes if CPU_NOTE in note]
    assert len(notes) == 1, closure.notes
    for other in X86_64_PLATFORMS:
        assert f"{other}: {path if other == platform else 'not found'}" in notes[0]
    picked = host_platform()
    if picked is None:
        pytest.skip("this host's loader has no --list-diagnostics (glibc < 2.33)")
    assert picked in X86_64_PLATFORMS
    expected = ldd(host / "opt/demo/bin/demo-dst", strip=host)["libdemo.so.1"]
    assert expected == (path if picked == platform else None)
    assert f"{picked}: {expected or 'not found'}" in notes[0]


def test_every_platform_directory_is_a_possible_dependency(world: World, tmp_path: Path) -> None:
    root, host = dst_world(world, tmp_path, *X86_64_PLATFORMS)
    closure = closure_of(root, "/opt/demo/bin/demo-dst")
    paths = [f"/opt/demo/bin/../{platform}/libdemo.so.1" for platform in X86_64_PLATFORMS]
    assert dict(closure.libraries)["libdemo.so.1"] == paths[0]  # AT_PLATFORM's
    assert closure.alternatives == tuple(("libdemo.so.1", path) for path in paths[1:])
    assert set(paths) <= closure.dependency_paths()
    assert sum(CPU_NOTE in note for note in closure.notes) == 1
    # the file this host's CPU makes its loader take is among them
    assert ldd(host / "opt/demo/bin/demo-dst", strip=host)["libdemo.so.1"] in paths


def test_platform_directories_reached_alike_give_one_answer(world: World, tmp_path: Path) -> None:
    """Every platform directory a symlink to one: the same file on every CPU, no note."""
    root, _host = dst_world(world, tmp_path, "x86_64")
    for platform in X86_64_PLATFORMS[1:]:
        os.symlink("x86_64", root / "opt/demo" / platform)
    closure = closure_of(root, "/opt/demo/bin/demo-dst")
    assert dict(closure.libraries)["libdemo.so.1"] == "/opt/demo/bin/../x86_64/libdemo.so.1"
    assert closure.alternatives == ()
    assert not any(CPU_NOTE in note for note in closure.notes), closure.notes


def test_legacy_platform_and_hwcap_subdirectories_are_alternatives(
    world: World, tmp_path: Path
) -> None:
    """glibc < 2.37 also searches tls/, the platform and hwcap names nested in each directory.

    Which of them the host's loader takes depends on its version and CPU; it is one of the
    files imgdiff records.
    """
    root = clone(world.root, tmp_path / "root")
    host = clone(world.host, tmp_path / "host")
    subdirs = ["haswell/avx512_1", "haswell", "xeon_phi", "avx512_1", "tls/x86_64"]
    for tree in (root, host):
        for sub in subdirs:
            (tree / "opt/demo/lib" / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(tree / "opt/demo/lib/libdemo.so.1", tree / "opt/demo/lib" / sub)
    closure = closure_of(root, "/opt/demo/bin/demo-rpath")
    assert dict(closure.libraries)["libdemo.so.1"] == DEMO_LIB
    variants = {f"/opt/demo/bin/../lib/{sub}/libdemo.so.1" for sub in subdirs}
    assert {path for _, path in closure.alternatives} == variants
    chosen = ldd(host / "opt/demo/bin/demo-rpath", strip=host)["libdemo.so.1"]
    assert chosen in {DEMO_LIB, *variants}


def test_needed_cycle_terminates_with_both_edges(world: World) -> None:
    closure = closure_of(world.root, "/usr/local/bin/cycle")
    libraries = dict(closure.libraries)
    a, b = "/usr/local/lib/libcyca.so.1", "/usr/local/lib/libcycb.so.1"
    assert libraries["libcyca.so.1"] == a  # an ld.so.conf directory: the root has no cache
    assert libraries["libcycb.so.1"] == b
    assert len(closure.libraries) == 3  # libcyca, libc, libcycb: each once
    assert (a, b) in closure.edges
    assert (b, a) in closure.edges


def test_hwcaps_variant_is_recorded_as_possible_dependency(world: World, tmp_path: Path) -> None:
    root = clone(world.root, tmp_path / "root")
    host = clone(world.host, tmp_path / "host")
    for tree in (root, host):
        variant = tree / "opt/demo/lib/glibc-hwcaps/x86-64-v2"
        variant.mkdir(parents=True)
        shutil.copy(tree / "opt/demo/lib/libdemo.so.1", variant / "libdemo.so.1")
    closure = closure_of(root, "/opt/demo/bin/demo-rpath")
    hwcaps_path = "/opt/demo/bin/../lib/glibc-hwcaps/x86-64-v2/libdemo.so.1"
    assert dict(closure.libraries)["libdemo.so.1"] == DEMO_LIB
    assert closure.alternatives == (("libdemo.so.1", hwcaps_path),)
    assert hwcaps_path in closure.dependency_paths()
    # whichever the host's CPU makes glibc choose is among the recorded candidates
    chosen = ldd(host / "opt/demo/bin/demo-rpath", strip=host)["libdemo.so.1"]
    assert chosen in {DEMO_LIB, hwcaps_path}


def test_symlinks_leaving_the_root_never_reach_host_files(world: World, tmp_path: Path) -> None:
    root = clone(world.root, tmp_path / "root")
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    os.symlink("/usr/lib", root / "usr/lib/evil")  # absolute: the root's /usr/lib
    os.symlink("../../../../../../../../usr/lib", root / "usr/lib/up")  # `..` stops at the root
    # a reader following symlinks on the host would land on the host's libz
    assert (root / "usr/lib/evil/x86_64-linux-gnu/libz.so.1").exists()
    closure = closure_of(root, "/usr/local/bin/usez")
    assert closure.unresolved == ("libz.so.1",)
    assert all("libz" not in path for _, path in closure.libraries)
    # on the host the very same program finds the host's libz
    assert ldd(world.build / "bin/usez")["libz.so.1"] is not None


def test_non_elf_and_missing_programs_are_notes_not_errors(fs: RootFS) -> None:
    config = load_loader_config(fs)
    text = elf_closure(fs, "/etc/ld.so.conf", config)
    assert text.libraries == ()
    assert any("invalid ELF header" in note for note in text.notes)
    missing = elf_closure(fs, "/no/such/program", config)
    assert missing.libraries == ()
    assert any("not found" in note for note in missing.notes)


def test_library_as_root_object_has_no_interpreter_and_no_inherited_paths(fs: RootFS) -> None:
    closure = elf_closure(fs, "/opt/demo/lib/libdemo.so.1", load_loader_config(fs))
    assert closure.interpreter is None
    assert dict(closure.libraries)["libc.so.6"] == f"{MULTIARCH}/libc.so.6"
    assert closure.unresolved == ("libdep.so.1",)  # its own directory is not searched


def test_missing_interpreter_is_noted(world: World, tmp_path: Path) -> None:
    root = clone(world.root, tmp_path / "root")
    (root / LDSO.lstrip("/")).unlink()
    closure = closure_of(root, "/bin/ls")
    assert closure.interpreter == LDSO
    assert any("cannot start" in note for note in closure.notes)
    # libc still needs ld-linux-x86-64.so.2, and finds it in the multiarch directory
    assert dict(closure.libraries)["ld-linux-x86-64.so.2"] == f"{MULTIARCH}/ld-linux-x86-64.so.2"
    assert closure.unresolved == ()


# --------------------------------------------------------------------------- ld.so.cache


def ldconfig_listing(cache: str | None = None) -> set[tuple[str, str]]:
    args = ["ldconfig", "-p"] + (["-C", cache] if cache else [])
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return {(m.group(1), m.group(2)) for m in re.finditer(r"^\t(\S+) \(.*\) => (.*)$", out, re.M)}


@pytest.mark.skipif(not Path("/etc/ld.so.cache").exists(), reason="host has no ld.so.cache")
def test_host_ld_so_cache_parses_like_ldconfig_lists_it() -> None:
    entries = parse_ld_so_cache(Path("/etc/ld.so.cache").read_bytes())
    assert {(e.key, e.path) for e in entries} == ldconfig_listing()
    listing = subprocess.run(["ldconfig", "-p"], check=True, capture_output=True, text=True).stdout
    count = re.match(r"(\d+) libs found", listing)
    assert count is not None
    assert len(entries) == int(count.group(1))
    # the x86-64 one: a host with libc6-x32 or libc6-i386 lists those too
    libc = [e for e in entries if e.key == "libc.so.6" and e.flags == 0x0303]
    assert libc  # FLAG_ELF_LIBC6 | FLAG_X8664_LIB64
    assert libc[0].path.endswith("/libc.so.6")


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="ldconfig -r chroots")


@needs_root
def test_cache_is_consulted_before_the_default_directories(world: World, tmp_path: Path) -> None:
    root = clone(world.root, tmp_path / "root")
    cached = root / "opt/cached"
    (cached / "glibc-hwcaps/x86-64-v3").mkdir(parents=True)
    shutil.copy(world.build / "lib/libcached.so.1", cached / "libcached.so.1")
    shutil.copy(world.build / "lib/libcached.so.1", cached / "glibc-hwcaps/x86-64-v3/")
    conf = root / "etc/ld.so.conf.d/cached.conf"
    conf.write_text("/opt/cached\n")
    subprocess.run(["ldconfig", "-X", "-r", str(root)], check=True, capture_output=True)
    conf.unlink()  # from now on only the cache knows /opt/cached

    cache_file = root / "etc/ld.so.cache"
    entries = parse_ld_so_cache(cache_file.read_bytes())
    assert {(e.key, e.path) for e in entries} == ldconfig_listing(str(cache_file))
    assert CacheEntry("libcached.so.1", "/opt/cached/libcached.so.1", 0x0303) in entries
    variants = [e for e in entries if e.key == "libcached.so.1" and e.hwcap]
    assert [(v.path, v.hwcaps_subdir) for v in variants] == [
        ("/opt/cached/glibc-hwcaps/x86-64-v3/libcached.so.1", "x86-64-v3")
    ]

    closure = closure_of(root, "/usr/local/bin/usecached")
    assert dict(closure.libraries)["libcached.so.1"] == "/opt/cached/libcached.so.1"
    assert closure.alternatives == (
        ("libcached.so.1", "/opt/cached/glibc-hwcaps/x86-64-v3/libcached.so.1"),
    )
    assert closure.unresolved == ()


@needs_root
def test_library_missing_from_a_stale_cache_is_unresolved_with_a_note(
    world: World, tmp_path: Path
) -> None:
    root = clone(world.root, tmp_path / "root")
    subprocess.run(["ldconfig", "-X", "-r", str(root)], check=True, capture_output=True)
    # installed after ldconfig ran, into an ld.so.conf directory
    shutil.copy(world.build / "lib/libcached.so.1", root / "usr/local/lib/libcached.so.1")
    with RootFS(str(root)) as rootfs:
        config = load_loader_config(rootfs)
        assert config.cache is not None
        stale = elf_closure(rootfs, "/usr/local/bin/usecached", config)
        assert stale.unresolved == ("libcached.so.1",)
        assert any("stale cache" in note for note in stale.notes)
        without_cache = attrs.evolve(config, cache=None)
        fresh = elf_closure(rootfs, "/usr/local/bin/usecached", without_cache)
        assert dict(fresh.libraries)["libcached.so.1"] == "/usr/local/lib/libcached.so.1"


def synthetic_cache(
    entries: list[tuple[int, str, str, int]],
    *,
    endian: str = "<",
    hwcaps: tuple[str, ...] = (),
    old_count: int | None = None,
    old_only: bool = False,
) -> bytes:
    """An ld.so.cache laid out as glibc's ldconfig (save_cache) writes it.

    `entries` are (flags, soname, path, hwcap). New-format string offsets count from the
    new header; extension offsets from the start of the file.
    """
    strings = bytearray()
    offsets: dict[str, int] = {}

    def intern(text: str, base: int) -> int:
        if text not in offsets:
            offsets[text] = len(strings)
            strings.extend(text.encode() + b"\0")
        return base + offsets[text]

    if old_only:
        table = b"".join(
            struct.pack(endian + "iII", flags, intern(key, 0), intern(value, 0))
            for flags, key, value, _ in entries
        )
        return b"ld.so-1.7.0\0" + struct.pack(endian + "I", len(entries)) + table + strings
    prefix = b""
    if old_count is not None:
        prefix = b"ld.so-1.7.0\0" + struct.pack(endian + "I", old_count) + b"\0" * 12 * old_count
        prefix += b"\0" * (-len(prefix) % 8)  # ALIGN_CACHE
    start = 48 + 24 * len(entries)
    table = b"".join(
        struct.pack(endian + "iIIIQ", flags, intern(key, start), intern(value, start), 0, hwcap)
        for flags, key, value, hwcap in entries
    )
    names = [intern(name, start) for name in hwcaps]
    body_end = len(prefix) + start + len(strings)
    ext_at = (body_end + 3) & ~3 if hwcaps else 0
    ext = b""
    if hwcaps:
        ext = (
            b"\0" * (ext_at - body_end)
            + struct.pack(endian + "IIIIII", 0xEAA42174, 1, 1, 0, ext_at + 24, 4 * len(names))
            + struct.pack(endian + f"{len(names)}I", *names)
        )
    flag_byte = 2 if endian == "<" else 3
    header = b"glibc-ld.so.cache1.1" + struct.pack(
        endian + "IIB3xI12x", len(entries), len(strings), flag_byte, ext_at
    )
    return prefix + header + table + bytes(strings) + ext


X86_64 = 0x0303
HWCAP_EXT = 1 << 62
SAMPLE = [
    (X86_64, "libz.so.1", "/usr/lib/glibc-hwcaps/x86-64-v3/libz.so.1", HWCAP_EXT | 0),
    (X86_64, "libz.so.1", "/usr/lib/libz.so.1", 0),
    (3, "libz.so.1", "/usr/lib32/libz.so.1", 0),
]


@pytest.mark.parametrize(
    "layout",
    [{}, {"endian": ">"}, {"old_count": 0}, {"old_count": 3}],
    ids=["new", "big-endian", "compat-empty-old", "compat"],
)
def test_cache_layouts_parse_to_the_same_entries(layout: dict[str, object]) -> None:
    data = synthetic_cache(SAMPLE, hwcaps=("x86-64-v3",), **layout)  # type: ignore[arg-type]
    assert parse_ld_so_cache(data) == (
        CacheEntry("libz.so.1", SAMPLE[0][2], X86_64, HWCAP_EXT, "x86-64-v3"),
        CacheEntry("libz.so.1", "/usr/lib/libz.so.1", X86_64),
        CacheEntry("libz.so.1", "/usr/lib32/libz.so.1", 3),
    )


def test_old_format_cache_alone_parses() -> None:
    entries = parse_ld_so_cache(synthetic_cache(SAMPLE[1:], old_only=True))
    assert [(e.key, e.path, e.flags) for e in entries] == [(k, v, f) for f, k, v, _ in SAMPLE[1:]]


def test_damaged_hwcaps_extension_only_loses_the_subdirectory_names() -> None:
    data = bytearray(synthetic_cache(SAMPLE, hwcaps=("x86-64-v3",)))
    ext_at = struct.unpack_from("<I", data, 32)[0]
    struct.pack_into("<I", data, ext_at, 0x12345678)  # wrong extension magic
    entries = parse_ld_so_cache(bytes(data))
    assert entries[0].hwcaps_subdir is None
    assert entries[0].hwcap == HWCAP_EXT
    assert len(entries) == 3


def _real_cache() -> bytes:
    path = Path("/etc/ld.so.cache")
    return path.read_bytes() if path.exists() else synthetic_cache(SAMPLE * 40)


def _bad_cache(kind: str) -> bytes:
    good = synthetic_cache(SAMPLE)
    if kind == "empty":
        return b""
    if kind == "truncated-header":
        return good[:30]
    if kind == "truncated-entries":
        return good[:60]
    if kind == "garbage":
        return random.Random(7).randbytes(4096)
    if kind == "huge-count":
        return good[:20] + struct.pack("<I", 0x7FFFFFFF) + good[24:]
    if kind == "key-offset-beyond-file":
        return good[:52] + struct.pack("<I", 0xFFFFFFF0) + good[56:]
    if kind == "unterminated-string":
        return good.rstrip(b"\0") + b"x" * 8
    if kind == "relative-path":
        return synthetic_cache([(X86_64, "libz.so.1", "usr/lib/libz.so.1", 0)])
    if kind == "key-with-slash":
        return synthetic_cache([(X86_64, "/etc/passwd", "/usr/lib/libz.so.1", 0)])
    if kind == "marked-invalid":
        return good[:28] + b"\x01" + good[29:]
    if kind == "old-magic-huge-count":
        return b"ld.so-1.7.0\0" + struct.pack("<I", 1000)
    raise AssertionError(kind)


BAD_CACHES = [
    "empty",
    "truncated-header",
    "truncated-entries",
    "garbage",
    "huge-count",
    "key-offset-beyond-file",
    "unterminated-string",
    "relative-path",
    "key-with-slash",
    "marked-invalid",
    "old-magic-huge-count",
]


@pytest.mark.parametrize("kind", BAD_CACHES)
def test_broken_cache_is_refused_and_conf_dirs_are_used(
    world: World, tmp_path: Path, kind: str
) -> None:
    with pytest.raises(BadInput):
        parse_ld_so_cache(_bad_cache(kind))
    root = clone(world.root, tmp_path / "root")
    (root / "etc/ld.so.cache").write_bytes(_bad_cache(kind))
    with RootFS(str(root)) as rootfs:
        config = load_loader_config(rootfs)
        assert config.cache is None
        assert any("ld.so.cache" in note for note in config.notes)
        closure = elf_closure(rootfs, "/usr/local/bin/cycle", config)
    assert dict(closure.libraries)["libcyca.so.1"] == "/usr/local/lib/libcyca.so.1"


def test_mutated_caches_parse_or_raise_bad_input_only() -> None:
    data = _real_cache()
    rng = random.Random(1234)
    for _ in range(300):
        mutated = bytearray(data[: rng.choice((len(data), rng.randrange(len(data))))])
        for _ in range(rng.randrange(1, 8)):
            if mutated:
                mutated[rng.randrange(min(len(mutated), 4096))] = rng.randrange(256)
        with contextlib.suppress(BadInput):
            parse_ld_so_cache(bytes(mutated))


# --------------------------------------------------------------------------- ld.so.conf


def test_include_loops_are_cut_and_directories_kept_in_order(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "etc/ld.so.conf": "include ld.so.conf.d/*.conf\n/usr/lib/a\n",
            "etc/ld.so.conf.d/loop.conf": (
                "include /etc/ld.so.conf\ninclude loop.conf\n/usr/lib/b # trailing comment\n"
            ),
            "etc/ld.so.conf.d/x.conf": "/usr/lib/c/\nhwcap 0 foo\nrelative/dir\n/usr/lib/a\n",
            "etc/ld.so.conf.d/.hidden.conf": "/never\n",
            "etc/ld.so.conf.d/not-conf.txt": "/never\n",
            **{
                f"etc/deep/{i}.conf": f"include /etc/deep/{i + 1}.conf\n/deep/{i}\n"
                for i in range(20)
            },
        },
    )
    with (root / "etc/ld.so.conf").open("a") as fh:
        fh.write("include /etc/deep/0.conf\n")
    with RootFS(str(root)) as rootfs:
        config = load_loader_config(rootfs)
    assert config.conf_dirs[:3] == ("/usr/lib/b", "/usr/lib/c", "/usr/lib/a")
    assert "/never" not in config.conf_dirs
    # each file's include comes before its own directory line: deepest first
    assert config.conf_dirs[3:] == tuple(f"/deep/{i}" for i in reversed(range(8)))
    assert sum("include loop" in note for note in config.notes) == 2
    assert any("relative directory ignored" in note for note in config.notes)
    assert any("nesting" in note for note in config.notes)
    assert config.cache is None


def test_default_directories_follow_the_program_architecture() -> None:
    x86_64 = default_search_dirs(64, "little", 62)
    assert x86_64[:4] == (MULTIARCH, "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64")
    assert default_search_dirs(32, "little", 3)[:2] == (
        "/lib/i386-linux-gnu",
        "/usr/lib/i386-linux-gnu",
    )
    assert default_search_dirs(64, "little", 183)[0] == "/lib/aarch64-linux-gnu"
    assert default_search_dirs(64, "little", 0xBEEF) == ("/lib64", "/usr/lib64", "/lib", "/usr/lib")


# --------------------------------------------------------------------------- reuse and index


def test_reverse_index_maps_libraries_to_the_programs_that_load_them(world: World) -> None:
    cache = FactsCache()
    programs = ["/opt/demo/bin/demo-rpath", "/opt/demo/bin/demo-runpath", "/bin/ls"]
    closures = [closure_of(world.root, p, cache) for p in programs]
    index = reverse_index(closures)
    demos = {"/opt/demo/bin/demo-rpath", "/opt/demo/bin/demo-runpath"}
    assert index[DEMO_LIB] == demos
    assert index["/opt/demo/lib/libdemo.so.1"] == demos  # the real path, `..` resolved
    assert index[DEP_LIB] == {"/opt/demo/bin/demo-rpath"}
    assert index[f"{MULTIARCH}/libc.so.6"] == set(programs)
    assert index[LDSO] == set(programs)
    assert not any(program in index for program in programs)


def test_shared_facts_cache_parses_each_file_once(world: World) -> None:
    cache = FactsCache()
    first = closure_of(world.root, "/bin/ls", cache)
    parsed = len(cache)
    assert parsed >= 4  # ls, ld.so, libc, libselinux, libpcre2
    again = closure_of(world.root, "/bin/ls", cache)
    assert len(cache) == parsed
    assert again == first == closure_of(world.root, "/bin/ls")
    closure_of(world.root, "/opt/demo/bin/demo-rpath", cache)
    assert len(cache) == parsed + 3  # only demo-rpath, libdemo and libdep are new


def test_loader_config_without_any_configuration_is_empty(tmp_path: Path) -> None:
    with RootFS(str(tmp_path)) as rootfs:
        assert load_loader_config(rootfs) == LoaderConfig()


# --------------------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    ("limit", "value", "note"),
    [("MAX_OBJECTS", 3, "closure truncated"), ("MAX_DEPTH", 1, "depth limit"),
     ("MAX_PROBES", 2, "incomplete")],
)  # fmt: skip
def test_bounds_cut_the_walk_with_a_note(
    world: World, monkeypatch: pytest.MonkeyPatch, limit: str, value: int, note: str
) -> None:
    monkeypatch.setattr(closure_module, limit, value)
    closure = closure_of(world.root, "/opt/demo/bin/demo-rpath")
    assert any(note in text for text in closure.notes), closure.notes
    assert "libdep.so.1" not in dict(closure.libraries)


def test_long_relative_and_empty_rpath_entries_are_bounded(world: World, tmp_path: Path) -> None:
    entries = ["", "relative/dir", *(f"/nope/{i}" for i in range(300)), "$ORIGIN/../lib"]
    gcc(f"main.c -Llib -l:libdemo.so.1 -Wl,-rpath-link,lib -Wl,--disable-new-dtags,-rpath,"
        f"{':'.join(entries)} -o {tmp_path / 'longpath'}", world.build)  # fmt: skip
    root = clone(world.root, tmp_path / "root")
    install(root, {"/opt/demo/bin/longpath": tmp_path / "longpath"})
    closure = closure_of(root, "/opt/demo/bin/longpath")
    assert any("more than 256 directories" in note for note in closure.notes)
    assert any("relative to the working directory" in note for note in closure.notes)
    assert closure.unresolved == ("libdemo.so.1",)  # its directory was past the bound

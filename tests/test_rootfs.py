"""Reading inside another root: chroot semantics, never the host's files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from imgdiff.fs import openat
from imgdiff.fs.rootfs import RootFS

from .conftest import write_tree


@pytest.fixture
def chroot(tmp_path: Path) -> Path:
    root = write_tree(
        tmp_path / "root",
        {"etc/passwd": "inside:x:0:0\n", "usr/lib/libx.so.1": b"\x7fELF", "srv/app/a.py": "x\n"},
    )
    os.symlink("/etc/passwd", root / "srv/abs-link")  # absolute: from the root, not the host
    os.symlink("../../../../../../../etc/passwd", root / "srv/climb")
    os.symlink("usr/lib", root / "lib")
    os.symlink("/proc/self/root/etc/passwd", root / "srv/magic")
    os.symlink("loop", root / "srv/loop")
    return root


OPENERS: list[Callable[[int, str | bytes, int], int]] = [
    openat.open_in_root,
    lambda fd, p, f: openat._open_in_root_walk(fd, os.fsencode(p), f | os.O_CLOEXEC),
]


@pytest.mark.parametrize("opener", OPENERS, ids=["openat2", "walk"])
def test_symlinks_resolve_inside_the_root(
    chroot: Path, opener: Callable[[int, str | bytes, int], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openat, "open_in_root", opener)
    monkeypatch.setattr("imgdiff.fs.rootfs.open_in_root", opener)
    with RootFS(str(chroot)) as fs:
        assert fs.read("/srv/abs-link") == b"inside:x:0:0\n"
        assert fs.read("/srv/climb") == b"inside:x:0:0\n"
        assert fs.read("/../../etc/passwd") == b"inside:x:0:0\n"
        assert fs.read("/lib/libx.so.1") == b"\x7fELF"
        assert fs.read("/srv/loop") is None
        assert fs.is_dir("/srv/app")
        assert fs.listdir("/srv/app") == ["a.py"]


def test_magic_links_are_refused(chroot: Path) -> None:
    with RootFS(str(chroot)) as fs:
        assert fs.read("/srv/magic") is None  # openat2 refuses; the walk finds no /proc inside


def test_root_given_as_a_descriptor(chroot: Path) -> None:
    fd = os.open(chroot, os.O_PATH | os.O_DIRECTORY)
    try:
        with RootFS(fd) as fs:
            assert fs.stat("/etc/passwd") is not None
    finally:
        os.close(fd)


def test_realpath_resolves_inside_the_root_and_keeps_what_it_cannot(chroot: Path) -> None:
    with RootFS(str(chroot)) as fs:
        assert fs.realpath("/srv/abs-link") == "/etc/passwd"
        assert fs.realpath("/srv/climb") == "/etc/passwd"  # `..` stops at the root
        assert fs.realpath("/lib/../etc") == "/usr/etc"  # `..` after a link: from its target
        assert fs.realpath("/lib/nothing/here") == "/usr/lib/nothing/here"  # missing: kept
        assert fs.realpath("/etc/passwd/x/..") == "/etc/passwd"  # not a directory: kept
        assert fs.realpath("/srv/loop/x") == "/srv/loop/x"  # a loop: normalised only
        assert fs.readlink("/srv/abs-link") == "/etc/passwd"
        assert fs.readlink("/etc/passwd") is None


def test_path_of_names_an_open_file_inside_the_root(chroot: Path) -> None:
    with RootFS(str(chroot)) as fs:
        fd = fs.open("/lib/libx.so.1", os.O_PATH)
        try:
            assert fs.path_of(fd) == "/usr/lib/libx.so.1"
        finally:
            os.close(fd)


def test_glob_sorts_existing_matches_and_skips_dot_files(chroot: Path) -> None:
    write_tree(chroot, {"etc/ld.so.conf.d/b.conf": "", "etc/ld.so.conf.d/a.conf": ""})
    write_tree(chroot, {"etc/ld.so.conf.d/.hidden.conf": ""})
    with RootFS(str(chroot)) as fs:
        assert fs.glob("/etc/ld.so.conf.d/*.conf", 10) == [
            "/etc/ld.so.conf.d/a.conf",
            "/etc/ld.so.conf.d/b.conf",
        ]
        assert fs.glob("/etc/ld.so.conf.d/*.conf", 1) == ["/etc/ld.so.conf.d/a.conf"]
        assert fs.glob("/nowhere/*", 10) == []

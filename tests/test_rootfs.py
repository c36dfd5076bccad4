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

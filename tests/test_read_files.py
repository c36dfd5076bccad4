"""Reading file contents back out of images: captured while streaming, or on demand."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from imgdiff import Manifest, Unsupported

from .conftest import crafted_tar, gnu_tar, member, write_tree
from .test_oci import _handmade_layout

FILES: dict[str, str | bytes] = {
    "var/lib/dpkg/status": "Package: a\n",
    "etc/app.conf": "x = 1\n",
    "usr/share/doc/big": b"z" * 100_000,
}


def test_tar_captures_selected_files_on_the_first_pass(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", FILES)
    archive = gnu_tar(tree, tmp_path / "t.tar.zst", "zstd")
    m = Manifest.read(str(archive), capture=lambda p: p.startswith("/var/lib/dpkg/"))
    assert m._image is not None
    assert set(m._read.captured) == {"/var/lib/dpkg/status"}
    got = m.read_files(["/var/lib/dpkg/status", "/etc/app.conf", "/nonexistent", "/etc"])
    assert got == {"/var/lib/dpkg/status": b"Package: a\n", "/etc/app.conf": b"x = 1\n"}


def test_later_member_replaces_captured_content(tmp_path: Path) -> None:
    data = crafted_tar(
        [member("etc/a", b"first"), member("etc/a", b"second"), member("etc/b", b"keep")]
    )
    path = tmp_path / "dup.tar"
    path.write_bytes(data)
    m = Manifest.read(str(path), capture=lambda p: True)
    assert m.read_files(["/etc/a", "/etc/b"]) == {"/etc/a": b"second", "/etc/b": b"keep"}


def test_whiteout_removes_captured_content(tmp_path: Path) -> None:
    lower = crafted_tar([member("var/lib/dpkg/status", b"old"), member("etc/x", b"x")])
    upper = crafted_tar([member("var/lib/dpkg/.wh.status", b"")])
    link = member("etc/y", type=tarfile.LNKTYPE, linkname="etc/x")
    top = crafted_tar([link])
    layout = _handmade_layout(tmp_path, [lower, upper, top])
    m = Manifest.read(str(layout), capture=lambda p: True)
    assert m.read_files(["/var/lib/dpkg/status", "/etc/y"]) == {"/etc/y": b"x"}


def test_directory_reads_refuse_symlinked_paths(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", FILES)
    (tmp_path / "outside").write_text("secret")
    (tree / "etc/link").symlink_to(tmp_path / "outside")
    (tree / "lnkdir").symlink_to("etc")
    m = Manifest.read(str(tree), use_cache=False)
    got = m.read_files(["/etc/app.conf", "/etc/link", "/lnkdir/app.conf"])
    assert got == {"/etc/app.conf": b"x = 1\n"}


def test_saved_manifest_holds_package_databases_only(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", FILES)
    Manifest.read(str(tree), use_cache=False).save(tmp_path / "m")
    loaded = Manifest.load(tmp_path / "m")
    assert loaded.read_files(["/var/lib/dpkg/status"]) == {"/var/lib/dpkg/status": b"Package: a\n"}
    with pytest.raises(Unsupported, match="keeps the contents of package databases and unit"):
        loaded.read_files(["/etc/app.conf"])

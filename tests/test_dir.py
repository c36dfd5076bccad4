"""Directory images on a live system: mounts, permissions, the digest cache on disk."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import imgdiff
from imgdiff import Manifest
from imgdiff.image import DirImage

from .conftest import TreePair, write_tree


@pytest.fixture
def tmpfs_in_tree(tmp_path: Path) -> Iterator[Path]:
    root = write_tree(tmp_path / "root", {"etc/hostname": "box\n"})
    run = root / "run"
    run.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "imgdiff-test", str(run)], check=True)
    try:
        (run / "pid").write_text("1\n")
        yield root
    finally:
        subprocess.run(["umount", str(run)], check=True)


def test_virtual_filesystem_mounted_inside_is_not_walked(tmpfs_in_tree: Path) -> None:
    m = Manifest.read(str(tmpfs_in_tree), use_cache=False)
    assert "/run" in m
    assert "/run/pid" not in m
    assert any(w.path == "/run" and "tmpfs mounted here" in w.message for w in m.warnings)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory other users may traverse (pytest's tmp_path lives under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="imgdiff-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_unreadable_file_is_a_warning_and_never_equal(public_dir: Path) -> None:
    old = write_tree(public_dir / "old", {"etc/secret": "s3cret\n", "etc/open": "x\n"})
    new = write_tree(public_dir / "new", {"etc/secret": "s3cret\n", "etc/open": "x\n"})
    for tree in (old, new):
        (tree / "etc/secret").chmod(0o000)
    # as an unprivileged user the file cannot be opened: a gap, not a silent "unchanged"
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "imgdiff", "diff", str(old), str(new), "--json", "--no-cache"],
        capture_output=True,
        check=True,
        env={**os.environ, "HOME": "/nonexistent"},
    )  # fmt: skip
    doc = json.loads(proc.stdout)
    assert [c["path"] for c in doc["changes"]] == ["/etc/secret"]
    assert doc["changes"][0]["aspects"] == ["content"]
    assert {w["path"] for w in doc["warnings"]} == {"/etc/secret"}
    assert all("unreadable" in w["message"] for w in doc["warnings"])
    assert len(doc["warnings"]) == 2  # once per side, though each file was tried twice


def test_diff_of_identical_trees_under_symlinked_path(tree_pair: TreePair, tmp_path: Path) -> None:
    old, new = tree_pair({"a": "1\n"})
    link = tmp_path / "old-link"
    link.symlink_to(old)
    delta = imgdiff.diff(str(link), str(new), use_cache=False)
    assert delta.changes == ()


def test_directory_swapped_for_a_symlink_after_listing_is_not_read_through(
    tmp_path: Path,
) -> None:
    root = write_tree(tmp_path / "root", {"etc/app/app.conf": "x\n"})
    outside = write_tree(tmp_path / "outside", {"secret": "host file\n"})

    def swap(path: str) -> bool:
        # called as the walk lists /etc/app, before it reads it: an attacker's rename
        if path == "/etc/app":
            os.rename(root / "etc/app", tmp_path / "moved")
            (root / "etc/app").symlink_to(outside)
        return False

    m = Manifest.read(DirImage(str(root), prune=swap), use_cache=False)
    assert "/etc/app/secret" not in m
    assert "/etc/app/app.conf" not in m
    assert any(w.path == "/etc/app" and "unreadable directory" in w.message for w in m.warnings)


def test_unreadable_directory_is_a_warning(public_dir: Path) -> None:
    tree = write_tree(public_dir / "tree", {"etc/private/key": "k\n", "etc/open": "x\n"})
    (tree / "etc/private").chmod(0o000)
    code = (
        "import json, sys; from imgdiff import Manifest; "
        "m = Manifest.read(sys.argv[1], use_cache=False); "
        "print(json.dumps([sorted(m.entries), [[w.path, w.message] for w in m.warnings]]))"
    )
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-c", code, str(tree)],
        capture_output=True,
        check=True,
        env={**os.environ, "HOME": "/nonexistent"},
    )  # fmt: skip
    paths, warnings = json.loads(proc.stdout)
    assert paths == ["/etc", "/etc/open", "/etc/private"]
    assert warnings == [["/etc/private", "unreadable directory: Permission denied"]]


def test_walk_records_what_lstat_says_of_every_kind_of_entry(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "root", {"f": "data\n", "caf\xe9": "x"})
    odd = os.fsencode(str(root)) + b"/bad\xffname"
    with open(odd, "wb") as fh:
        fh.write(b"bytes")
    os.link(root / "f", root / "f2")
    (root / "link").symlink_to("f")
    os.mkfifo(root / "fifo")
    os.mknod(root / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    sock.close()
    os.setxattr(root / "f", "user.note", b"v")
    m = Manifest.read(str(root), use_cache=False)
    for path, entry in m.entries.items():
        st = os.lstat(os.fsencode(str(root)) + os.fsencode(path))
        assert entry.mode == stat.S_IMODE(st.st_mode)
        assert (entry.uid, entry.gid, entry.mtime_ns) == (st.st_uid, st.st_gid, st.st_mtime_ns)
        assert entry.size == (st.st_size if stat.S_ISREG(st.st_mode) else 0)
    e = m.entries
    assert {p: e[p].type.value for p in e} == {
        "/f": "file", "/f2": "file", "/caf\xe9": "file", "/bad\udcffname": "file",
        "/link": "symlink", "/fifo": "fifo", "/null": "char", "/sock": "socket",
    }  # fmt: skip
    assert e["/f"].hardlink == e["/f2"].hardlink == "/f"
    assert e["/link"].target == "f"
    assert e["/null"].rdev == (1, 3)
    assert e["/f"].xattrs == (("user.note", b"v"),)
    assert e["/f2"].xattrs == (("user.note", b"v"),)  # the same inode
    assert e["/caf\xe9"].xattrs == ()


def _diff_as_nobody(old: Path, new: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
         "-m", "imgdiff", "diff", str(old), str(new), "--json", "--no-cache", "--exit-code"],
        capture_output=True,
        check=False,
        env={**os.environ, "HOME": "/nonexistent"},
    )  # fmt: skip


def test_a_directory_unreadable_on_both_sides_is_never_equal(public_dir: Path) -> None:
    """Its entries were not seen: reported modified, as an unreadable file is, never a
    silent "no differences"."""
    old = write_tree(public_dir / "old", {"etc/private/key": "1\n", "etc/open": "x\n"})
    new = write_tree(public_dir / "new", {"etc/private/key": "2\n", "etc/open": "x\n"})
    for tree in (old, new):
        (tree / "etc/private").chmod(0o000)
    proc = _diff_as_nobody(old, new)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert [(c["path"], c["status"], c["aspects"]) for c in doc["changes"]] == [
        ("/etc/private", "modified", ["content"])
    ]
    assert doc["stats"]["unchanged"] + doc["stats"]["mtime_only"] == 2  # /etc, /etc/open
    assert [w["path"] for w in doc["warnings"]] == ["/etc/private", "/etc/private"]


def test_an_unreadable_tree_root_is_bad_input(public_dir: Path) -> None:
    old = write_tree(public_dir / "old", {"a": "1\n"})
    new = write_tree(public_dir / "new", {"a": "1\n"})
    new.chmod(0o000)
    proc = _diff_as_nobody(old, new)
    assert proc.returncode == 3
    assert proc.stderr.decode().count("\n") == 1
    assert "unreadable directory" in proc.stderr.decode()

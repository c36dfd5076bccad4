"""Directory images on a live system: mounts, permissions, the digest cache on disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import imgdiff
from imgdiff import Manifest

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


def test_diff_of_identical_trees_under_symlinked_path(tree_pair: TreePair, tmp_path: Path) -> None:
    old, new = tree_pair({"a": "1\n"})
    link = tmp_path / "old-link"
    link.symlink_to(old)
    delta = imgdiff.diff(str(link), str(new), use_cache=False)
    assert delta.changes == ()

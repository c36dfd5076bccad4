"""The digest cache stays bounded: records of files gone from the tree, and cache files of
trees no longer used, are dropped."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imgdiff import Manifest, _digest
from imgdiff.archive.apply import tree_manifest
from imgdiff.cache import MAX_AGE_DAYS, DigestCache, default_dir
from imgdiff.image import DirImage
from tests.conftest import write_tree

FILES = {"etc/a.conf": "a = 1\n", "etc/b.conf": "b = 2\n", "usr/lib/x": "x" * 100}
DAY = 86400


@pytest.fixture(autouse=True)
def _cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # caches in tmp_path/imgdiff


def _hash_all(tree: Path, cache_dir: Path, prune: Callable[[str], bool] | None = None) -> Manifest:
    """Every file's digest through the tree's digest cache (in `cache_dir`)."""
    assert cache_dir == default_dir()
    m = Manifest.read(DirImage(str(tree), prune=prune))
    m.fill_digests(list(m.entries))
    return m


def _records(tree: Path, cache_dir: Path) -> int:
    return len(DigestCache(str(tree), cache_dir))


def test_a_whole_read_forgets_files_the_tree_no_longer_has(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "tree", FILES)
    cache = tmp_path / "imgdiff"
    first = _hash_all(tree, cache)
    assert (first.hashed_files, _records(tree, cache)) == (3, 3)
    (tree / "etc/b.conf").unlink()
    replaced = tree / "usr/lib/x.new"
    replaced.write_text("y" * 100)
    os.replace(replaced, tree / "usr/lib/x")  # a new inode: the old record is stale
    second = _hash_all(tree, cache)
    assert second.hashed_files == 1
    assert _records(tree, cache) == 2  # a.conf and the new x; b.conf and the old x gone
    third = _hash_all(tree, cache)
    assert third.hashed_files == 0
    assert third.digest("/usr/lib/x") == _digest.of_bytes(b"y" * 100)


def test_a_pruned_read_keeps_the_records_of_what_it_did_not_walk(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "tree", FILES)
    cache = tmp_path / "imgdiff"
    _hash_all(tree, cache)
    (tree / "etc/a.conf").write_text("a = 3\n")  # something to hash: the cache is written
    part = _hash_all(tree, cache, prune=lambda p: p == "/usr")
    assert "/usr/lib/x" not in part.entries
    assert part.hashed_files == 1
    # a.conf's new record added, its old one dropped when a whole read comes: x is kept
    whole = _hash_all(tree, cache)
    assert whole.hashed_files == 0
    assert _records(tree, cache) == 3


def test_apply_and_check_reads_count_as_whole_though_the_state_directory_is_pruned(
    tmp_path: Path,
) -> None:
    tree = write_tree(tmp_path / "tree", {**FILES, "var/lib/imgdiff/undo/0": "old bytes\n"})
    cache = tmp_path / "imgdiff"
    _hash_all(tree, cache)
    assert _records(tree, cache) == 4
    (tree / "etc/b.conf").unlink()
    (tree / "etc/a.conf").write_text("a = 3\n")
    m = tree_manifest(str(tree))
    m.fill_digests(list(m.entries))
    assert m.hashed_files == 1
    assert _records(tree, cache) == 2  # a.conf (new bytes) and x: nothing of the state kept


def test_cache_files_of_trees_unused_for_a_month_are_removed(tmp_path: Path) -> None:
    cache = tmp_path / "imgdiff"
    cache.mkdir()
    now = time.time()
    stale = cache / ("a" * 32 + ".digests")
    recent = cache / ("b" * 32 + ".digests")
    leftover = cache / ("c" * 32 + ".tmp123")  # a writer killed before its rename
    unrelated = cache / "notes.txt"
    for path, age in ((stale, MAX_AGE_DAYS + 1), (recent, MAX_AGE_DAYS - 1),
                      (leftover, 2), (unrelated, 400)):  # fmt: skip
        path.write_bytes(b"")
        os.utime(path, (now - age * DAY, now - age * DAY))
    tree = write_tree(tmp_path / "tree", FILES)
    _hash_all(tree, cache)
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == sorted(
        [recent.name, unrelated.name, DigestCache(str(tree), cache).file.name]
    )
    # the directory is looked at once a day at most
    stale.write_bytes(b"")
    os.utime(stale, (now - 40 * DAY, now - 40 * DAY))
    (tree / "etc/a.conf").write_text("a = 3\n")
    _hash_all(tree, cache)
    assert stale.exists()


def test_reading_a_cache_file_marks_its_tree_as_in_use(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "tree", FILES)
    cache = tmp_path / "imgdiff"
    _hash_all(tree, cache)
    file = DigestCache(str(tree), cache).file
    old = time.time() - 10 * DAY
    os.utime(file, (old, old))
    assert len(DigestCache(str(tree), cache)) == 3  # a warm read: nothing is written
    assert file.stat().st_mtime > old + 9 * DAY

"""The digest cache stays bounded: records of files gone from the tree, and cache files of
trees no longer used, are dropped. Its records are only of files whose filesystem can be
told from the next one mounted in its place, and settled: written back since last changed."""

from __future__ import annotations

import contextlib
import mmap
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import imgdiff
from imgdiff import Manifest, _digest
from imgdiff import cache as cache_module
from imgdiff.archive.apply import tree_manifest
from imgdiff.cache import MAX_AGE_DAYS, DigestCache, default_dir, settle_window_ns
from imgdiff.image import DirImage
from tests.conftest import write_tree

FILES = {"etc/a.conf": "a = 1\n", "etc/b.conf": "b = 2\n", "usr/lib/x": "x" * 100}
DAY = 86400


@pytest.fixture(autouse=True)
def _cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settled: None) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # caches in tmp_path/imgdiff


def _hash_all(tree: Path, cache_dir: Path, prune: Callable[[str], bool] | None = None) -> Manifest:
    """Every file's digest through the tree's digest cache (in `cache_dir`)."""
    assert cache_dir == default_dir()
    with DirImage(str(tree), prune=prune) as image:  # closed: its mount can be unmounted
        m = Manifest.read(image)
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


# what a reproducible image build pins: the filesystem's UUID and hash seed, and every time
PINNED_UUID = "5ee1c0de-0000-4000-8000-000000000001"
PINNED_TIME = "20231114221320"


def _pinned_ext4(tmp_path: Path, name: str, content: str) -> Path:
    """An ext4 image holding app.conf, every id and time in it as a reproducible build's."""
    src = write_tree(tmp_path / f"{name}-src", {"app.conf": content})
    img = tmp_path / f"{name}.ext4"
    subprocess.run(
        ["mke2fs", "-q", "-t", "ext4", "-U", PINNED_UUID, "-E", f"hash_seed={PINNED_UUID}",
         "-d", str(src), str(img), "4M"],
        check=True, env={**os.environ, "E2FSPROGS_FAKE_TIME": "1700000000"},
    )  # fmt: skip
    for field in ("mtime", "ctime", "atime", "crtime"):
        sif = f"sif app.conf {field} {PINNED_TIME}"
        subprocess.run(["debugfs", "-w", "-R", sif, str(img)], check=True, capture_output=True)
    return img


@contextlib.contextmanager
def _loop_mounted(img: Path, point: Path, loop: str | None = None) -> Iterator[str]:
    """`img` attached read-only to `loop` (default: a free loop device) and mounted at
    `point`; yields the loop device. Unmounted and detached however the body ends."""
    attach = ["losetup", "--read-only", *([loop] if loop else ["--find", "--show"]), str(img)]
    found = subprocess.run(attach, check=True, capture_output=True, text=True).stdout.strip()
    device = loop or found
    try:
        subprocess.run(["mount", "-o", "ro", device, str(point)], check=True)
        try:
            yield device
        finally:
            _unmount(point)
    finally:
        subprocess.run(["losetup", "--detach", device], check=True)  # or when last closed


def _unmount(point: Path) -> None:
    """Unmount `point`; lazily if something still holds it open (a failed test's file)."""
    if subprocess.run(["umount", str(point)], check=False).returncode:
        subprocess.run(["umount", "--lazy", str(point)], check=True)


def _stat_key(path: Path) -> tuple[int, int, int, int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@pytest.mark.parametrize("below", ["", "data"], ids=["at-the-root", "below-the-root"])
def test_an_image_mounted_where_another_was_is_not_taken_for_it(tmp_path: Path, below: str) -> None:
    """Two reproducible builds, one after the other on the same loop device and mount
    point: every stat field of their app.conf is alike, only the bytes differ."""
    v1, v2 = (_pinned_ext4(tmp_path, f"v{n}", f"version={n}\n") for n in (1, 2))
    conf = f"/{below}/app.conf" if below else "/app.conf"
    old = write_tree(tmp_path / "old", {conf.lstrip("/"): "version=1\n"})
    point = tmp_path / "new" / below
    point.mkdir(parents=True)

    def changed() -> list[str]:
        with DirImage(str(old)) as a, DirImage(str(tmp_path / "new")) as b:
            delta = imgdiff.compare(Manifest.read(a), Manifest.read(b))
        return [c.path for c in delta.changes if c.path == conf]

    with _loop_mounted(v1, point) as loop:
        seen = _stat_key(point / "app.conf")
        assert changed() == []
    with _loop_mounted(v2, point, loop):
        assert _stat_key(point / "app.conf") == seen
        assert changed() == [conf]


def test_files_on_a_filesystem_without_a_disk_are_not_cached(tmp_path: Path) -> None:
    """tmpfs: a new instance mounted in place of the last reuses its device number."""
    point = tmp_path / "tmpfs"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(point)], check=True)
    try:
        tree = write_tree(point / "tree", FILES)
        first = _hash_all(tree, tmp_path / "imgdiff")
        again = _hash_all(tree, tmp_path / "imgdiff")
    finally:
        _unmount(point)
    assert (first.hashed_files, again.hashed_files) == (3, 3)


def _changed(old: Path, new: Path) -> list[str]:
    with DirImage(str(old)) as a, DirImage(str(new)) as b:
        return [c.path for c in imgdiff.compare(Manifest.read(a), Manifest.read(b)).changes]


def test_a_file_written_through_a_shared_mapping_is_not_cached_while_pages_may_be_dirty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel moves mtime and ctime at a mapping's first write to a clean page, not at
    the next ones to the same page until it is written back (30 s and more by default)."""
    monkeypatch.setattr(cache_module, "SETTLE_NS", None)  # the kernel's window, not 0
    old = write_tree(tmp_path / "old", {"f": "XAAAAAAA"})
    new = write_tree(tmp_path / "new", {"f": "AAAAAAAA"})
    fd = os.open(new / "f", os.O_RDWR)
    try:
        with mmap.mmap(fd, 8) as mapped:
            mapped[0:1] = b"X"
            assert _changed(old, new) == []  # both hashed, alike
            seen = _stat_key(new / "f")
            mapped[1:2] = b"Y"  # the page is still dirty: no time moves
            assert _stat_key(new / "f") == seen
            assert _changed(old, new) == ["/f"]
    finally:
        os.close(fd)


def test_a_file_changed_before_the_writeback_window_is_cached(tmp_path: Path) -> None:
    """The kernel's window (not the tests' 0): a file of an image whose times were pinned
    years ago is hashed once; the files just written, every time."""
    tree = write_tree(tmp_path / "tree", FILES)
    point = tree / "image"
    point.mkdir()
    with _loop_mounted(_pinned_ext4(tmp_path, "v1", "version=1\n"), point):
        cache = tmp_path / "imgdiff"
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(cache_module, "SETTLE_NS", None)
            counts = [_hash_all(tree, cache).hashed_files for _ in range(2)]
        assert counts == [4, 3]


def test_the_writeback_window_is_the_kernels_expiry_and_flusher_period_at_least_30_s(
    tmp_path: Path,
) -> None:
    vm = tmp_path / "vm"
    vm.mkdir()
    assert settle_window_ns(str(vm)) == 30 * 10**9  # unreadable: the floor
    (vm / "dirty_expire_centisecs").write_text("6000\n")
    (vm / "dirty_writeback_centisecs").write_text("500\n")
    assert settle_window_ns(str(vm)) == 65 * 10**9
    (vm / "dirty_expire_centisecs").write_text("100\n")
    assert settle_window_ns(str(vm)) == 30 * 10**9
    assert settle_window_ns() >= 30 * 10**9

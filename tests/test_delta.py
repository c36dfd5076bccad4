"""Delta semantics on real directory trees: statuses, aspects, mtime-only, exactness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import imgdiff
from imgdiff import Aspect, Manifest, Status, _digest
from imgdiff.cache import DigestCache
from imgdiff.report.json import delta_doc, dumps

from .conftest import TreePair, write_tree

BASE = {
    "usr/lib/python3.11/wsgiref/__init__.py": "# wsgiref\n",
    "usr/lib/python3.11/wsgiref/util.py": "def f():\n    return 1\n",
    "etc/app.conf": "workers = 4\n",
    "usr/share/doc/app/README": "hello\n",
}


def changes_by_path(delta: imgdiff.Delta) -> dict[str, imgdiff.Change]:
    return {c.path: c for c in delta.changes}


def test_same_size_content_change_is_found_by_digest(tree_pair: TreePair) -> None:
    old, new = tree_pair(BASE)
    p = new / "etc/app.conf"
    st = p.stat()
    p.write_text("workers = 8\n")  # same length as before
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    delta = imgdiff.diff(str(old), str(new), use_cache=False)
    (change,) = delta.changes
    assert change.path == "/etc/app.conf"
    assert change.status is Status.MODIFIED
    assert change.aspects == (Aspect.CONTENT,)
    assert change.old is not None
    assert change.new is not None
    assert change.old.digest != change.new.digest


def test_mtime_only_is_counted_not_reported(tree_pair: TreePair) -> None:
    old, new = tree_pair(BASE)
    os.utime(new / "usr/lib/python3.11/wsgiref/util.py", ns=(0, 1_000_000_000))
    delta = imgdiff.diff(str(old), str(new), use_cache=False)
    assert delta.changes == ()
    assert delta.stats.mtime_only >= 1


def test_added_removed_and_metadata_aspects(tree_pair: TreePair) -> None:
    old, new = tree_pair(BASE)
    (new / "usr/share/doc/app/README").unlink()
    (new / "etc/new.conf").write_text("x\n")
    os.chmod(new / "etc/app.conf", 0o600)
    os.chown(new / "usr/lib/python3.11/wsgiref/util.py", 1234, 5678)
    os.setxattr(new / "usr/lib/python3.11/wsgiref/__init__.py", "user.mark", b"1")
    by_path = changes_by_path(imgdiff.diff(str(old), str(new), use_cache=False))
    assert by_path["/usr/share/doc/app/README"].status is Status.REMOVED
    assert by_path["/etc/new.conf"].status is Status.ADDED
    assert by_path["/etc/app.conf"].aspects == (Aspect.MODE,)
    assert by_path["/usr/lib/python3.11/wsgiref/util.py"].aspects == (Aspect.OWNER,)
    assert by_path["/usr/lib/python3.11/wsgiref/__init__.py"].aspects == (Aspect.XATTRS,)


def test_symlink_retarget_and_type_change(tree_pair: TreePair) -> None:
    old, new = tree_pair(BASE)
    os.symlink("app.conf", old / "etc/link")
    os.symlink("other.conf", new / "etc/link")
    (old / "etc/thing").write_text("a file\n")
    (new / "etc/thing").mkdir()
    by_path = changes_by_path(imgdiff.diff(str(old), str(new), use_cache=False))
    assert by_path["/etc/link"].aspects == (Aspect.TARGET,)
    assert Aspect.TYPE in by_path["/etc/thing"].aspects


def test_security_capability_change_is_an_xattr_change(tree_pair: TreePair) -> None:
    old, new = tree_pair({"usr/bin/ping": b"\x7fELF fake"})
    cap = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_raw+p
    os.setxattr(new / "usr/bin/ping", "security.capability", cap)
    (change,) = imgdiff.diff(str(old), str(new), use_cache=False).changes
    assert change.aspects == (Aspect.XATTRS,)
    assert change.new is not None
    assert ("security.capability", cap) in change.new.xattrs


def test_stats_share_and_by_top(tree_pair: TreePair) -> None:
    old, new = tree_pair(BASE)
    (new / "etc/app.conf").write_text("workers = 16\n")
    delta = imgdiff.diff(str(old), str(new), use_cache=False)
    s = delta.stats
    assert (s.added, s.removed, s.modified) == (0, 0, 1)
    assert s.share_files == pytest.approx(1 / 4)
    assert s.by_top == {"/etc": {"modified": 1}}
    assert s.modified_bytes == len("workers = 16\n")


def test_hardlinks_form_one_group_and_are_not_changes(tree_pair: TreePair) -> None:
    old, new = tree_pair(BASE)
    os.link(old / "etc/app.conf", old / "etc/app.conf.bak")
    (new / "etc/app.conf.bak").write_bytes((new / "etc/app.conf").read_bytes())
    os.utime(new / "etc/app.conf.bak", ns=(0, (old / "etc/app.conf.bak").stat().st_mtime_ns))
    om = Manifest.read(str(old), use_cache=False)
    assert om["/etc/app.conf"].hardlink == om["/etc/app.conf.bak"].hardlink == "/etc/app.conf"
    assert imgdiff.diff(str(old), str(new), use_cache=False).changes == ()


def test_non_utf8_name_round_trips_through_json(tree_pair: TreePair) -> None:
    old, new = tree_pair(BASE)
    raw = os.path.join(os.fsencode(new / "etc"), b"caf\xe9.conf")
    with open(raw, "wb") as fh:
        fh.write(b"x")
    delta = imgdiff.diff(str(old), str(new), use_cache=False)
    doc = json.loads(dumps(delta_doc(delta)))
    (change,) = doc["changes"]
    assert os.fsencode(change["path"]) == b"/etc/caf\xe9.conf"
    assert "\\udce9" in dumps(delta_doc(delta))


def test_fifo_and_device_are_recorded_never_opened(tree_pair: TreePair) -> None:
    old, new = tree_pair(BASE)
    os.mkfifo(new / "etc/fifo")  # opening it for reading would block forever
    os.mknod(new / "etc/null", 0o666 | 0o020000, os.makedev(1, 3))
    by_path = changes_by_path(imgdiff.diff(str(old), str(new), use_cache=False))
    assert by_path["/etc/fifo"].entry.type.value == "fifo"
    assert by_path["/etc/null"].entry.rdev == (1, 3)


def test_symlink_loops_and_escapes_are_not_followed(tree_pair: TreePair, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret\n")
    old, new = tree_pair(BASE)
    os.symlink("loop", new / "etc/loop")
    os.symlink(str(outside), new / "etc/escape")
    os.symlink("../../../../outside.txt", new / "etc/escape-rel")
    by_path = changes_by_path(imgdiff.diff(str(old), str(new), use_cache=False))
    assert by_path["/etc/escape"].entry.target == str(outside)
    assert by_path["/etc/escape"].entry.digest is None
    assert by_path["/etc/loop"].entry.type.value == "symlink"


def test_file_replaced_during_scan_is_reported_modified_with_warning(tree_pair: TreePair) -> None:
    old, new = tree_pair(BASE)
    om = Manifest.read(str(old), use_cache=False)
    nm = Manifest.read(str(new), use_cache=False)
    p = new / "etc/app.conf"
    tmp = new / "etc/.app.conf.new"
    tmp.write_bytes(p.read_bytes())  # same content, but a new inode: like dpkg's rename
    os.replace(tmp, p)
    delta = imgdiff.compare(om, nm)
    (change,) = delta.changes
    assert change.aspects == (Aspect.CONTENT,)
    assert any("replaced while" in w.message for w in delta.warnings)


@pytest.mark.usefixtures("settled")
def test_digest_cache_makes_second_diff_read_no_content(
    tree_pair: TreePair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    old, new = tree_pair(BASE)
    first = [Manifest.read(str(old)), Manifest.read(str(new))]
    imgdiff.compare(*first)
    assert sum(m.hashed_files for m in first) == 8
    again = [Manifest.read(str(old)), Manifest.read(str(new))]
    imgdiff.compare(*again)
    assert sum(m.hashed_files for m in again) == 0
    # rewriting a file (same size, mtime restored) changes ctime: the cache must miss
    p = new / "etc/app.conf"
    st = p.stat()
    p.write_text("workers = 9\n")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    third = [Manifest.read(str(old)), Manifest.read(str(new))]
    (change,) = imgdiff.compare(*third).changes
    assert change.path == "/etc/app.conf"
    assert third[1].hashed_files == 1


def test_saved_manifest_diffs_like_the_tree(tree_pair: TreePair, tmp_path: Path) -> None:
    old, new = tree_pair(BASE)
    (new / "etc/app.conf").write_text("workers = 8\n")
    saved = tmp_path / "old.manifest"
    Manifest.read(str(old), use_cache=False).save(saved)
    loaded = Manifest.load(saved)
    assert loaded.identity == Manifest.read(str(old), use_cache=False).identity
    direct = imgdiff.diff(str(old), str(new), use_cache=False)
    via_manifest = imgdiff.diff(str(saved), str(new), use_cache=False)
    assert [c.path for c in via_manifest.changes] == [c.path for c in direct.changes]


def test_identical_trees_built_twice_have_equal_identity(tree_pair: TreePair) -> None:
    old, new = tree_pair(BASE)
    assert (
        Manifest.read(str(old), use_cache=False).identity
        == Manifest.read(str(new), use_cache=False).identity
    )
    subprocess.run(["chmod", "g+w", str(new / "etc/app.conf")], check=True)
    assert (
        Manifest.read(str(old), use_cache=False).identity
        != Manifest.read(str(new), use_cache=False).identity
    )


def test_saved_manifest_keeps_content_kinds(tree_pair: TreePair, tmp_path: Path) -> None:
    elf = Path("/bin/true").read_bytes()
    old, new = tree_pair({"usr/bin/tool": elf})
    (new / "usr/bin/tool").write_bytes(elf + b"\0")
    saved_old, saved_new = tmp_path / "o.manifest", tmp_path / "n.manifest"
    Manifest.read(str(old), use_cache=False).save(saved_old)
    Manifest.read(str(new), use_cache=False).save(saved_new)
    (change,) = imgdiff.diff(str(saved_old), str(saved_new)).changes
    assert change.kind == "elf-executable"


def test_malformed_elf_is_unparseable_with_a_warning(tree_pair: TreePair) -> None:
    elf = bytearray(Path("/bin/true").read_bytes())
    old, new = tree_pair({"usr/bin/tool": bytes(elf)})
    elf[0x38:0x3A] = (0xFFFF).to_bytes(2, "little")  # e_phnum: far more headers than exist
    (new / "usr/bin/tool").write_bytes(bytes(elf))
    delta = imgdiff.diff(str(old), str(new), use_cache=False)
    (change,) = delta.changes
    assert change.kind == "elf-unparseable"
    assert [w.path for w in delta.warnings] == ["/usr/bin/tool"]


# past a signed 64-bit count of nanoseconds (the year 2262); ext4 stores up to 2446
FAR_FUTURE_NS = 2**63 + 5


def _set_far_future_mtime(path: Path) -> int:
    """Give `path` an mtime past int64 nanoseconds; the mtime the filesystem kept."""
    for ns in (FAR_FUTURE_NS, 32_503_680_000 * 10**9):  # the latter: the year 3000
        os.utime(path, ns=(path.stat().st_atime_ns, ns))
        kept = path.stat().st_mtime_ns
        if kept >= 2**63:
            return kept
    pytest.skip("this filesystem clamps mtimes below 2**63 ns")


@pytest.mark.usefixtures("settled")
def test_far_future_mtime_is_hashed_but_not_cached(
    tree_pair: TreePair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    old, new = tree_pair(BASE)
    _set_far_future_mtime(new / "etc/app.conf")
    (new / "usr/share/doc/app/README").write_text("hello, world\n")
    delta = imgdiff.diff(str(old), str(new))  # crashed: struct.error saving the cache
    assert [c.path for c in delta.changes] == ["/usr/share/doc/app/README"]
    first = Manifest.read(str(new))
    first.fill_digests(first.entries)
    again = Manifest.read(str(new))
    again.fill_digests(again.entries)
    assert again.digest("/etc/app.conf") == _digest.of_bytes(b"workers = 4\n")
    # the cache was written and read back: only the file that does not fit is hashed every
    # time (and README once more, first: the diff never hashed it, its size differs)
    assert (first.hashed_files, again.hashed_files) == (2, 1)
    assert again.entries["/etc/app.conf"].mtime_ns >= 2**63


def test_digest_cache_skips_values_outside_its_record(tmp_path: Path) -> None:
    digest = _digest.of_bytes(b"x")
    cache = DigestCache(str(tmp_path), tmp_path / "cache")
    dev = tmp_path.stat().st_dev  # a device on a disk: its files are cached
    unfit = [
        (dev, 2, 3, 2**63, 0),  # mtime after 2262
        (dev, 3, 3, -(2**63) - 1, 0),  # mtime before 1678
        (dev, 4, 3, 0, 2**64),  # ctime
        (dev, 5, 2**64, 0, 0),  # size
        (2**64, 6, 3, 0, 0),  # dev
        (dev, -1, 3, 0, 0),  # ino
    ]
    for key in unfit:
        cache.put(*key, digest, read_after_ns=None)
    cache.put(
        dev, 7, 3, -(2**63), 2**63 - 1, digest, read_after_ns=None
    )  # the extremes that do fit
    cache.save()
    reloaded = DigestCache(str(tmp_path), tmp_path / "cache")
    assert [reloaded.get(*key) for key in unfit] == [None] * len(unfit)
    assert reloaded.get(dev, 7, 3, -(2**63), 2**63 - 1) == digest


def test_manifest_command_on_a_far_future_file_exits_0(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "tree", BASE)
    kept = _set_far_future_mtime(tree / "etc/app.conf")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = tmp_path / "tree.manifest"
    imgdiff_cmd = str(Path(sys.executable).with_name("imgdiff"))
    done = subprocess.run(
        [imgdiff_cmd, "manifest", str(tree), "-o", str(out)],
        env=env,
        capture_output=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, b"")
    assert Manifest.load(out).entries["/etc/app.conf"].mtime_ns == kept
    done = subprocess.run(
        [imgdiff_cmd, "diff", str(out), str(tree), "--json"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0


def test_a_symlink_mode_is_never_compared_even_across_a_type_change(tmp_path: Path) -> None:
    old = write_tree(tmp_path / "old", {"f644": "x\n", "f777": "x\n"})
    (old / "f777").chmod(0o777)
    (old / "d").mkdir(mode=0o755)
    new = tmp_path / "new"
    new.mkdir()
    for name in ("f644", "f777", "d"):
        (new / name).symlink_to("t")
    delta = imgdiff.diff(str(old), str(new), use_cache=False)
    assert {c.path: c.aspects for c in delta.changes} == {
        "/d": (Aspect.TYPE,), "/f644": (Aspect.TYPE,), "/f777": (Aspect.TYPE,),
    }  # fmt: skip


def test_the_pipeline_leaves_no_descriptor_of_the_images_it_read_open(
    tree_pair: TreePair,
) -> None:
    """A directory image holds its root open while read: left open, a library caller
    leaked two descriptors a diff and could not unmount a mounted image until exit."""
    old, new = tree_pair(BASE)
    (new / "etc/app.conf").write_text("workers = 8\n")

    def open_fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    before = open_fds()
    imgdiff.diff(str(old), str(new), use_cache=False, owners=True)
    imgdiff.package_diff(str(old), str(new), use_cache=False)
    assert open_fds() <= before
    with Manifest.read(str(old), use_cache=False) as m:
        m.fill_digests(list(m.entries))
        assert open_fds() > before  # the root, for the digests
    assert open_fds() <= before
    assert m.digest("/etc/app.conf") == _digest.of_bytes(b"workers = 4\n")  # opened again


def _many_added(tmp_path: Path, n: int) -> tuple[Manifest, Manifest]:
    """An empty tree and a tar of `n` empty members (made with Python's tarfile)."""
    import tarfile

    archive = tmp_path / "many.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tf:
        for i in range(n):
            tf.addfile(tarfile.TarInfo(f"usr/share/many/d{i // 1000:02d}/f{i % 1000:03d}"))
    (tmp_path / "empty").mkdir()
    return Manifest.read(str(tmp_path / "empty")), Manifest.read(str(archive))


def test_classifying_a_large_delta_never_holds_two_changes_of_a_path(tmp_path: Path) -> None:
    import tracemalloc

    from imgdiff.delta import classifier, compare

    old, new = _many_added(tmp_path, 20_000)
    tracemalloc.start()
    try:
        delta = compare(old, new, classify=classifier(old, new))
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(delta.changes) == 20_000 + 20 + 3
    assert peak < 1.5 * held  # a second list of changes, classified, would double it


def test_naming_no_owners_keeps_each_change(tmp_path: Path) -> None:
    from imgdiff.delta import compare
    from imgdiff.packages.view import PackageView, annotate

    old, new = _many_added(tmp_path, 100)
    delta = compare(old, new)
    named = annotate(delta, PackageView(()), PackageView(()))
    assert named.owners
    assert all(a is b for a, b in zip(named.changes, delta.changes, strict=True))

"""Same-size files compared byte for byte agree with comparing their digests."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

import imgdiff
from imgdiff import Aspect, Manifest, _digest
from imgdiff.report.json import delta_doc, dumps

from .conftest import TreePair

BIG = 9 << 20  # past the size read in one call: compared a chunk at a time


def _same_mtime(path: Path, data: bytes) -> None:
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture
def pair(tree_pair: TreePair) -> tuple[Path, Path]:
    big = bytes(range(256)) * (BIG // 256)
    old, new = tree_pair({
        "etc/first-byte": b"a" * 100,
        "etc/last-byte": b"b" * 100,
        "etc/same": b"same\n",
        "etc/empty": b"",
        "etc/mode-only": b"unchanged bytes\n",
        "usr/lib/big-differs-at-end": big,
        "usr/lib/big-differs-early": big,
        "usr/lib/big-same": big,
        "usr/lib/grown": b"12345",
    })  # fmt: skip
    _same_mtime(new / "etc/first-byte", b"z" + b"a" * 99)
    _same_mtime(new / "etc/last-byte", b"b" * 99 + b"z")
    (new / "etc/mode-only").chmod(0o600)
    _same_mtime(new / "usr/lib/big-differs-at-end", big[:-1] + b"\x00")
    _same_mtime(new / "usr/lib/big-differs-early", b"\xff" + big[1:])
    os.link(new / "usr/lib/big-same", new / "usr/lib/big-same-link")
    return old, new


def test_byte_comparison_reports_what_digests_report(
    pair: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = pair
    in_place = [Manifest.read(str(old), use_cache=False), Manifest.read(str(new), use_cache=False)]
    assert all(m.reads_in_place for m in in_place)
    by_bytes = imgdiff.compare(*in_place)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    hashed = [Manifest.read(str(old)), Manifest.read(str(new))]
    assert not any(m.reads_in_place for m in hashed)
    by_digest = imgdiff.compare(*hashed)
    assert dumps(delta_doc(by_bytes)) == dumps(delta_doc(by_digest))
    changed = {c.path: c for c in by_bytes.changes}
    assert set(changed) == {
        "/etc/first-byte", "/etc/last-byte", "/etc/mode-only", "/usr/lib/big-differs-at-end",
        "/usr/lib/big-differs-early", "/usr/lib/big-same-link",
    }  # fmt: skip
    assert changed["/etc/mode-only"].aspects == (Aspect.MODE,)
    for c in changed.values():  # both sides' digests are shown, as hashing shows them
        if c.old is not None and c.new is not None:
            assert c.old.digest == _digest.of_bytes((old / c.path[1:]).read_bytes())
            assert c.new.digest == _digest.of_bytes((new / c.path[1:]).read_bytes())
    # the 9 same-size pairs were read once on each side, and the pair reported for its
    # mode alone (same bytes) once more for the digests shown; the differing ones were
    # hashed from the bytes compared
    assert [m.hashed_files for m in in_place] == [10, 10]


def test_file_grown_after_the_walk_is_never_equal(pair: tuple[Path, Path]) -> None:
    old, new = pair
    om, nm = Manifest.read(str(old), use_cache=False), Manifest.read(str(new), use_cache=False)
    with open(new / "usr/lib/grown", "ab") as fh:
        fh.write(b"6")  # the walk saw 5 bytes, as in OLD
    delta = imgdiff.compare(om, nm)
    change = next(c for c in delta.changes if c.path == "/usr/lib/grown")
    assert change.aspects == (Aspect.CONTENT,)
    assert any(w.path == "/usr/lib/grown" and "size changed" in w.message for w in delta.warnings)


def test_file_replaced_after_the_walk_is_never_read(pair: tuple[Path, Path]) -> None:
    old, new = pair
    om, nm = Manifest.read(str(old), use_cache=False), Manifest.read(str(new), use_cache=False)
    target = new / "etc/same"
    os.rename(target, new / "etc/same.old")
    target.write_bytes(b"same\n")  # the same bytes in another inode
    delta = imgdiff.compare(om, nm)
    change = next(c for c in delta.changes if c.path == "/etc/same")
    assert change.aspects == (Aspect.CONTENT,)
    assert any(w.path == "/etc/same" and "replaced while" in w.message for w in delta.warnings)


def test_file_hard_linked_into_both_trees_is_equal_without_reading(tmp_path: Path) -> None:
    old = tmp_path / "old"
    (old / "usr/lib").mkdir(parents=True)
    (old / "usr/lib/shared.so").write_bytes(b"\x7fELF shared bytes")
    (old / "usr/lib/changed.so").write_bytes(b"\x7fELF old bytes...")
    new = tmp_path / "new"
    subprocess.run(["cp", "-al", str(old), str(new)], check=True)  # as a checkout does
    (new / "usr/lib/changed.so").unlink()
    (new / "usr/lib/changed.so").write_bytes(b"\x7fELF new bytes...")
    om, nm = Manifest.read(str(old), use_cache=False), Manifest.read(str(new), use_cache=False)
    delta = imgdiff.compare(om, nm)
    assert [c.path for c in delta.changes if Aspect.CONTENT in c.aspects] == ["/usr/lib/changed.so"]
    assert [m.hashed_files for m in (om, nm)] == [1, 1]  # the shared inode was not read
    # a shared inode changed between the two walks (its ctime moved) is read as usual
    om = Manifest.read(str(old), use_cache=False)
    shared = old / "usr/lib/shared.so"
    st = shared.stat()
    while shared.stat().st_ctime_ns == st.st_ctime_ns:  # inode times tick coarsely
        time.sleep(0.005)
        os.utime(shared, ns=(st.st_atime_ns, st.st_mtime_ns))  # the ctime alone moves
    nm = Manifest.read(str(new), use_cache=False)
    imgdiff.compare(om, nm)
    assert [m.hashed_files for m in (om, nm)] == [2, 2]

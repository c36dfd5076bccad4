"""`fork_map`: results come back from forked children whole, loaded from the pipe as they
arrive; a child that fails has its slice redone in the parent."""

from __future__ import annotations

import os

import pytest

from imgdiff._entrytable import EntryTable
from imgdiff._parallel import MIN_ITEMS, fork_map
from imgdiff.model import Entry, EntryType

from .procs import children


def test_results_larger_than_a_pipe_come_back_from_children() -> None:
    parent = os.getpid()

    def make(n: int) -> tuple[bool, bytes]:
        return os.getpid() != parent, bytes([n]) * (3 << 20)  # many times a pipe's buffer

    out = fork_map(make, [1, 2, 3], size=MIN_ITEMS)
    assert [data for _, data in out] == [bytes([n]) * (3 << 20) for n in (1, 2, 3)]
    assert [forked for forked, _ in out] == [False, True, True]


def test_a_compact_table_comes_back_from_a_child_equal() -> None:
    def table(n: int) -> EntryTable:
        entries = {f"/d/f{i:05d}": Entry(f"/d/f{i:05d}", EntryType.FILE, size=i) for i in range(n)}
        entries["/d/link"] = Entry("/d/link", EntryType.SYMLINK, 0o777, target="f00001")
        return EntryTable.from_mapping(entries)

    here, there = fork_map(table, [10, 20_000], size=MIN_ITEMS)
    assert dict(there.items()) == dict(table(20_000).items())
    assert len(here) == 11


def test_a_failing_child_has_its_slice_redone_here() -> None:
    parent = os.getpid()

    def double(n: int) -> int:
        if os.getpid() != parent:
            raise RuntimeError("only the parent can do this")
        return 2 * n

    assert fork_map(double, [1, 2, 3], size=MIN_ITEMS) == [2, 4, 6]


def test_an_error_here_leaves_no_child_behind() -> None:
    # the children write more than a pipe holds: unread, they would block for ever
    before = children()
    parent = os.getpid()

    def work(n: int) -> bytes:
        if os.getpid() == parent:
            raise ValueError("bad first slice")
        return bytes(3 << 20)

    with pytest.raises(ValueError, match="bad first slice"):
        fork_map(work, [1, 2, 3], size=MIN_ITEMS)
    assert children() == before


def test_an_error_redoing_a_failed_slice_leaves_no_child_behind() -> None:
    before = children()

    def work(n: int) -> bytes:
        if n == 2:  # fails in its child, and again when redone here
            raise ValueError("slice 2 is bad")
        return bytes(3 << 20)  # slice 3's child writes more than a pipe holds

    with pytest.raises(ValueError, match="slice 2 is bad"):
        fork_map(work, [1, 2, 3], size=MIN_ITEMS)
    assert children() == before

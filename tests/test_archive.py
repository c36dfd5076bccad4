"""Delta archives end to end: `pack`, `apply` and `rollback` on real trees.

Every tree an apply or a rollback leaves is checked against the image it should be
without trusting imgdiff: `rsync -anicX --delete --numeric-ids` (nothing to transfer but,
after an apply, the root's own mtime, which no entry carries), `diff -r`, an lstat
listing with blake3 digests, xattrs, hard-link groups and every mtime
(`archive_fixtures.listing`), and `imgdiff.verify` as the fourth opinion.

A hostile delta must be refused before the tree is touched: the listing of the tree is
the same before and after (the state directory aside), and the error is `BadInput`.

A case the code gets wrong is marked ``xfail(strict=True, reason="archive: ...")`` until
it is fixed (strict: once fixed it fails as XPASS, so the mark goes with the fix).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import blake3
import pytest

from imgdiff import _digest, diff
from imgdiff.archive import pack as packing
from imgdiff.archive.apply import NotTheBase, apply, apply_chain, rollback
from imgdiff.archive.format import Record, canonical
from imgdiff.archive.pack import pack
from imgdiff.check import check
from imgdiff.errors import BadInput, ImgdiffError
from imgdiff.model import Aspect, Entry, EntryType
from imgdiff.verify import verify

from .archive_fixtures import (
    KINDS,
    LIB,
    ROOT_TIME,
    STATE,
    Crash,
    Listing,
    Parts,
    bomb,
    build_old,
    change,
    clone,
    crash_at,
    diff_r,
    join_delta,
    lib_bytes,
    listing,
    listing_diff,
    many_files_pair,
    meddle_at,
    parts,
    reaped,
    rewrite,
    rsync_lines,
    split_delta,
    spread,
    wait_for,
    zstd_record,
)
from .conftest import gnu_tar
from .tarzoo import MiB, measure

pytestmark = pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")

CORPUS = Path("/var/tmp/imgdiff-corpus")
MTIME = 1_600_000_000_000_000_000

# kinds of change (`archive_fixtures.KINDS`) apply gets wrong today, and how (none now:
# the hard-link group cases were fixed with `format.keeps_file`)
KNOWN_BUGS: dict[str, str] = {}
WORKING = [k for k in KINDS if k not in KNOWN_BUGS]


@pytest.fixture(autouse=True)
def _digest_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Digest caches of the many throwaway trees go with the test's directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


# -- checks -----------------------------------------------------------------------------


def assert_tree_is(want: Path, tree: Path, *, root_mtime: bool) -> list[str]:
    """TREE is WANT for rsync, diff -r, the lstat listing and imgdiff.verify; returns
    rsync's lines. Without `root_mtime` the root's own mtime may differ (after an apply:
    the root has no entry in a manifest, so nothing says what its mtime should be)."""
    lines = rsync_lines(want, tree)
    allowed = set() if root_mtime else {ROOT_TIME}
    assert [ln for ln in lines if ln not in allowed] == [], f"rsync would change {tree}"
    assert diff_r(want, tree) == []
    skip: tuple[str, ...] = () if root_mtime else ("/",)
    assert listing_diff(listing(want), listing(tree), ignore_mtime=skip) == []
    checked = verify(str(tree), str(want), ignore=(STATE + "/",))
    assert checked.matches, [f"{c.path} {c.status.value}" for c in checked.differences]
    return lines


def assert_untouched(before: Listing, tree: Path) -> None:
    """The tree is as listed before, the state directory aside (and its parent's mtime,
    which creating the state directory changes: `test_refused_apply_...` has that)."""
    assert listing_diff(before, listing(tree), ignore_mtime=("/var/lib",)) == []


def round_trip(old: Path, new: Path, delta: Path, tree: Path) -> list[str]:
    """apply then rollback on TREE (a copy of OLD), each result checked; returns rsync's
    lines after the apply."""
    result = apply(delta=str(delta), tree=str(tree))
    assert not result.resumed
    lines = assert_tree_is(new, tree, root_mtime=False)
    rollback(tree=str(tree), delta=str(delta))
    assert_tree_is(old, tree, root_mtime=True)
    return lines


def records_of(delta: Path) -> dict[str, Record]:
    return {r.path: r for r, _ in parts(delta).records}


# -- 1. round trips ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[k]))
        if k in KNOWN_BUGS
        else k
        for k in KINDS
    ],
)
def test_round_trip_of_each_kind_of_change_is_exact_and_rollback_gives_old_back(
    tmp_path: Path, kind: str
) -> None:
    old = tmp_path / "old"
    tree = build_old(old)
    new = clone(old, tmp_path / "new")
    change(new, tree, [kind])
    delta = tmp_path / "d.delta"
    pack(str(old), str(new), delta)
    round_trip(old, new, delta, clone(old, tmp_path / "tree"))


def _every_kind(tmp_path: Path, kinds: list[str]) -> tuple[Path, Path, Path]:
    old = tmp_path / "old"
    tree = build_old(old)
    assert not tree.missing, tree.missing  # as root on ext4/tmpfs every feature is built
    new = clone(old, tmp_path / "new")
    change(new, tree, kinds)
    os.utime(new, ns=(MTIME + 1, MTIME + 1))  # NEW's root: neither OLD's nor "now"
    delta = tmp_path / "d.delta"
    pack(str(old), str(new), delta)
    return old, new, delta


def test_round_trip_with_every_kind_of_change_at_once(tmp_path: Path) -> None:
    old, new, delta = _every_kind(tmp_path, list(KINDS))
    round_trip(old, new, delta, clone(old, tmp_path / "tree"))


def test_round_trip_with_every_working_kind_of_change_at_once(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    old, new, delta = _every_kind(tmp_path, WORKING)
    records = records_of(delta)
    # the 1 MiB library with 16 bytes changed travels as a patch of a few hundred bytes
    assert records["/" + LIB].encoding in ("patch", "hdiff")
    assert records["/" + LIB].size < 2000
    # a renamed file costs nothing: a copy of OLD's file (for its hard-link group's
    # leader, as "link-joined" gives it a second name)
    moved = parts(delta).new["/usr/libexec-moved"].hardlink or "/usr/libexec-moved"
    assert records[moved] == Record(moved, "copy", "/usr/bin/mover", 0)
    assert parts(delta).new["/srv/new-fifo"].type is EntryType.FIFO
    lines = round_trip(old, new, delta, clone(old, tmp_path / "tree"))
    # the root has no entry in a manifest: nothing sets NEW's mtime on it
    record_property("rsync_after_apply", lines)
    assert lines == [ROOT_TIME]


def test_round_trip_of_a_delta_packed_from_gnu_tar_archives_onto_a_directory(
    tmp_path: Path,
) -> None:
    old, new, _ = _every_kind(tmp_path, WORKING)
    old_tar = gnu_tar(old, tmp_path / "old.tar")
    new_tar = gnu_tar(new, tmp_path / "new.tar")
    delta = tmp_path / "tar.delta"
    result = pack(str(old_tar), str(new_tar), delta)
    from_dirs = pack(str(old), str(new), tmp_path / "dir.delta")
    assert (result.old_identity, result.new_identity) == (
        from_dirs.old_identity,
        from_dirs.new_identity,
    )
    round_trip(old, new, delta, clone(old, tmp_path / "tree"))


def test_apply_whose_result_is_not_new_says_which_paths_and_rollback_gives_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the commit only the paths it touched are looked at again (the rest was
    checked to be OLD, which is NEW there): a mode the filesystem did not keep is found."""
    old, _, delta = _every_kind(tmp_path, WORKING)
    tree = clone(old, tmp_path / "tree")
    real = os.fchmod
    # as a filesystem that drops execute bits: staging's digests cannot see it
    monkeypatch.setattr(os, "fchmod", lambda fd, mode: real(fd, mode & ~0o111))
    with pytest.raises(ImgdiffError, match=r"after apply the tree is not NEW \(/\S+ \(mode"):
        apply(str(delta), str(tree))
    monkeypatch.undo()
    rollback(str(tree))
    assert_tree_is(old, tree, root_mtime=True)


@pytest.mark.usefixtures("settled")
def test_apply_tells_the_digest_cache_what_it_placed_so_check_reads_none_of_it(
    tmp_path: Path,
) -> None:
    old, new, delta = _every_kind(tmp_path, WORKING)
    tree = clone(old, tmp_path / "tree")
    apply(str(delta), str(tree))
    placed = [r.path for r in records_of(delta).values()]
    assert placed
    reads: list[str] = []
    real = _digest.of_fd

    def counting(fd: int, size: int) -> tuple[str, int]:
        reads.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd, size)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_digest, "of_fd", counting)
        assert check(str(tree), str(delta)).ok
    # not the placed files, nor those the base check read; those whose metadata alone was
    # set are read again: their inodes may have been mapped, and their ctimes just moved
    assert reads
    assert not {f"{tree}{p}" for p in placed} & set(reads)
    meta_only = {
        f"{tree}{c.path}"
        for c in diff(str(old), str(new), use_cache=False).changes
        if c.new is not None and c.new.type is EntryType.FILE and Aspect.CONTENT not in c.aspects
    }
    assert set(reads) <= meta_only


def _fds_under(tree: Path) -> list[str]:
    """What this process holds open in `tree` (its root included)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target == str(tree) or target.startswith(f"{tree}/"):
                out.append(target)
    return sorted(out)


def test_apply_rollback_verify_and_check_leave_no_descriptor_on_the_tree(tmp_path: Path) -> None:
    """Left open, a tree on its own mount could not be unmounted by the caller until it
    exited ("target is busy"): the tree's manifest, and /var/lib when the state directory
    was looked for and not there yet."""
    old, _, delta = _every_kind(tmp_path, ["content"])
    tree = clone(old, tmp_path / "tree")
    apply(str(delta), str(tree))
    assert _fds_under(tree) == []
    assert check(str(tree), str(delta)).ok
    assert _fds_under(tree) == []
    rollback(str(tree))
    assert _fds_under(tree) == []
    assert verify(str(tree), str(old), ignore=(STATE + "/",)).matches
    assert _fds_under(tree) == []


def test_pack_leaves_no_descriptor_on_old_or_new(tmp_path: Path) -> None:
    """pack read both directories and kept their roots open: two descriptors a call."""
    old, new, _ = _every_kind(tmp_path, ["content"])
    pack(str(old), str(new), tmp_path / "again.delta")
    assert _fds_under(old) == _fds_under(new) == []


def test_apply_twice_in_a_row_then_roll_back_the_last(tmp_path: Path) -> None:
    v0 = tmp_path / "v0"
    tree_spec = build_old(v0)
    v1 = clone(v0, tmp_path / "v1")
    change(v1, tree_spec, ["content", "types"])
    v2 = clone(v1, tmp_path / "v2")
    change(v2, tree_spec, ["added-removed", "metadata"])
    d01, d12 = tmp_path / "01.delta", tmp_path / "12.delta"
    pack(str(v0), str(v1), d01)
    pack(str(v1), str(v2), d12)
    tree = clone(v0, tmp_path / "tree")
    apply(delta=str(d01), tree=str(tree))
    apply(delta=str(d12), tree=str(tree))
    assert_tree_is(v2, tree, root_mtime=False)
    rollback(tree=str(tree), delta=str(d12))
    assert_tree_is(v1, tree, root_mtime=False)


# -- 2. the real pair -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    not (CORPUS / "old").is_dir() or not (CORPUS / "new").is_dir(),
    reason=f"no real pair at {CORPUS}/{{old,new}} (build-image-pair.sh makes one)",
)
def test_real_pair_packs_applies_and_rolls_back_exactly(
    tmp_path: Path, record_property: Callable[[str, object], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # zstd level 3 instead of 19: the same kinds of record (patch, hdiff, copy, zstd) in a
    # quarter of the time (~8 s instead of ~30 s on 2 cores), the delta a few % bigger
    monkeypatch.setattr(packing, "WHOLE_LEVEL", 3)
    monkeypatch.setattr(packing, "PATCH_LEVEL", 3)
    delta = tmp_path / "real.delta"
    start = time.monotonic()
    result = pack(str(CORPUS / "old"), str(CORPUS / "new"), delta)
    record_property("pack_seconds", round(time.monotonic() - start, 1))
    record_property("delta_bytes", result.size)
    record_property("records", result.records)
    tree = clone(CORPUS / "old", tmp_path / "tree")
    start = time.monotonic()
    apply(delta=str(delta), tree=str(tree))
    record_property("apply_seconds", round(time.monotonic() - start, 1))
    # rsync alone here: -c reads every byte of both trees, the other checks would again
    lines = rsync_lines(CORPUS / "new", tree)
    record_property("rsync_after_apply", lines)
    assert [ln for ln in lines if ln != ROOT_TIME] == []
    start = time.monotonic()
    rollback(tree=str(tree), delta=str(delta))
    record_property("rollback_seconds", round(time.monotonic() - start, 1))
    assert rsync_lines(CORPUS / "old", tree) == []


# -- 3. the wrong base ------------------------------------------------------------------


@attrs.define
class Case:
    """OLD, NEW, a good delta between them and a copy of OLD to apply it to."""

    tmp: Path
    old: Path
    new: Path
    delta: Path
    tree: Path
    before: Listing


@pytest.fixture
def case(tmp_path: Path) -> Case:
    old = tmp_path / "old"
    spec = build_old(old)
    new = clone(old, tmp_path / "new")
    change(new, spec, ["content", "added-removed", "types", "symlink-fifo"])
    delta = tmp_path / "good.delta"
    pack(str(old), str(new), delta)
    tree = clone(old, tmp_path / "tree")
    return Case(tmp_path, old, new, delta, tree, listing(tree))


def refused(c: Case, delta: Path, *words: str) -> BadInput:
    """Applying `delta` raises BadInput naming `words`, and the tree is untouched."""
    with pytest.raises(BadInput) as info:
        apply(delta=str(delta), tree=str(c.tree))
    message = str(info.value)
    for word in words:
        assert word in message, message
    assert_untouched(c.before, c.tree)
    return info.value


def test_not_the_base_is_refused_as_bad_input_naming_the_path_and_touches_nothing(
    case: Case,
) -> None:
    assert issubclass(NotTheBase, BadInput)  # exit 3
    (case.tree / "etc/hostname").write_bytes(b"drifted\n")
    case.before = listing(case.tree)
    with pytest.raises(NotTheBase, match=r"is not the delta's base.*/etc/hostname"):
        apply(delta=str(case.delta), tree=str(case.tree))
    assert_untouched(case.before, case.tree)


def test_refused_apply_leaves_even_the_state_directorys_parent_mtime_alone(
    case: Case,
) -> None:
    (case.tree / "etc/hostname").write_bytes(b"drifted\n")
    before = listing(case.tree)
    with pytest.raises(NotTheBase):
        apply(delta=str(case.delta), tree=str(case.tree))
    assert listing_diff(before, listing(case.tree)) == []


def test_not_the_base_message_is_one_line_with_odd_names_escaped(case: Case) -> None:
    os.chmod(os.fsencode(case.tree) + b"/bad\xffname", 0o600)
    os.chmod(case.tree / "names/new\nline", 0o600)
    with pytest.raises(NotTheBase) as info:  # caught: its raw message would crash xdist
        apply(delta=str(case.delta), tree=str(case.tree))
    message = str(info.value)
    assert "bad" in message
    assert "\n" not in message
    assert message.encode("utf-8", "surrogateescape").decode("utf-8").isprintable()
    message.encode("utf-8")


def _versions(tmp: Path, count: int) -> tuple[list[Path], list[Path]]:
    """Images v0..v{count-1}, each a few changes from the previous, and the deltas."""
    v0 = tmp / "v0"
    spec = build_old(v0)
    images = [v0]
    for i, kinds in enumerate((["content"], ["types"], ["metadata", "symlink-fifo"])[: count - 1]):
        images.append(clone(images[-1], tmp / f"v{i + 1}"))
        change(images[-1], spec, kinds)
    deltas = []
    for i in range(count - 1):
        deltas.append(tmp / f"{i}-{i + 1}.delta")
        pack(str(images[i]), str(images[i + 1]), deltas[-1])
    return images, deltas


def test_tree_at_update_1_offered_update_3_is_told_which_update_it_is_at(
    tmp_path: Path,
) -> None:
    images, deltas = _versions(tmp_path, 4)
    tree = clone(images[0], tmp_path / "tree")
    apply(delta=str(deltas[0]), tree=str(tree))
    before = listing(tree)
    with pytest.raises(NotTheBase, match="at update 1") as info:
        apply(delta=str(deltas[2]), tree=str(tree))
    assert parts(deltas[2]).old != parts(deltas[0]).new
    assert "the delta needs" in str(info.value)
    assert_untouched(before, tree)


def test_applying_an_older_delta_again_after_two_updates_is_refused(tmp_path: Path) -> None:
    images, deltas = _versions(tmp_path, 3)
    tree = clone(images[0], tmp_path / "tree")
    apply(delta=str(deltas[0]), tree=str(tree))
    apply(delta=str(deltas[1]), tree=str(tree))
    before = listing(tree)
    with pytest.raises(NotTheBase, match="at update 2"):
        apply(delta=str(deltas[0]), tree=str(tree))
    assert_untouched(before, tree)
    assert_tree_is(images[2], tree, root_mtime=False)


def test_delta_of_another_pair_is_refused_as_not_the_base(case: Case) -> None:
    other_old = case.tmp / "other-old"
    spec = build_old(other_old)
    (other_old / "etc/hostname").write_bytes(b"another machine\n")
    other_new = clone(other_old, case.tmp / "other-new")
    change(other_new, spec, ["content"])
    other = case.tmp / "other.delta"
    pack(str(other_old), str(other_new), other)
    with pytest.raises(NotTheBase, match="/etc/hostname"):
        apply(delta=str(other), tree=str(case.tree))
    assert_untouched(case.before, case.tree)


def test_wrong_expected_digest_is_refused_and_the_tree_is_untouched(case: Case) -> None:
    wrong = "blake3:" + "0" * 64
    with pytest.raises(BadInput, match="digest"):
        apply(delta=str(case.delta), tree=str(case.tree), digest=wrong)
    assert_untouched(case.before, case.tree)
    assert _phase(case.tree) is None
    # and the right digest (bare hex too) applies
    right = blake3.blake3(case.delta.read_bytes()).hexdigest()
    apply(delta=str(case.delta), tree=str(case.tree), digest=right)
    assert_tree_is(case.new, case.tree, root_mtime=False)


# -- 4. SIGKILL at any moment -----------------------------------------------------------
#
# Random SIGKILLs of a child running apply or rollback (at a random time, or once the
# journal is there, a random few milliseconds into the commit), then the recovery checked;
# and, deterministically, a crash injected before each filesystem step in turn
# (`archive_fixtures.crash_at`). Every outcome is collected before anything is asserted, so
# a failure lists every moment that went wrong.

_CHILD = (
    "import sys\n"
    "from imgdiff.archive.apply import apply, rollback\n"
    "if sys.argv[1] == 'apply':\n"
    "    apply(delta=sys.argv[2], tree=sys.argv[3])\n"
    "else:\n"
    "    rollback(tree=sys.argv[3], delta=sys.argv[2])\n"
)


def _child(verb: str, delta: Path, tree: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, verb, str(delta), str(tree)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _journal(tree: Path) -> Path:
    return tree / STATE.lstrip("/") / "journal.json"


def _phase(tree: Path) -> str | None:
    """The journal's phase ("commit", "done"), None without a journal."""
    try:
        return str(json.loads(_journal(tree).read_text())["phase"])
    except FileNotFoundError:
        return None


def _timed(verb: str, delta: Path, tree: Path) -> tuple[float, float | None]:
    """(seconds for the whole child, seconds until journal.json appeared)."""
    start = time.monotonic()
    with reaped(_child(verb, delta, tree)) as proc:
        seen = wait_for(_journal(tree), proc, 60) if verb == "apply" else False
        at = time.monotonic() - start if seen else None
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode(errors="replace")
    return time.monotonic() - start, at


def _kill_after(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """SIGKILL `proc` after `seconds`; True if it had finished by itself."""
    time.sleep(seconds)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc.returncode == 0


def _recover(verb: str, old: Path, new: Path, delta: Path, tree: Path) -> str:
    """Run `verb` on an interrupted tree and check it: "" if all is well, else why not."""
    phase = _phase(tree)
    try:
        if verb == "apply":
            result = apply(delta=str(delta), tree=str(tree))
            assert result.resumed == (phase == "commit")
            assert_tree_is(new, tree, root_mtime=False)
        elif phase is None:  # killed before the journal: the staging (if any) goes
            with contextlib.suppress(BadInput):  # "no apply to roll back": nothing staged
                assert rollback(tree=str(tree), delta=str(delta)).operations == 0
            assert_tree_is(old, tree, root_mtime=True)
            assert not _state(tree).exists()
        else:
            rollback(tree=str(tree), delta=str(delta))
            assert_tree_is(old, tree, root_mtime=True)
    except (Exception, pytest.fail.Exception) as exc:
        return f"{verb} after a kill (journal: {phase}): {type(exc).__name__}: {exc}"[:300]
    return ""


@pytest.fixture(scope="module")
def crash_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """OLD and NEW with 300 files changed, 100 added, 100 removed, and the delta: a
    commit long enough (~50 ms) to be killed in."""
    tmp = tmp_path_factory.mktemp("crash-pair")
    old, new = many_files_pair(tmp, 300)
    delta = tmp / "d.delta"
    pack(str(old), str(new), delta)
    return old, new, delta


def _sigkill_apply(
    tmp_path: Path, pair: tuple[Path, Path, Path], recovery: str, seeds: range
) -> list[str]:
    """Kill an apply child at random moments, then `recovery`; returns the failures."""
    old, new, delta = pair
    whole, journal_at = _timed("apply", delta, clone(old, tmp_path / "measure"))
    assert journal_at is not None
    commit = whole - journal_at  # the commit, the check of NEW, the history
    failures = []
    for seed in seeds:
        rng = random.Random(seed)
        tree = clone(old, tmp_path / f"tree{seed}")
        with reaped(_child("apply", delta, tree)) as proc:
            if seed % 3 == 0:  # any time: starting, checking the base, staging, committing
                finished = _kill_after(proc, rng.uniform(0, whole))
            else:  # in the commit (the journal is there): early in it, or anywhere
                wait_for(_journal(tree), proc, 30)
                finished = _kill_after(proc, rng.uniform(0, 0.008 if seed % 3 == 1 else commit))
        if recovery == "apply" and (finished or _phase(tree) == "done"):
            # the commit was done: `test_apply_run_again_after_it_completed_...`
            assert_tree_is(new, tree, root_mtime=False)
        elif why := _recover(recovery, old, new, delta, tree):
            failures.append(f"seed {seed}: {why}")
        shutil.rmtree(tree)
    return failures


def test_sigkill_during_apply_then_apply_again_finishes(
    tmp_path: Path, crash_pair: tuple[Path, Path, Path]
) -> None:
    assert _sigkill_apply(tmp_path, crash_pair, "apply", range(8)) == []


def test_sigkill_during_apply_then_rollback_gives_old(
    tmp_path: Path, crash_pair: tuple[Path, Path, Path]
) -> None:
    # eight kills, three of them in the first 8 ms of the commit: each of these finds the
    # bug (10 in 10 when this was written), the others sometimes
    assert _sigkill_apply(tmp_path, crash_pair, "rollback", range(8)) == []


def test_sigkill_during_rollback_then_rollback_again_gives_old(
    tmp_path: Path, crash_pair: tuple[Path, Path, Path]
) -> None:
    old, new, delta = crash_pair
    measure = clone(old, tmp_path / "measure")
    apply(delta=str(delta), tree=str(measure))
    whole, _ = _timed("rollback", delta, measure)
    failures = []
    for seed in range(4):
        rng = random.Random(100 + seed)
        tree = clone(old, tmp_path / f"tree{seed}")
        made = tree / "opt/added"  # a directory the apply made, removed by the rollback
        apply(delta=str(delta), tree=str(tree))
        with reaped(_child("rollback", delta, tree)) as proc:
            if seed % 2:  # once the rollback has removed the directories the apply made
                while made.exists() and proc.poll() is None:
                    time.sleep(0.0005)
                _kill_after(proc, rng.uniform(0, 0.005))
            else:
                _kill_after(proc, rng.uniform(0, whole))
        if _phase(tree) is None:  # killed after the journal went: the rollback was done
            assert_tree_is(old, tree, root_mtime=True)
        elif why := _recover("rollback", old, new, delta, tree):
            failures.append(f"seed {seed}: {why}")
        shutil.rmtree(tree)
    assert failures == []


@pytest.fixture(scope="module")
def rich_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The rich OLD and NEW with every working kind of change, and the delta."""
    tmp = tmp_path_factory.mktemp("rich-pair")
    old = tmp / "old"
    spec = build_old(old)
    new = clone(old, tmp / "new")
    change(new, spec, WORKING)
    delta = tmp / "d.delta"
    pack(str(old), str(new), delta)
    return old, new, delta


def _crash_sweep(tmp_path: Path, pair: tuple[Path, Path, Path], verb: str, then: str) -> list[str]:
    """Crash `verb` before each of 20 filesystem steps spread over a whole run (after a
    completed apply, for a rollback), then run `then`; returns the failures."""
    old, new, delta = pair
    counted = clone(old, tmp_path / "count")
    if verb == "rollback":
        apply(delta=str(delta), tree=str(counted))
    with crash_at(None) as steps:
        if verb == "apply":
            apply(delta=str(delta), tree=str(counted))
        else:
            rollback(tree=str(counted), delta=str(delta))
    failures = []
    for step in spread(len(steps), 20):
        tree = clone(old, tmp_path / f"tree{step}")
        if verb == "rollback":
            apply(delta=str(delta), tree=str(tree))
        with contextlib.suppress(Crash), crash_at(step):
            if verb == "apply":
                apply(delta=str(delta), tree=str(tree))
            else:
                rollback(tree=str(tree), delta=str(delta))
        phase = _phase(tree)
        if verb == "apply" and then == "apply" and phase == "done":
            pass  # `test_apply_run_again_after_it_completed_...`
        elif verb == "rollback" and phase is None:  # the journal goes last: it was done
            with pytest.raises(BadInput, match="roll back"):
                rollback(tree=str(tree), delta=str(delta))
            assert_tree_is(old, tree, root_mtime=True)
        elif why := _recover(then, old, new, delta, tree):
            failures.append(f"before step {step} ({steps[step]}): {why}")
        shutil.rmtree(tree)
    return failures


def test_crash_before_each_step_of_apply_then_apply_again_finishes(
    tmp_path: Path, rich_pair: tuple[Path, Path, Path]
) -> None:
    assert _crash_sweep(tmp_path, rich_pair, "apply", "apply") == []


def test_crash_before_each_step_of_apply_then_rollback_gives_old(
    tmp_path: Path, rich_pair: tuple[Path, Path, Path]
) -> None:
    assert _crash_sweep(tmp_path, rich_pair, "apply", "rollback") == []


def test_crash_before_each_step_of_rollback_then_rollback_again_gives_old(
    tmp_path: Path, rich_pair: tuple[Path, Path, Path]
) -> None:
    assert _crash_sweep(tmp_path, rich_pair, "rollback", "rollback") == []


def test_apply_run_again_after_it_completed_finishes_without_error(case: Case) -> None:
    first = apply(delta=str(case.delta), tree=str(case.tree))
    again = apply(delta=str(case.delta), tree=str(case.tree))
    assert again.new_identity == first.new_identity
    assert_tree_is(case.new, case.tree, root_mtime=False)


# -- 5. hostile deltas ------------------------------------------------------------------


def _file(path: str, data: bytes, hardlink: str | None = None) -> Entry:
    """A regular file of `data`, root's, 0644, in the hard-link group `hardlink`."""
    digest = "blake3:" + blake3.blake3(data).hexdigest()
    return Entry(
        path, EntryType.FILE, 0o644, 0, 0, len(data), MTIME, None, hardlink, None, (), digest
    )


def _with_file(p: Parts, path: str, data: bytes) -> None:
    """NEW gains the file `path` with `data`, and the delta its zstd record."""
    p.new[path] = _file(path, data)
    p.records.append(zstd_record(path, data))
    p.records.sort(key=lambda r: r[0].path)


@pytest.mark.parametrize(
    "where",
    ["manifest", "manifest-relative", "removed", "record", "record-base"],
)
def test_path_with_dotdot_or_not_absolute_is_refused_before_the_tree_is_touched(
    case: Case, where: str
) -> None:
    def edit(p: Parts) -> None:
        if where == "manifest":
            _with_file(p, "/usr/../../escaped", b"out")
        elif where == "manifest-relative":
            _with_file(p, "usr/relative", b"rel")
        elif where == "removed":
            p.old["/../victim"] = _file("/../victim", b"v")
        elif where == "record":
            p.records.insert(0, zstd_record("/../escaped", b"out"))  # sorts first
        else:
            p.new["/usr/stolen"] = _file("/usr/stolen", b"root:x:0:0::/root:/bin/sh\n")
            p.records.append((Record("/usr/stolen", "copy", "/../../../etc/passwd", 0), b""))
            p.records.sort(key=lambda r: r[0].path)

    hostile = rewrite(case.delta, case.tmp / "hostile.delta", edit)
    why = {
        "manifest": "not a plain absolute path",
        "manifest-relative": "not absolute",
        "removed": "not a plain absolute path",
        "record": "not a regular file of NEW",
        "record-base": "is not a file of OLD",
    }[where]
    refused(case, hostile, why)
    assert not (case.tmp / "escaped").exists()
    assert not (case.tmp.parent / "escaped").exists()
    assert not (case.tree / "usr/stolen").exists()


def test_good_delta_read_and_written_again_by_the_forger_still_applies(case: Case) -> None:
    """The forged deltas here differ from a good one only in what each test changes."""
    good = rewrite(case.delta, case.tmp / "forged.delta", lambda p: None)
    round_trip(case.old, case.new, good, case.tree)


def _symlink_then_write(target: str, name: str) -> Callable[[Parts], None]:
    def edit(p: Parts) -> None:
        for path in [q for q in p.new if q.startswith("/etc/")]:
            del p.new[path]
        p.records = [r for r in p.records if not r[0].path.startswith("/etc/")]
        p.new["/etc"] = Entry(
            "/etc", EntryType.SYMLINK, 0o777, 0, 0, len(target), MTIME, target, None, None, (), None
        )
        _with_file(p, f"/etc/{name}", b"written through a symlink\n")

    return edit


@pytest.mark.parametrize("to", ["/", "outside"])
def test_symlink_then_write_beneath_it_in_one_delta_never_writes_outside(
    case: Case, to: str
) -> None:
    outside = case.tmp / "outside"
    outside.mkdir()
    name = f"imgdiff-escape-{uuid.uuid4().hex}"
    escaped = Path("/", name) if to == "/" else outside / name
    hostile = rewrite(
        case.delta,
        case.tmp / "hostile.delta",
        _symlink_then_write("/" if to == "/" else str(outside), name),
    )
    try:
        with pytest.raises((ImgdiffError, OSError)):
            apply(delta=str(hostile), tree=str(case.tree))
        assert not escaped.exists()
        assert list(outside.iterdir()) == []
    finally:
        escaped.unlink(missing_ok=True)


def test_symlink_then_write_beneath_it_in_one_delta_is_refused_before_the_tree_is_touched(
    case: Case,
) -> None:
    name = f"imgdiff-escape-{uuid.uuid4().hex}"
    hostile = rewrite(case.delta, case.tmp / "hostile.delta", _symlink_then_write("/", name))
    try:
        refused(case, hostile)
    finally:
        Path("/", name).unlink(missing_ok=True)


def _two_deltas(case: Case) -> tuple[Path, Path, Listing]:
    """Delta 1 (a real pack) turns /etc into a symlink to a directory outside the tree and
    is applied; delta 2 (NEW1 plus /etc/x) is returned with the tree's listing."""
    outside = case.tmp / "outside"
    outside.mkdir()
    new1 = clone(case.old, case.tmp / "new1")
    shutil.rmtree(new1 / "etc")
    os.symlink(str(outside), new1 / "etc")
    d1 = case.tmp / "d1.delta"
    pack(str(case.old), str(new1), d1)
    apply(delta=str(d1), tree=str(case.tree))
    assert_tree_is(new1, case.tree, root_mtime=False)

    def edit(p: Parts) -> None:
        p.old = dict(p.new)  # delta 2's base is NEW1
        p.records = []
        _with_file(p, "/etc/x", b"written through a symlink\n")

    d2 = rewrite(d1, case.tmp / "d2.delta", edit)
    return outside, d2, listing(case.tree)


def test_symlink_made_by_one_delta_never_sends_the_next_deltas_write_outside(
    case: Case,
) -> None:
    outside, d2, _ = _two_deltas(case)
    with pytest.raises((ImgdiffError, OSError)):
        apply(delta=str(d2), tree=str(case.tree))
    assert list(outside.iterdir()) == []


def test_symlink_made_by_one_delta_makes_the_next_refused_before_the_tree_is_touched(
    case: Case,
) -> None:
    _, d2, before = _two_deltas(case)
    with pytest.raises(BadInput):
        apply(delta=str(d2), tree=str(case.tree))
    assert listing_diff(before, listing(case.tree)) == []
    assert _phase(case.tree) != "commit"


@pytest.mark.parametrize("leader", ["outside", "not-in-new", "device", "symlink"])
def test_hard_link_to_outside_or_to_no_file_of_new_is_refused_before_the_tree_is_touched(
    case: Case, leader: str
) -> None:
    outside = case.tmp / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_bytes(b"secret\n")
    group = {
        "outside": f"/../{outside.name}/secret",
        "not-in-new": "/no/such/leader",
        "device": "/nodes/null",
        "symlink": "/links/relative",
    }[leader]

    def edit(p: Parts) -> None:
        p.new["/usr/bin/linked"] = _file("/usr/bin/linked", b"secret\n", hardlink=group)

    hostile = rewrite(case.delta, case.tmp / "hostile.delta", edit)
    try:
        refused(case, hostile)
    finally:
        assert os.stat(secret).st_nlink == 1


def test_hard_link_escape_never_links_a_file_outside_the_tree(case: Case) -> None:
    outside = case.tmp / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_bytes(b"secret\n")

    def edit(p: Parts) -> None:
        link = _file("/usr/bin/linked", b"secret\n", hardlink=f"/../{outside.name}/secret")
        p.new["/usr/bin/linked"] = link

    hostile = rewrite(case.delta, case.tmp / "hostile.delta", edit)
    with pytest.raises((ImgdiffError, OSError)):
        apply(delta=str(hostile), tree=str(case.tree))
    assert os.stat(secret).st_nlink == 1
    assert not (case.tree / "usr/bin/linked").exists()


@pytest.mark.parametrize("how", ["new-node", "rdev-changed", "fifo-to-device"])
def test_device_node_is_never_created(case: Case, how: str) -> None:
    def edit(p: Parts) -> None:
        if how == "new-node":
            p.new["/usr/sda"] = Entry(
                "/usr/sda", EntryType.BLOCK, 0o660, 0, 6, 0, MTIME, None, None, (8, 0), (), None
            )
        elif how == "rdev-changed":
            p.new["/nodes/null"] = attrs.evolve(p.new["/nodes/null"], rdev=(1, 1))  # /dev/mem
        else:
            p.new["/nodes/fifo"] = attrs.evolve(
                p.new["/nodes/fifo"], type=EntryType.CHAR, rdev=(1, 1)
            )

    hostile = rewrite(case.delta, case.tmp / "hostile.delta", edit)
    refused(case, hostile, "device")


@pytest.mark.parametrize("lie", ["past-the-end", "into-the-next"])
def test_record_size_that_lies_is_refused_before_the_tree_is_touched(case: Case, lie: str) -> None:
    def edit(p: Parts) -> None:
        sized = [i for i, (r, _) in enumerate(p.records) if r.size > 8]
        assert len(sized) >= 2
        i, j = sized[0], sized[1]
        (a, da), (b, db) = p.records[i], p.records[j]
        if lie == "past-the-end":
            p.records[i] = (attrs.evolve(a, size=a.size + 1000), da)
        else:  # the first stops short: the rest of its data is read as the next record's
            p.records[i] = (attrs.evolve(a, size=a.size - 5), da[:-5])
            p.records[j] = (attrs.evolve(b, size=b.size + 5), da[-5:] + db)

    hostile = rewrite(case.delta, case.tmp / "hostile.delta", edit)
    refused(case, hostile)


_BOMB_CHILD = (
    "import sys\n"
    "from imgdiff.errors import BadInput\n"
    "from imgdiff.archive.apply import apply\n"
    "try:\n"
    "    apply(delta=sys.argv[1], tree=sys.argv[2])\n"
    "except BadInput as exc:\n"
    "    print(exc)\n"
    "    sys.exit(0)\n"
    "sys.exit(1)\n"
)


def test_decompression_bomb_is_refused_without_inflating_it(case: Case) -> None:
    expanded = 512 * MiB
    data = bomb(expanded)
    assert len(data) < MiB

    def edit(p: Parts) -> None:
        p.new["/usr/bin/small"] = _file("/usr/bin/small", b"0123456789")
        p.records.append((Record("/usr/bin/small", "zstd", None, len(data)), data))
        p.records.sort(key=lambda r: r[0].path)

    hostile = rewrite(case.delta, case.tmp / "hostile.delta", edit)
    run = measure([sys.executable, "-c", _BOMB_CHILD, str(hostile), str(case.tree)], case.tmp)
    assert run.returncode == 0, run.stderr
    assert_untouched(case.before, case.tree)
    assert run.max_rss < 256 * MiB, f"peak RSS {run.max_rss // MiB} MiB"


@pytest.mark.parametrize("where", ["manifest", "removed", "added", "records"])
def test_duplicate_entries_are_refused_before_the_tree_is_touched(case: Case, where: str) -> None:
    if where == "records":
        hostile = rewrite(
            case.delta, case.tmp / "hostile.delta", lambda p: p.records.append(p.records[-1])
        )
        refused(case, hostile, "increasing order")
        return
    doc, data = split_delta(case.delta)
    key = {"manifest": "entries", "removed": "removed", "added": "added"}[where]
    rows = doc["manifest"]["entries"] if where == "manifest" else doc[key]
    assert rows
    rows.append(rows[0])
    refused(case, join_delta(case.tmp / "hostile.delta", doc, data))


@pytest.mark.parametrize("which", ["not-in-new", "unchanged", "not-a-file"])
def test_extraneous_content_record_is_refused_before_the_tree_is_touched(
    case: Case, which: str
) -> None:
    path = {
        "not-in-new": "/usr/zzz",
        "unchanged": "/usr/lib/libother.so.2",
        "not-a-file": "/links/relative",
    }[which]

    def edit(p: Parts) -> None:
        p.records.append(zstd_record(path, b"extra"))
        p.records.sort(key=lambda r: r[0].path)

    hostile = rewrite(case.delta, case.tmp / "hostile.delta", edit)
    refused(case, hostile, path)


def test_content_record_missing_for_a_changed_file_is_refused(case: Case) -> None:
    def edit(p: Parts) -> None:
        p.records = [r for r in p.records if r[0].path != "/etc/hostname"]

    hostile = rewrite(case.delta, case.tmp / "hostile.delta", edit)
    refused(case, hostile, "/etc/hostname")


def test_flipped_byte_in_record_data_is_refused_before_the_tree_is_touched(case: Case) -> None:
    def edit(p: Parts) -> None:
        i, (record, data) = next(
            (i, r) for i, r in enumerate(p.records) if r[0].encoding == "zstd" and r[0].size > 12
        )
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x40
        p.records[i] = (record, bytes(flipped))

    hostile = rewrite(case.delta, case.tmp / "hostile.delta", edit)
    refused(case, hostile)


def test_digest_changed_in_manifest_fails_the_identity_check(case: Case) -> None:
    doc, data = split_delta(case.delta)
    row = next(r for r in doc["manifest"]["entries"] if r[0] == "/etc/hostname")
    row[11] = "blake3:" + blake3.blake3(b"something else").hexdigest()
    refused(case, join_delta(case.tmp / "hostile.delta", doc, data), "identity")


def test_digest_changed_with_identities_recomputed_fails_the_content_check(case: Case) -> None:
    def edit(p: Parts) -> None:
        entry = p.new["/etc/hostname"]
        p.new["/etc/hostname"] = attrs.evolve(entry, digest="blake3:" + "ab" * 32)

    hostile = rewrite(case.delta, case.tmp / "hostile.delta", edit)
    refused(case, hostile, "/etc/hostname", "digest")


def test_identity_of_old_that_does_not_match_is_refused(case: Case) -> None:
    doc, data = split_delta(case.delta)
    doc["old"]["identity"] = "blake3:" + "cd" * 32
    refused(case, join_delta(case.tmp / "hostile.delta", doc, data), "identity")


def test_truncated_and_trailing_data_deltas_are_refused(case: Case) -> None:
    raw = case.delta.read_bytes()
    short = case.tmp / "short.delta"
    short.write_bytes(raw[:-3])
    refused(case, short, "truncated")
    long = case.tmp / "long.delta"
    long.write_bytes(raw + b"x")
    refused(case, long, "trailing")


# -- 6. determinism ---------------------------------------------------------------------


def test_packing_the_same_pair_twice_and_with_one_worker_gives_the_same_bytes(
    tmp_path: Path,
) -> None:
    old, new = many_files_pair(tmp_path, 120)  # 160 files to encode: split between workers
    (old / LIB).parent.mkdir(parents=True, exist_ok=True)
    (old / LIB).write_bytes(lib_bytes())
    (new / LIB).parent.mkdir(parents=True, exist_ok=True)
    (new / LIB).write_bytes(lib_bytes()[:-100] + b"changed tail")
    first, second, single = (tmp_path / n for n in ("1.delta", "2.delta", "w1.delta"))
    a = pack(str(old), str(new), first)
    b = pack(str(old), str(new), second)
    c = pack(str(old), str(new), single, workers=1)
    assert first.read_bytes() == second.read_bytes() == single.read_bytes()
    assert a.digest == b.digest == c.digest
    assert a.digest == "blake3:" + blake3.blake3(first.read_bytes()).hexdigest()
    assert len(a.records) >= 2, a.records  # several encodings, each deterministic


def test_canonical_paths_are_exactly_those_with_no_empty_dot_or_dotdot_component() -> None:
    """Every string of up to 8 characters over '/', '.', 'a' against the definition."""

    def by_definition(path: str) -> bool:
        parts = path.split("/")
        return (
            parts[0] == "" and len(parts) > 1 and all(p not in ("", ".", "..") for p in parts[1:])
        )

    tried = 0
    for length in range(9):
        for chars in itertools.product("/.a", repeat=length):
            path = "".join(chars)
            assert canonical(path) == by_definition(path), path
            tried += 1
    assert tried == sum(3**n for n in range(9))


def test_delta_writing_into_another_mount_is_refused_before_the_tree_is_touched(
    case: Case,
) -> None:
    """Apply works by renames, atomic within one mount only: a bind mount of OLD's very
    contents where the delta writes makes it refuse, not half apply."""
    mounted = next(
        parent
        for path in records_of(case.delta)
        if (parent := (case.tree / path.lstrip("/")).parent) != case.tree
        and parent.is_dir()
        and not parent.is_symlink()
    )
    saved = case.tmp / "saved"
    subprocess.run(["cp", "-a", str(mounted), str(saved)], check=True)
    subprocess.run(["mount", "--bind", str(saved), str(mounted)], check=True)
    try:
        before = listing(case.tree)
        place = "/" + str(mounted.relative_to(case.tree))
        with pytest.raises(BadInput, match=f"is in another mount \\({place}\\) than /var/lib"):
            apply(str(case.delta), str(case.tree))
        assert listing_diff(before, listing(case.tree)) == []
        assert not (case.tree / STATE.lstrip("/")).exists()
    finally:
        subprocess.run(["umount", str(mounted)], check=True)
    apply(str(case.delta), str(case.tree))  # unmounted: the same delta applies
    assert_tree_is(case.new, case.tree, root_mtime=False)


# -- 6. the state directory -------------------------------------------------------------


def _state(tree: Path) -> Path:
    return tree / STATE.lstrip("/")


@pytest.mark.parametrize("name", [".journal.json.tmp", ".history.json.tmp", ".delta-header.tmp"])
def test_symlink_planted_in_the_state_directory_never_sends_a_write_outside(
    case: Case, name: str
) -> None:
    victim = case.tmp / "victim"
    victim.write_bytes(b"precious\n")
    _state(case.tree).mkdir(mode=0o700)
    os.symlink(victim, _state(case.tree) / name)
    apply(delta=str(case.delta), tree=str(case.tree))
    assert victim.read_bytes() == b"precious\n"
    assert_tree_is(case.new, case.tree, root_mtime=False)
    rollback(tree=str(case.tree))
    assert victim.read_bytes() == b"precious\n"
    assert_tree_is(case.old, case.tree, root_mtime=True)


def test_state_file_that_is_a_symlink_is_refused_not_read_through(case: Case) -> None:
    secret = case.tmp / "secret"
    secret.write_text('{"schema": "imgdiff.journal/1", "phase": "done"}')
    _state(case.tree).mkdir(mode=0o700)
    os.symlink(secret, _state(case.tree) / "journal.json")
    case.before = listing(case.tree)
    refused(case, case.delta, "journal.json")


@pytest.mark.parametrize("what", ["var", "var/lib", "var/lib/imgdiff"])
def test_state_directory_or_a_parent_that_is_a_symlink_is_refused_before_anything_is_made(
    case: Case, what: str
) -> None:
    """The tree's /var (or /var/lib, or the state directory) leads outside it: nothing is
    made there, not even the state directory's parents (os.makedirs used to)."""
    outside = case.tmp / "outside"
    outside.mkdir()
    moved = case.tree / what
    if moved.exists():
        shutil.move(moved, outside / "moved")
    os.symlink(outside, moved)
    with pytest.raises(BadInput, match=f"/{what} is a symlink"):
        apply(delta=str(case.delta), tree=str(case.tree))
    assert [p.name for p in outside.iterdir()] == (["moved"] if what != "var/lib/imgdiff" else [])
    assert os.path.islink(moved)


@pytest.mark.parametrize("how", ["world-writable", "not ours"])
def test_state_directory_writable_by_others_is_refused(case: Case, how: str) -> None:
    _state(case.tree).mkdir(mode=0o700)
    if how == "world-writable":
        os.chmod(_state(case.tree), 0o777)
    else:
        os.chown(_state(case.tree), 1000, 1000)
    case.before = listing(case.tree)
    refused(case, case.delta, STATE, "writable by us alone")
    with pytest.raises(BadInput, match="writable by us alone"):
        rollback(tree=str(case.tree))


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_delta_that_cannot_be_opened_is_bad_input_naming_it(case: Case, what: str) -> None:
    delta = case.tmp / "missing.delta" if what == "missing" else case.tmp
    with pytest.raises(BadInput, match="cannot open"):
        apply(delta=str(delta), tree=str(case.tree))
    with pytest.raises(BadInput, match="cannot open"):
        apply_chain([str(case.delta), str(delta)], str(case.tree))
    assert_untouched(case.before, case.tree)
    apply(delta=str(case.delta), tree=str(case.tree))
    with pytest.raises(BadInput, match="cannot open"):
        rollback(tree=str(case.tree), delta=str(delta))


def _small_pair(tmp: Path) -> tuple[Path, Path]:
    """OLD and NEW of one changed file, with a /var/lib (copies of OLD are the trees)."""
    old, new = tmp / "old", tmp / "new"
    (old / "var/lib").mkdir(parents=True)
    (old / "f").write_bytes(b"1\n")
    clone(old, new)
    (new / "f").write_bytes(b"2\n")
    return old, new


@pytest.mark.parametrize("where", ["both", "new"])
def test_state_directory_in_the_images_is_left_out_of_the_delta(tmp_path: Path, where: str) -> None:
    """Images taken from a host an apply updated hold /var/lib/imgdiff: pack leaves it out
    of both, as apply and check leave it out of the tree (a NEW holding a journal.json
    applied, then check said not NEW and rollback crashed; with both holding a history,
    an exact copy of OLD was refused)."""
    old, new = _small_pair(tmp_path)
    for image in (old, new) if where == "both" else (new,):
        _state(image).mkdir(mode=0o700)
        (_state(image) / ("history.json" if where == "both" else "journal.json")).write_text("[]")
    delta = tmp_path / "d.delta"
    pack(str(old), str(new), delta)
    p = parts(delta)
    assert [q for q in (*p.new, *p.old) if q.startswith(STATE)] == []
    assert check(str(new), str(delta)).ok
    tree = clone(old, tmp_path / "tree")
    apply(delta=str(delta), tree=str(tree))
    assert check(str(tree), str(delta)).ok
    rollback(tree=str(tree))
    assert check(str(tree), str(old)).ok
    assert_tree_is(old, tree, root_mtime=True)


@pytest.mark.parametrize("how", ["state-dir-file", "parent-symlink", "parent-removed"])
def test_delta_touching_the_state_directory_or_its_parents_is_refused_before_the_tree_is_touched(
    case: Case, how: str
) -> None:
    """A forged delta that writes in the state directory, or a NEW that turns /var/lib
    into a symlink or drops /var (the commit renamed /var/lib, holding the state
    directory, into its own undo area: EINVAL, half applied), is refused."""

    def edit(p: Parts) -> None:
        if how == "state-dir-file":
            p.new[STATE] = attrs.evolve(p.new["/var/lib"], path=STATE, mode=0o700)
            _with_file(p, STATE + "/.history.json.tmp", b"[]")
        elif how == "parent-symlink":
            for q in [q for q in p.new if q.startswith("/var/lib")]:
                p.old.setdefault(q, p.new.pop(q))
            p.new["/var/lib"] = Entry(
                "/var/lib", EntryType.SYMLINK, 0o777, 0, 0, 4, MTIME, "/tmp", None, None, (), None
            )
        else:
            for q in [q for q in p.new if q.startswith("/var")]:
                p.old.setdefault(q, p.new.pop(q))

    hostile = rewrite(case.delta, case.tmp / "hostile.delta", edit)
    refused(case, hostile, "imgdiff's state directory")
    assert not _state(case.tree).exists()


def test_delta_that_makes_var_is_applied_and_rolled_back(tmp_path: Path) -> None:
    """OLD has no /var, NEW makes /var/log: the state directory's parents are made first
    (by apply), and removed by the rollback with the state directory (they were left,
    with a history of [])."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    (old / "f").write_bytes(b"1\n")
    clone(old, new)
    (new / "var/log").mkdir(parents=True)
    (new / "var/log/x").write_bytes(b"x\n")
    delta = tmp_path / "d.delta"
    pack(str(old), str(new), delta)
    tree = clone(old, tmp_path / "tree")
    apply(delta=str(delta), tree=str(tree))
    assert check(str(tree), str(delta)).ok
    rollback(tree=str(tree))
    assert check(str(tree), str(old)).ok
    assert not (tree / "var").exists()
    assert_tree_is(old, tree, root_mtime=True)


def _var_pair(tmp: Path, var: str) -> tuple[Path, Path, Path]:
    """OLD (with /var/lib, with an empty /var, or with no /var: `var`), NEW with one file
    changed and one added; and the delta."""
    old, new = tmp / "old", tmp / "new"
    old.mkdir()
    if var != "none":
        (old / var).mkdir(parents=True)
    (old / "f").write_bytes(b"1\n")
    for d in ("/", "/var", "/var/lib"):
        if (old / d.lstrip("/")).exists():
            os.utime(old / d.lstrip("/"), ns=(MTIME, MTIME))
    clone(old, new)
    (new / "f").write_bytes(b"2\n" * 100)
    (new / "g").write_bytes(b"added\n" * 100)
    delta = tmp / "d.delta"
    pack(str(old), str(new), delta)
    return old, new, delta


VARS = ["var/lib", "var", "none"]


@pytest.mark.parametrize("var", VARS)
def test_rollback_after_a_kill_while_staging_gives_exactly_old(tmp_path: Path, var: str) -> None:
    """Killed after staging a file, before the journal: rollback said "no apply to roll
    back" and left the staging area, the state directory and its parents (/var/lib's
    mtime moved). Now the staging goes, the tree is exactly OLD, and apply still works."""
    old, _, delta = _var_pair(tmp_path, var)
    counted = clone(old, tmp_path / "count")
    with crash_at(None) as steps:
        apply(delta=str(delta), tree=str(counted))
    tree = clone(old, tmp_path / "tree")
    with contextlib.suppress(Crash), crash_at(steps.index("fchown")):  # a staged file's
        apply(delta=str(delta), tree=str(tree))
    assert (_state(tree) / "staging").is_dir()
    result = rollback(tree=str(tree))
    assert (result.rolled_back, result.operations) == (True, 0)
    assert result.delta_digest == _digest.of_bytes(delta.read_bytes())
    assert_tree_is(old, tree, root_mtime=True)
    assert not _state(tree).exists()
    with pytest.raises(BadInput, match="no apply to roll back"):
        rollback(tree=str(tree))
    apply(delta=str(delta), tree=str(tree))
    assert check(str(tree), str(delta)).ok


@pytest.mark.parametrize("var", VARS)
def test_delta_refused_while_staging_leaves_exactly_old(tmp_path: Path, var: str) -> None:
    """A record that does not decode to NEW's bytes: the state directory (and the /var,
    /var/lib apply made for it) stayed, and the mtimes it moved."""
    old, _, delta = _var_pair(tmp_path, var)

    def edit(p: Parts) -> None:
        record, data = p.records[-1]
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x40
        p.records[-1] = (record, bytes(flipped))

    hostile = rewrite(delta, tmp_path / "hostile.delta", edit)
    tree = clone(old, tmp_path / "tree")
    with pytest.raises(BadInput):
        apply(delta=str(hostile), tree=str(tree))
    assert_tree_is(old, tree, root_mtime=True)
    assert listing_diff(listing(old), listing(tree)) == []
    assert not _state(tree).exists()


@pytest.mark.parametrize("var", VARS)
def test_rollback_of_the_only_apply_removes_the_state_it_made_and_keeps_an_earlier_history(
    tmp_path: Path, var: str
) -> None:
    """The state directory (and /var, /var/lib apply made for it) stayed after a full
    rollback, holding a history of []; after two applies, rolling back the second keeps
    the first's history."""
    old, new, delta = _var_pair(tmp_path, var)
    newer = clone(new, tmp_path / "newer")
    (newer / "f").write_bytes(b"3\n")
    second = tmp_path / "second.delta"
    pack(str(new), str(newer), second)
    tree = clone(old, tmp_path / "tree")
    apply(delta=str(delta), tree=str(tree))
    apply(delta=str(second), tree=str(tree))
    rollback(tree=str(tree))
    assert check(str(tree), str(delta)).ok
    history = json.loads((_state(tree) / "history.json").read_text())
    assert [h["delta"] for h in history] == [_digest.of_bytes(delta.read_bytes())]
    tree2 = clone(old, tmp_path / "tree2")
    apply(delta=str(delta), tree=str(tree2))
    rollback(tree=str(tree2))
    assert_tree_is(old, tree2, root_mtime=True)
    assert listing_diff(listing(old), listing(tree2)) == []
    assert not _state(tree2).exists()


def test_crash_at_each_step_of_a_second_apply_then_rollback_undoes_the_last_or_refuses(
    tmp_path: Path,
) -> None:
    """Apply D2 on a tree at D1's NEW, crashed before each filesystem step in turn, then
    roll back: the tree is D1's NEW (D2's commit undone, or refused with nothing done) or
    D1's OLD (D1 was the last apply: killed while D2 staged). Killed after D1's undo data
    went and before D2's journal came, rollback ran D1's journal without it and wrecked
    the tree."""
    t0 = tmp_path / "t0"
    (t0 / "d").mkdir(parents=True)
    (t0 / "var/lib").mkdir(parents=True)
    (t0 / "v").write_bytes(b"0\n")
    (t0 / "d/x").write_bytes(b"x\n")
    t1 = clone(t0, tmp_path / "t1")
    (t1 / "v").write_bytes(b"1\n")
    (t1 / "n").write_bytes(b"n\n")
    shutil.rmtree(t1 / "d")
    t2 = clone(t1, tmp_path / "t2")
    (t2 / "v").write_bytes(b"2\n")
    for i in range(6):  # staged in slots D1's rollback uses too
        (t2 / f"m{i}").write_bytes(b"m%d\n" % i)
    d1, d2 = tmp_path / "d1.delta", tmp_path / "d2.delta"
    pack(str(t0), str(t1), d1)
    pack(str(t1), str(t2), d2)

    def at_d1(name: str) -> Path:
        tree = clone(t0, tmp_path / name)
        apply(delta=str(d1), tree=str(tree))
        return tree

    counted = at_d1("count")
    with crash_at(None) as steps:
        apply(delta=str(d2), tree=str(counted))
    failures = []
    for step in range(len(steps)):
        tree = at_d1(f"tree{step}")
        with contextlib.suppress(Crash), crash_at(step):
            apply(delta=str(d2), tree=str(tree))
        try:
            rollback(tree=str(tree))
        except BadInput:
            want = t1  # refused: D2's commit had not begun, and nothing was done
        except Exception as exc:  # every step's outcome is collected
            failures.append(f"before step {step} ({steps[step]}): {type(exc).__name__}: {exc}")
            continue
        else:
            want = t1 if listing(tree)["/v"] != listing(t0)["/v"] else t0
        if diff := listing_diff(listing(want), listing(tree), ignore_mtime=("/",)):
            failures.append(f"before step {step} ({steps[step]}): not {want.name}: {diff[:3]}")
        shutil.rmtree(tree)
    assert failures == []


@pytest.mark.parametrize("second", ["apply", "rollback"])
def test_apply_or_rollback_while_an_apply_runs_on_the_tree_is_refused(
    tmp_path: Path, crash_pair: tuple[Path, Path, Path], second: str
) -> None:
    """Two applies (or an apply and a rollback) at once on one tree left it half applied:
    the second is refused while the first runs, and the first finishes."""
    old, new, delta = crash_pair
    tree = clone(old, tmp_path / "tree")
    with reaped(_child("apply", delta, tree)) as proc:
        assert wait_for(_journal(tree), proc, 60)
        os.kill(proc.pid, signal.SIGSTOP)  # mid-commit, holding the tree
        try:
            run: Callable[[], object] = (
                (lambda: apply(delta=str(delta), tree=str(tree)))
                if second == "apply"
                else (lambda: rollback(tree=str(tree)))
            )
            with pytest.raises(BadInput, match="another imgdiff apply or rollback is running"):
                run()
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode(errors="replace")
    assert_tree_is(new, tree, root_mtime=False)


def test_directory_with_contents_that_became_a_symlink_rolls_back(tmp_path: Path) -> None:
    """Rollback set OLD's directory metadata, O_NOFOLLOW, on what was still NEW's
    symlink there (ELOOP, exit 4, every time)."""
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "d").mkdir(parents=True)
    (old / "var/lib").mkdir(parents=True)
    (old / "d/f").write_bytes(b"f\n")
    clone(old, new)
    shutil.rmtree(new / "d")
    os.symlink("elsewhere", new / "d")
    delta = tmp_path / "d.delta"
    pack(str(old), str(new), delta)
    round_trip(old, new, delta, clone(old, tmp_path / "tree"))


def test_xattrs_of_a_symlink_are_set(tmp_path: Path) -> None:
    """They were never set, so apply failed its own check after the commit (exit 3)."""
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "var/lib").mkdir(parents=True)
    (old / "f").write_bytes(b"1\n")
    clone(old, new)
    os.symlink("f", new / "l")
    os.setxattr(new / "l", "trusted.label", b"x", follow_symlinks=False)
    delta = tmp_path / "d.delta"
    pack(str(old), str(new), delta)
    round_trip(old, new, delta, clone(old, tmp_path / "tree"))


def test_pack_refuses_a_socket_new_adds_naming_it(tmp_path: Path) -> None:
    """pack wrote the delta, and apply refused it every time (after staging)."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    (old / "f").write_bytes(b"1\n")
    clone(old, new)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(new / "sock"))
    with pytest.raises(ImgdiffError, match="/sock: a delta never creates sockets"):
        pack(str(old), str(new), tmp_path / "d.delta")
    assert not (tmp_path / "d.delta").exists()


@pytest.mark.parametrize("how", ["joined", "split"])
def test_tree_whose_hard_link_groups_differ_is_not_the_base_nor_new(
    tmp_path: Path, how: str
) -> None:
    """Two OLD files made one inode (a mode change of one then changed both), or a group
    split into two files, with the same bytes and metadata: the base check, check and
    rollback's check took them as OLD or NEW."""
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "var/lib").mkdir(parents=True)
    (old / "a").write_bytes(b"same\n")
    if how == "joined":
        (old / "b").write_bytes(b"same\n")
    else:
        os.link(old / "a", old / "b")
    (old / "f").write_bytes(b"1\n")
    clone(old, new)
    (new / "f").write_bytes(b"2\n")
    delta = tmp_path / "d.delta"
    pack(str(old), str(new), delta)
    tree = clone(old, tmp_path / "tree")
    os.unlink(tree / "b")
    if how == "joined":
        os.link(tree / "a", tree / "b")
    else:
        shutil.copy2(tree / "a", tree / "b")
    with pytest.raises(NotTheBase, match=r"/b \(hard link\)"):
        apply(delta=str(delta), tree=str(tree))
    checked = check(str(tree), str(old))
    assert not checked.ok
    # the JSON's records say what its lines say (they had no record for a group)
    assert checked.files == ("/a (hard link)", "/b (hard link)")
    by_path = [(c.path, c.aspects) for c in checked.differences]
    assert by_path == [("/a", (Aspect.HARDLINK,)), ("/b", (Aspect.HARDLINK,))]


# -- 7. paths the kernel will not let change --------------------------------------------


@pytest.fixture
def chattr() -> Iterator[Callable[[Path, str], None]]:
    """`chattr FLAGS PATH` (the real tool); every flag set is cleared at the end, so the
    test's directory can be removed. Skips where the filesystem has no such flags."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    done: list[Path] = []

    def run(path: Path, flags: str) -> None:
        proc = subprocess.run(["chattr", flags, str(path)], capture_output=True, check=False)
        if proc.returncode:
            pytest.skip(f"chattr {flags}: {proc.stderr.decode(errors='replace').strip()}")
        done.append(path)

    yield run
    for path in done:
        subprocess.run(["chattr", "-i", "-a", str(path)], capture_output=True, check=False)


def _pinned_pair(tmp: Path) -> tuple[Path, Path, Path]:
    """OLD (a, b, c, d/x, e/, /var/lib), NEW with a and b changed, c's mode changed, d/x
    removed, e/new added; and the delta."""
    old, new = tmp / "old", tmp / "new"
    for d in ("var/lib", "d", "e"):
        (old / d).mkdir(parents=True)
    for name in ("a", "b", "c", "d/x"):
        (old / name).write_bytes(b"1\n")
    clone(old, new)
    (new / "a").write_bytes(b"2\n")
    (new / "b").write_bytes(b"2\n")
    os.chmod(new / "c", 0o600)
    (new / "d/x").unlink()
    (new / "e/new").write_bytes(b"new\n")
    delta = tmp / "d.delta"
    pack(str(old), str(new), delta)
    return old, new, delta


@pytest.mark.parametrize(
    ("path", "flags"),
    [("b", "+i"), ("b", "+a"), ("c", "+a"), ("d", "+a"), ("e", "+i"), ("var/lib", "+i")],
    ids=["replaced-immutable", "replaced-append-only", "mode-of-append-only",
         "removed-from-append-only-dir", "added-to-immutable-dir", "state-parent-immutable"],
)  # fmt: skip
def test_immutable_or_append_only_path_the_delta_changes_is_refused_before_anything_is_written(
    tmp_path: Path, chattr: Callable[[Path, str], None], path: str, flags: str
) -> None:
    """The commit died half way with EPERM (exit 4), the journal left in "commit"."""
    old, new, delta = _pinned_pair(tmp_path)
    tree = clone(old, tmp_path / "tree")
    chattr(tree / path, flags)
    before = listing(tree)
    with pytest.raises(BadInput, match=f"/{path} is (immutable|append-only).*chattr -"):
        apply(delta=str(delta), tree=str(tree))
    assert listing_diff(before, listing(tree)) == []
    assert not _state(tree).exists()
    chattr(tree / path, flags.replace("+", "-"))
    apply(delta=str(delta), tree=str(tree))
    assert_tree_is(new, tree, root_mtime=False)


@pytest.mark.parametrize("then", ["rollback", "apply"])
def test_path_made_immutable_during_the_commit_stops_it_as_bad_input_and_the_journal_recovers(
    tmp_path: Path, chattr: Callable[[Path, str], None], then: str
) -> None:
    """/b made immutable after the check, just as the commit begins: exit 3 naming it
    (not 4), the journal kept; rollback (the flag still set) gives OLD, or apply again
    once the flag is cleared finishes."""
    old, new, delta = _pinned_pair(tmp_path)
    counted = clone(old, tmp_path / "count")
    with crash_at(None) as steps:
        apply(delta=str(delta), tree=str(counted))
    first_aside = steps.index("link")  # the commit's first step: /a kept in undo/
    tree = clone(old, tmp_path / "tree")
    with (
        pytest.raises(BadInput, match=r"cannot change /b: .*immutable.*journal is kept") as info,
        meddle_at(first_aside, lambda: chattr(tree / "b", "+i")),
    ):
        apply(delta=str(delta), tree=str(tree))
    assert "\n" not in str(info.value)
    assert _phase(tree) == "commit"
    if then == "rollback":
        rollback(tree=str(tree))
        assert_tree_is(old, tree, root_mtime=True)
    else:
        chattr(tree / "b", "-i")
        assert apply(delta=str(delta), tree=str(tree)).resumed
        assert_tree_is(new, tree, root_mtime=False)


def test_a_sparse_file_stays_sparse_through_an_apply(tmp_path: Path) -> None:
    """Staged files were written whole: a lastlog of a system with large uids is terabytes
    of zeros. Aligned zero blocks are now holes."""
    old = tmp_path / "old"
    (old / "var/log").mkdir(parents=True)
    (old / "var/lib").mkdir()
    (old / "var/log/lastlog").write_bytes(b"")
    new = tmp_path / "new"
    shutil.copytree(old, new, symlinks=True)
    size = 64 * MiB
    with open(new / "var/log/lastlog", "r+b") as fh:
        fh.write(b"head")
        fh.seek(size - 4)
        fh.write(b"tail")
    assert os.stat(new / "var/log/lastlog").st_blocks * 512 < MiB
    delta = tmp_path / "d.idd"
    pack(str(old), str(new), str(delta))
    tree = tmp_path / "tree"
    shutil.copytree(old, tree, symlinks=True)
    round_trip(old, new, delta, tree)
    apply(delta=str(delta), tree=str(tree))
    placed = tree / "var/log/lastlog"
    assert placed.read_bytes() == (new / "var/log/lastlog").read_bytes()
    assert os.stat(placed).st_size == size
    assert os.stat(placed).st_blocks * 512 < MiB

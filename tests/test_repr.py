"""Reprs of results stay short whatever they hold: counts and the first few items."""

from __future__ import annotations

from pathlib import Path

import pytest

import imgdiff
from imgdiff import Manifest
from imgdiff.manifest import ImageInfo
from imgdiff.model import Change, Entry, EntryType, ImageWarning
from imgdiff.results import (
    Delta,
    DeltaStats,
    Drift,
    Evidence,
    Impact,
    PackageChange,
    PackageDelta,
    Plan,
    ProcessImpact,
    Reason,
    StaleProcess,
    StaleReport,
    Step,
    Verdict,
)
from imgdiff.runtime.snapshot import FileUse, Gap, Process, Snapshot

CORPUS = Path("/var/tmp/imgdiff-corpus")
N = 20_000  # items per collection: far more than any repr may show
LONG = "/" + "x" * 5000  # a path far longer than any repr may show


def _entry(path: str) -> Entry:
    return Entry(path, EntryType.FILE, size=3, digest="blake3:" + "0" * 64)


def _change(i: int) -> Change:
    path = f"/usr/lib/f{i:05}"
    return Change(path, "modified", (), _entry(path), _entry(path), "elf-library")


def _evidence(i: int) -> Evidence:
    return Evidence(f"/usr/lib/f{i:05}", "mapped", "modified", "elf-library")


def _huge_delta() -> Delta:
    info = ImageInfo(LONG, "dir", N, N, 3 * N)
    stats = DeltaStats(0, 0, N, 0, 0, 0, 0, 3 * N, 1.0, 1.0,
                       {f"/d{i}": {"modified": 1} for i in range(N)},
                       {f"kind{i}": 1 for i in range(N)})  # fmt: skip
    changes = tuple(_change(i) for i in range(N))
    warnings = tuple(ImageWarning(LONG, "unreadable " * 500) for _ in range(N))
    return Delta(info, info, changes, stats, warnings)


def _huge_verdict() -> Verdict:
    evidence = tuple(_evidence(i) for i in range(N))
    process = ProcessImpact(7, 1, "a.service", LONG, (LONG,) * N, evidence)
    step = Step("a.service", tuple(range(N)), evidence, (LONG,) * N, processes=(process,) * N)
    reasons = tuple(Reason("why " * 1000, "in-use") for _ in range(N))
    return Verdict("restart", reasons, (step,) * N, (LONG,) * N)


def _huge_snapshot() -> Snapshot:
    files = tuple(FileUse(f"/usr/lib/f{i}", "mapped") for i in range(N))
    process = Process(7, 1, 1, 0, "app", LONG, (LONG,) * N, "/", "/", None, None, "/", None,
                      files)  # fmt: skip
    return Snapshot("b", 0.0, "h", (process,) * N, (Gap(1, "denied " * 1000),) * N)


def test_every_result_repr_is_short_whatever_it_holds() -> None:
    delta, verdict, snap = _huge_delta(), _huge_verdict(), _huge_snapshot()
    stale = StaleProcess(7, 1, "a.service", "app", LONG, verdict.steps[0].reasons)
    impact = Impact(verdict.steps[0].processes, N, snap.gaps, tuple(range(N)))
    drift = Drift((LONG,) * N, False, (LONG,) * N)
    package = PackageChange("dpkg", "a", "amd64", "upgraded", "1", "2", (LONG,) * N)
    results = [
        delta, delta.stats, delta.changes[0], delta.changes[0].new, verdict, verdict.steps[0],
        verdict.steps[0].processes[0], snap, snap.processes[0], stale, impact, drift, package,
        StaleReport((stale,) * N, snap.gaps), PackageDelta((package,) * N, (LONG,) * N, ()),
        Plan(verdict, delta, impact, drift, {f"s{i}": 1.0 for i in range(N)}),
    ]  # fmt: skip
    for result in results:
        text = repr(result)
        assert len(text) < 1500, (type(result).__name__, len(text))
        assert text.startswith(type(result).__name__ + "(")
    assert f"... {N} in all" in repr(delta)
    assert "Change('/usr/lib/f00000', 'modified', kind='elf-library')" in repr(delta)
    assert "Step(restart a.service" in repr(verdict)
    assert f"{N} evidence" in repr(impact)
    assert "Process(pid=7, 'app', unit=None, 20000 files)" in repr(snap)


def test_small_records_show_every_field() -> None:
    evidence = _evidence(1)
    assert repr(evidence) == (
        "Evidence(path='/usr/lib/f00001', via='mapped', status='modified', "
        "kind='elf-library', detail='', confirmed=True)"
    )
    assert repr(Reason("a reason", "in-use")) == "Reason('a reason', 'in-use')"
    assert repr((1,)) == "(1,)"


def test_short_reprs_leave_equality_and_hashing_alone() -> None:
    assert _evidence(1) == _evidence(1)
    assert hash(_evidence(1)) == hash(_evidence(1))
    assert _evidence(1) != _evidence(2)
    assert _change(1) == _change(1)
    assert hash(_change(1)) == hash(_change(1))
    step = Step("a.service", (7,), (_evidence(1),))
    assert Verdict("restart", ("why",), (step,)) == Verdict("restart", ("why",), (step,))
    assert hash(step) == hash(Step("a.service", (7,), (_evidence(1),)))
    with pytest.raises(TypeError):
        hash(_huge_delta())  # holds dicts: unhashable, as before


@pytest.mark.skipif(not (CORPUS / "old.tar").exists(), reason="needs the real image pair")
def test_real_pair_reprs_are_short_and_say_what_they_hold() -> None:
    old = Manifest.read(str(CORPUS / "old.tar"))
    delta = imgdiff.diff(old, str(CORPUS / "new.tar"))
    text = repr(delta)
    assert len(text) < 1000
    assert f"... {len(delta.changes)} in all" in text
    first = delta.changes[0]
    assert f"Change({first.path!r}, {first.status.value!r}, kind={first.kind.value!r})" in text
    stats = delta.stats
    summary = f"DeltaStats(added={stats.added}, removed={stats.removed}, modified={stats.modified})"
    assert summary in text
    shown = repr(old)
    assert len(shown) < 400
    assert f"entries={len(old)}" in shown
    assert f"... {len(old)} in all" in shown
    assert "format='tar'" in shown

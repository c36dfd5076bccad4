"""JSON documents of the public contract (docs/contract.md): stable keys, `schema` versioned.

Every result's document is written here and nowhere else (`document` picks it by the
result's type; `results.Rendered.to_json` calls it); the snapshot's document stays beside
`Snapshot.load`, which reads it back. This module builds dicts and spells them (`dumps`,
and `write`, which encodes a large array an element at a time); it opens no file and
holds no logic.
Paths that are not valid UTF-8 travel as `os.fsdecode` strings; `json.dumps` with its
default `ensure_ascii=True` writes their lone surrogates as `\\udcXX` escapes, so
`os.fsencode(path)` gives back the exact bytes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TextIO

import attrs

from imgdiff.model import Change, Entry, ImageWarning
from imgdiff.results import (
    ApplyResult,
    CheckResult,
    Delta,
    DeltaStats,
    DemoRun,
    Evidence,
    Impact,
    PackageChange,
    PackageDelta,
    PackResult,
    Plan,
    StaleReport,
    Verdict,
    Verification,
)
from imgdiff.runtime.snapshot import Snapshot

DELTA_SCHEMA = "imgdiff.delta/1"
PACKAGES_SCHEMA = "imgdiff.packages/1"
STALE_SCHEMA = "imgdiff.stale/1"
VERDICT_SCHEMA = "imgdiff.verdict/1"
VERIFY_SCHEMA = "imgdiff.verify/1"
PACK_SCHEMA = "imgdiff.pack/1"
APPLY_SCHEMA = "imgdiff.apply/1"
CHECK_SCHEMA = "imgdiff.check/1"


@functools.singledispatch
def document(result: object) -> dict[str, Any]:
    """The JSON document of a result (what `--json` prints)."""
    raise TypeError(f"no JSON document for {type(result).__name__}")


def entry_json(entry: Entry | None) -> dict[str, Any] | None:
    """One side of a change."""
    if entry is None:
        return None
    doc = {
        "type": entry.type.value,
        "mode": entry.mode,
        "uid": entry.uid,
        "gid": entry.gid,
        "size": entry.size,
        "mtime_ns": entry.mtime_ns,
        "target": entry.target,
        "hardlink": entry.hardlink,
        "rdev": list(entry.rdev) if entry.rdev else None,
        "xattrs": {k: v.hex() for k, v in entry.xattrs},
        "digest": entry.digest,
    }
    if entry.implicit:  # additive: a directory the archive implies but does not list
        doc["implicit"] = True
    return doc


def change_json(change: Change, *, owners: bool = True) -> dict[str, Any]:
    """One element of "changes"; `packages` (additive) only when `owners` were looked up."""
    doc: dict[str, Any] = {
        "path": change.path,
        "status": change.status.value,
        "aspects": [a.value for a in change.aspects],
        "kind": change.kind,
        "packages": list(change.packages),
        "old": entry_json(change.old),
        "new": entry_json(change.new),
    }
    if not owners:
        del doc["packages"]
    return doc


def stats_json(stats: DeltaStats) -> dict[str, Any]:
    """The object under a delta's "stats"."""
    return {
        **attrs.asdict(stats, recurse=False),
        "by_top": {k: dict(v) for k, v in stats.by_top.items()},
        "by_kind": dict(stats.by_kind),
    }


def _warnings(warnings: Sequence[ImageWarning]) -> list[dict[str, str]]:
    """A result's "warnings": what a reader could not read exactly."""
    return [{"path": w.path, "message": w.message} for w in warnings]


@document.register
def delta_doc(delta: Delta) -> dict[str, Any]:
    """The `imgdiff diff --json` document."""
    doc = _lazy_delta_doc(delta)
    doc["changes"] = list(doc["changes"])
    return doc


def _lazy_delta_doc(delta: Delta) -> dict[str, Any]:
    """`delta_doc` with "changes" an iterator, each change's dict made as it is written."""
    return {
        "schema": DELTA_SCHEMA,
        "old": delta.old.to_json(),
        "new": delta.new.to_json(),
        "stats": stats_json(delta.stats),
        "changes": (change_json(c, owners=delta.owners) for c in delta.changes),
        "warnings": _warnings(delta.warnings),
    }


@document.register
def packages_doc(pdelta: PackageDelta) -> dict[str, Any]:
    """The `imgdiff packages --json` document."""
    return {
        "schema": PACKAGES_SCHEMA,
        "changes": [_package_change(c) for c in pdelta.changes],
        "unowned": list(pdelta.unowned),
        "modified_locally": [attrs.asdict(m) for m in pdelta.modified_locally],
        "warnings": _warnings(pdelta.warnings),
    }


def _package_change(change: PackageChange) -> dict[str, Any]:
    """One element of "changes"; `location` (additive) only where there is one (pip)."""
    doc = attrs.asdict(change)
    if not change.location:
        del doc["location"]
    return doc


@document.register
def impact_doc(impact: Impact) -> dict[str, Any]:
    """A plain document of an impact (no schema: the verdict's is the contract)."""
    return attrs.asdict(impact)


@document.register
def stale_doc(report: StaleReport) -> dict[str, Any]:
    """The `imgdiff stale --json` document."""
    return {
        "schema": STALE_SCHEMA,
        "processes": [
            {
                "pid": p.pid,
                "start_time": p.start_time,
                "unit": p.unit,
                "comm": p.comm,
                "exe": p.exe,
                "reasons": [_reason(e) for e in p.reasons],
            }
            for p in report.processes
        ],
        "gaps": [attrs.asdict(g) for g in report.gaps],
        # additive: the root checked, how many processes run in it, the image given as
        # the tree before the update (`--against`)
        "root": report.root,
        "considered": report.considered,
        "against": report.against,
    }


def _reason(e: Evidence) -> dict[str, Any]:
    # `confirmed` (additive): false when the evidence rests on an inference (a ctime, a
    # new inode whose bytes were not compared, a program assumed for an unreadable process)
    return {"path": e.path, "via": e.via, "detail": e.detail, "confirmed": e.confirmed}


@document.register
def verdict_doc(verdict: Verdict) -> dict[str, Any]:
    """The `imgdiff plan --json` document (`imgdiff.verdict/1`)."""
    return {
        "schema": VERDICT_SCHEMA,
        "verdict": verdict.verdict,
        "reasons": list(verdict.reasons),
        "reason_codes": [r.code.value for r in verdict.reasons],  # additive: one per reason
        "steps": [
            {
                "unit": s.unit,
                "action": s.action,
                "batch": s.batch,
                "pids": list(s.pids),
                "commands": list(s.commands),
                # additive: a step with no unit names its process tree's top and command line
                "main_pid": s.main_pid,
                "command": s.command,
                "reasons": [_reason(e) for e in s.reasons],
                "processes": [
                    {
                        "pid": p.pid,
                        "command": p.command,
                        "reasons": [_reason(e) for e in p.evidence],
                    }
                    for p in s.processes
                ],
            }
            for s in verdict.steps
        ],
        "uninspected": list(verdict.uninspected),
    }


@document.register
def plan_doc(plan: Plan) -> dict[str, Any]:
    """A plan's document is its verdict's."""
    return verdict_doc(plan.verdict)


@document.register
def demo_doc(run: DemoRun) -> dict[str, Any]:
    """`imgdiff demo --json`: the verdict, and the services' pids by name."""
    return {**verdict_doc(run.verdict), "demo_pids": dict(run.pids)}


@document.register
def snapshot_doc(snap: Snapshot) -> dict[str, Any]:
    """The `imgdiff snapshot --json` document (written beside `Snapshot.load`)."""
    return snap.to_json()


@document.register
def verification_doc(result: Verification) -> dict[str, Any]:
    """The `imgdiff verify --json` document."""
    return {
        "schema": VERIFY_SCHEMA,
        "tree": result.tree,
        "image": result.image,
        "matches": result.matches,
        "differences": _differences(result.differences),
        "ignored": list(result.ignored),
    }


def _differences(changes: Sequence[Change]) -> list[dict[str, Any]]:
    """How a tree differs from its image (`verify`'s and `check`'s "differences")."""
    return [
        {"path": c.path, "status": c.status.value, "aspects": [a.value for a in c.aspects]}
        for c in changes
    ]


# what `json.dumps(doc, ensure_ascii=True, separators=(",", ":"))` uses, made once
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))
_BATCH = 1024  # array elements encoded, joined and written at a time by `write`


def dumps(doc: dict[str, Any]) -> str:
    """Serialise a document as compact ASCII JSON (lone surrogates escaped).

    No indentation: `indent` makes the json module fall back to its pure-Python encoder,
    4x slower on a large delta. Pipe through `jq .` to read it.
    """
    return _ENCODER.encode(doc)


def write(result: object, out: TextIO) -> None:
    """Write `dumps(document(result))` to `out` in pieces, the same text: a delta's
    changes are made into dicts and encoded a batch at a time, so neither the whole
    document nor its text is ever held (a million changes would take gigabytes)."""
    doc = _lazy_delta_doc(result) if isinstance(result, Delta) else document(result)
    for piece in _pieces(doc):
        out.write(piece)


def _pieces(doc: Mapping[str, Any]) -> Iterator[str]:
    """The text of `doc` as `dumps` spells it, a value that is an iterator written as an
    array of its elements (the C encoder's separators: "," between items, ":" after keys)."""
    if not doc:
        yield "{}"
        return
    opening = "{"
    for key, value in doc.items():
        yield f"{opening}{_ENCODER.encode(key)}:"
        opening = ","
        if not isinstance(value, Iterator):
            yield _ENCODER.encode(value)
            continue
        yield "["
        batch: list[str] = []
        first = True
        for item in value:
            batch.append(_ENCODER.encode(item))
            if len(batch) == _BATCH:
                yield ("" if first else ",") + ",".join(batch)
                batch.clear()
                first = False
        if batch:
            yield ("" if first else ",") + ",".join(batch)
        yield "]"
    yield "}"


@document.register
def pack_doc(result: PackResult) -> dict[str, Any]:
    """The `imgdiff pack --json` document."""
    return {"schema": PACK_SCHEMA, **attrs.asdict(result)}


@document.register
def apply_doc(result: ApplyResult) -> dict[str, Any]:
    """The `imgdiff apply --json` and `imgdiff rollback --json` document."""
    return {"schema": APPLY_SCHEMA, **attrs.asdict(result)}


@document.register
def check_doc(result: CheckResult) -> dict[str, Any]:
    """The `imgdiff check --json` document (the contract's keys, then ours)."""
    return {
        "schema": CHECK_SCHEMA,
        "ok": result.ok,
        "files": list(result.files),
        "processes": stale_doc(result.stale)["processes"],
        "tree": result.tree,
        "image": result.image,
        "differences": _differences(result.differences),
    }

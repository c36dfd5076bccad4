"""JSON documents of the public contract (see DESIGN.md): stable keys, `schema` versioned.

Paths that are not valid UTF-8 travel as `os.fsdecode` strings; `json.dumps` with its
default `ensure_ascii=True` writes their lone surrogates as `\\udcXX` escapes, so
`os.fsencode(path)` gives back the exact bytes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from imgdiff.model import Change, Entry

if TYPE_CHECKING:  # the model renders itself through these: import it lazily
    from imgdiff.delta import Delta

DELTA_SCHEMA = "imgdiff.delta/1"


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


def change_json(change: Change) -> dict[str, Any]:
    """One element of "changes"."""
    return {
        "path": change.path,
        "status": change.status.value,
        "aspects": [a.value for a in change.aspects],
        "kind": change.kind,
        "packages": list(change.packages),
        "old": entry_json(change.old),
        "new": entry_json(change.new),
    }


def delta_doc(delta: Delta) -> dict[str, Any]:
    """The `imgdiff diff --json` document."""
    return {
        "schema": DELTA_SCHEMA,
        "old": delta.old.to_json(),
        "new": delta.new.to_json(),
        "stats": delta.stats.to_json(),
        "changes": [change_json(c) for c in delta.changes],
        "warnings": [{"path": w.path, "message": w.message} for w in delta.warnings],
    }


def dumps(doc: dict[str, Any]) -> str:
    """Serialise a document as compact ASCII JSON (lone surrogates escaped).

    No indentation: `indent` makes the json module fall back to its pure-Python encoder,
    4x slower on a large delta. Pipe through `jq .` to read it.
    """
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":"))

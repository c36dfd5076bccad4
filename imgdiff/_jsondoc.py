"""Checks for JSON documents imgdiff reads back (snapshots, manifests): untrusted input.

They raise `TypeError` or `ValueError` naming the key; callers turn that into `BadInput`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from imgdiff.fs.paths import canonical

Types = dict[str, type | tuple[type, ...]]


def as_list(value: Any, what: str) -> list[Any]:
    """`value`, which must be a JSON array."""
    if not isinstance(value, list):
        raise TypeError(f"{what} is not a list")
    return value


def check_types(
    doc: Any,
    types: Types,
    what: str,
    required: Collection[str] = (),
    minimums: Mapping[str, int] | None = None,
) -> None:
    """Every key known and of its JSON type (a bool is not an int here); every one of
    `required` present; an integer no less than its `minimums` entry (the schema's
    "minimum": a pid of -1 would reach the verdict's steps)."""
    if not isinstance(doc, dict):
        raise TypeError(f"a {what} is not an object")
    for key, value in doc.items():
        want = types.get(key)
        if type(value) is want:
            continue  # the common case, exactly the type asked for (bool is not int here)
        if want is None:
            raise ValueError(f"unknown {what} key {key!r}")
        kinds = want if isinstance(want, tuple) else (want,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise ValueError(f"{what} key {key!r} has a {type(value).__name__}")
    for key in required:
        if key not in doc:
            raise ValueError(f"{what} key {key!r} is missing")
    for key, low in (minimums or {}).items():
        value = doc.get(key)
        if isinstance(value, int) and value < low:
            raise ValueError(f"{what} key {key!r} is {value}, less than {low}")


def check_root(path: str, what: str) -> None:
    """`path` must be absolute and normalised, as `/proc/PID/root` reads: a relative one
    would be read against the reader's working directory, not the host's."""
    if (path != "/" and not canonical(path)) or "\0" in path:
        raise ValueError(f"{what} {path!r} is not an absolute, normalised path")

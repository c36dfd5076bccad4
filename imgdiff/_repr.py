"""Short reprs for records that can hold thousands of items (a delta's changes, a
snapshot's processes): counts and the first few items, as pandas shows a frame.

A record opts in with `__repr__ = short_repr` in its class body (attrs then keeps it) and
may define `_summary()`, the one line that stands for it inside another record's repr.
Whatever a record holds, its repr stays short: at most `ITEMS` items of each collection,
`TEXT` characters of each string; past `DEPTH` levels of nesting, a collection is its
count and a record its summary (or its bare name).
Nothing here changes equality or hashing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

ITEMS = 3  # items shown of each collection
TEXT = 80  # characters shown of each string
DEPTH = 2  # levels of nesting shown in full (bounded); deeper ones as counts and names


def text(value: str) -> str:
    """The repr of a string, cut to `TEXT` characters."""
    if len(value) <= TEXT:
        return repr(str(value))
    return repr(str(value)[: TEXT - 3]) + "..."


def count(n: int, noun: str) -> str:
    """`n` and the noun, plural unless `n` is 1 ("1 change", "2 changes")."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun}es" if noun.endswith("s") else f"{n} {noun}s"


def items(values: Any, depth: int = 1) -> str:
    """A collection as its first `ITEMS` items (each shown at `depth`) and how many it
    holds in all."""
    if isinstance(values, Mapping):
        shown = [f"{short(k, depth)}: {short(v, depth)}" for k, v in _first(values.items())]
        open_, close = "{", "}"
    else:
        shown = [short(v, depth) for v in _first(values)]
        open_, close = ("[", "]") if isinstance(values, list) else ("(", ")")
    if len(values) > ITEMS:
        shown.append(f"... {len(values)} in all")
    elif isinstance(values, tuple) and len(values) == 1:
        return f"({shown[0]},)"
    return open_ + ", ".join(shown) + close


def _first(values: Any) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if len(out) == ITEMS:
            break
        out.append(value)
    return out


def short(value: Any, depth: int = 0) -> str:
    """A value's repr, bounded: strings and collections cut, records below the top
    shown by their summary, and by name only from `DEPTH` down."""
    if isinstance(value, enum.Enum):
        return repr(value.value)
    if isinstance(value, str):
        own = repr(value)
        return own if len(own) <= TEXT + 2 else text(value)  # a Reason keeps its code
    if isinstance(value, bytes):
        return repr(value[:TEXT]) + ("..." if len(value) > TEXT else "")
    if isinstance(value, (tuple, list, set, frozenset, Mapping)):
        return f"<{len(value)} items>" if depth > DEPTH else items(value, depth + 1)
    if attrs.has(type(value)) or hasattr(value, "_summary"):
        summary = getattr(value, "_summary", None)
        if depth >= 1 and summary is not None:
            return str(summary())
        if depth > DEPTH or not attrs.has(type(value)):
            return f"{type(value).__name__}(...)"
        return fields(value, depth=depth)
    return repr(value)


def fields(record: Any, names: tuple[str, ...] | None = None, depth: int = 0) -> str:
    """`Name(field=value, ...)` of an attrs record at `depth`, every value bounded."""
    names = names or tuple(f.name for f in attrs.fields(type(record)) if f.repr)
    shown = ", ".join(f"{n}={short(getattr(record, n), depth + 1)}" for n in names)
    return f"{type(record).__name__}({shown})"


def short_repr(self: Any) -> str:
    """`__repr__` for a record that can be large."""
    return fields(self)

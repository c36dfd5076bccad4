"""Restart order from the NEW image's systemd unit files: dependencies first, in batches.

Unit files are read from the image (never from the host's systemd), with systemd's
precedence (`/etc` over `/run` over `/usr/lib`, `/lib` as its usr-merged twin) and
drop-ins (`NAME.d/*.conf`). `After=`, `Requires=`, `Requisite=` and `BindsTo=` order a
unit after the ones it names; `PartOf=`/`BindsTo=` also tie a restart of the named unit
to this one. Parsing only: nothing is executed, no unit is loaded.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Iterable, Mapping

UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
_ORDER_KEYS = ("After", "Requires", "Requisite", "BindsTo")
_MAX_UNIT_BYTES = 1 << 20


def is_unit_file(path: str) -> bool:
    """True for unit files and drop-ins in the system unit directories."""
    parent = posixpath.dirname(path)
    grand = posixpath.dirname(parent)
    return parent in UNIT_DIRS or (grand in UNIT_DIRS and path.endswith(".conf"))


def parse_unit(text: str) -> dict[str, list[str]]:
    """The [Unit] section's dependency directives (values split into unit names).

    An empty assignment (`After=`) resets the list, as systemd does for drop-ins; it is
    kept as an empty-string marker so a drop-in's reset also clears the main file's list.
    """
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "Unit" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if key in (*_ORDER_KEYS, "PartOf"):
            if not value.strip():
                out[key] = [""]
            else:
                out.setdefault(key, []).extend(value.split())
    return out


def dependencies(files: Mapping[str, bytes]) -> dict[str, set[str]]:
    """unit -> the units it must come after, from unit files and drop-ins by path."""
    chosen: dict[str, str] = {}
    for d in reversed(UNIT_DIRS):  # later (higher-precedence) dirs overwrite earlier ones
        for path in files:
            if posixpath.dirname(path) == d:
                chosen[posixpath.basename(path)] = path
    deps: dict[str, set[str]] = {}
    for unit, path in chosen.items():
        parsed = {k: _after_reset(v) for k, v in parse_unit(_text(files[path])).items()}
        for dropin in sorted(p for p in files if posixpath.dirname(p).endswith(f"/{unit}.d")):
            for key, names in parse_unit(_text(files[dropin])).items():
                base = [] if "" in names else parsed.get(key, [])
                parsed[key] = [*base, *_after_reset(names)]
        for key in _ORDER_KEYS:
            deps.setdefault(unit, set()).update(parsed.get(key, []))
        for other in parsed.get("PartOf", []) + parsed.get("BindsTo", []):
            # restarting `other` restarts this unit too: it comes after `other`
            deps.setdefault(unit, set()).add(other)
    return deps


def _after_reset(names: list[str]) -> list[str]:
    """The names after the last reset marker."""
    if "" in names:
        names = names[len(names) - names[::-1].index("") :]
    return names


def _text(data: bytes) -> str:
    return data[:_MAX_UNIT_BYTES].decode("utf-8", "replace")


def batches(units: Collection[str], deps: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """`units` in batches: each after every unit it (transitively) depends on; the units
    of one batch are independent and may restart in parallel. A cycle is broken by
    putting its members in the same batch, sorted by name."""
    wanted = set(units)
    needs: dict[str, set[str]] = {}
    for unit in wanted:
        seen: set[str] = set()
        stack = list(deps.get(unit, ()))
        while stack:  # reachability through units outside the plan too
            nxt = stack.pop()
            if nxt in seen:
                continue
            seen.add(nxt)
            stack.extend(deps.get(nxt, ()))
        needs[unit] = (seen & wanted) - {unit}
    out: list[list[str]] = []
    done: set[str] = set()
    while len(done) < len(wanted):
        ready = sorted(u for u in wanted - done if needs[u] <= done)
        if not ready:  # a cycle: take the rest of it together
            ready = sorted(wanted - done)
        out.append(ready)
        done.update(ready)
    return out

"""Rollout waves and the fleet summary, from every host's verdict.

This module owns the order in which hosts are updated: canaries first (a few hosts
covering every distinct (verdict, units) class, in as many waves as the bound below
needs), then the hosts that need nothing, then
restart batches in which at most `max_unavailable` of the hosts running any one unit
restart it at once, then reboots in waves of their own under the same bound (a rebooting
host takes down every unit it runs); hosts to reimage, and hosts whose report could not
be read, are listed apart. Pure: it reads nothing.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from imgdiff.fleet.host import HostVerdict
from imgdiff.results import StepAction, VerdictKind

_TOP_REASONS = 10
_REBOOTING = "(rebooting hosts)"  # not a unit: bounds how many hosts reboot in one wave


def _fraction(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"{attribute.name} must be a number in (0, 1], not {value!r}")


def _count(_: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a whole number from 1, not {value!r}")


@attrs.frozen
class RolloutPolicy:
    """The fleet's keys of a policy file (beside `plan.Policy`'s)."""

    # share of the hosts running any one unit that may restart it at once (also bounds
    # each reboot wave); at least one host per wave whatever the share
    max_unavailable: float = attrs.field(default=0.1, validator=_fraction)
    # canary hosts per distinct (verdict, units) class
    canaries: int = attrs.field(default=1, validator=_count)


@attrs.frozen
class Wave:
    """One step of the rollout: these hosts together."""

    number: int
    kind: str  # "canary", "no-action", "restart" or "reboot"
    hosts: tuple[int, ...]  # indexes into the fleet's hosts


def restarted_units(h: HostVerdict) -> tuple[str, ...]:
    """The units the host's plan restarts (or stops), "pid N" for bare processes."""
    if h.verdict is None:
        return ()
    out = []
    for s in h.verdict.steps:
        if s.action in (StepAction.RESTART, StepAction.STOP):
            out += [s.unit] if s.unit else [f"pid {p}" for p in s.pids]
    return tuple(sorted(set(out)))


def host_class(h: HostVerdict) -> tuple[str, tuple[str, ...]]:
    """(verdict, units restarted), bare processes counted as one "(processes)" unit."""
    assert h.verdict is not None
    units = tuple(u for u in restarted_units(h) if not u.startswith("pid "))
    if len(units) != len(restarted_units(h)):
        units = (*units, "(processes)")
    return (h.verdict.verdict.value, units)


def waves(hosts: Sequence[HostVerdict], rollout: RolloutPolicy) -> tuple[Wave, ...]:
    """The rollout, canaries first; reimage and error hosts are in no wave."""
    ok = [i for i, h in enumerate(hosts) if h.verdict is not None]
    kind = {i: hosts[i].verdict.verdict for i in ok}  # type: ignore[union-attr]
    # how many hosts run each unit: the bound of each wave
    running = collections.Counter(u for i in ok for u in hosts[i].running)
    limit = {u: max(1, math.floor(rollout.max_unavailable * n)) for u, n in running.items()}
    everyone = max(1, math.floor(rollout.max_unavailable * len(ok)))
    # canaries: the first hosts (input order) of every class but reimage
    seen: collections.Counter[tuple[str, tuple[str, ...]]] = collections.Counter()
    canaries = []
    for i in ok:
        if kind[i] is VerdictKind.REIMAGE:
            continue
        c = host_class(hosts[i])
        if seen[c] < rollout.canaries:
            seen[c] += 1
            canaries.append(i)
    chosen = set(canaries)
    out: list[Wave] = []
    # canaries are under the bound of the waves after them: what a restart restarts, what
    # a reboot takes down (every unit, and one of at most `everyone` hosts)
    canary_limit = limit | {_REBOOTING: everyone}

    def down(i: int) -> tuple[str, ...]:
        if kind[i] is VerdictKind.REBOOT:
            return (*hosts[i].running, _REBOOTING)
        return restarted_units(hosts[i]) if kind[i] is VerdictKind.RESTART else ()

    for batch in _batches(canaries, down, canary_limit, None):
        out.append(Wave(len(out) + 1, "canary", batch))
    idle = [i for i in ok if kind[i] is VerdictKind.NO_ACTION and i not in chosen]
    if idle:
        out.append(Wave(len(out) + 1, "no-action", tuple(idle)))
    restart = [i for i in ok if kind[i] is VerdictKind.RESTART and i not in chosen]
    for batch in _batches(restart, lambda i: restarted_units(hosts[i]), limit, None):
        out.append(Wave(len(out) + 1, "restart", batch))
    reboot = [i for i in ok if kind[i] is VerdictKind.REBOOT and i not in chosen]
    for batch in _batches(reboot, lambda i: hosts[i].running, limit, everyone):
        out.append(Wave(len(out) + 1, "reboot", batch))
    return tuple(out)


def _batches(
    todo: Sequence[int],
    units_of: Any,
    limit: dict[str, int],
    size: int | None,
) -> Iterable[tuple[int, ...]]:
    """First-fit batches: each host joins the first batch where every unit it takes
    down stays within its limit (and the batch within `size`), hosts with the most
    units placed first."""
    order = sorted(todo, key=lambda i: (-len(units_of(i)), i))
    batches: list[tuple[list[int], collections.Counter[str]]] = []
    for i in order:
        units = units_of(i)
        for members, load in batches:
            if size is not None and len(members) >= size:
                continue
            if all(load[u] < limit.get(u, 1) for u in units):
                members.append(i)
                load.update(units)
                break
        else:
            batches.append(([i], collections.Counter(units)))
    return [tuple(sorted(members)) for members, _ in batches]


def summary(hosts: Sequence[HostVerdict]) -> dict[str, Any]:
    """Hosts per verdict, the top reasons, per unit how many hosts restart it (hosts
    whose verdict is restart), and the
    hosts that drifted or missed an update (by their snapshot path)."""
    verdicts = collections.Counter(
        h.verdict.verdict.value if h.verdict is not None else "error" for h in hosts
    )
    reasons: collections.Counter[str] = collections.Counter()
    example: dict[str, str] = {}
    for h in hosts:
        if h.verdict is None:
            continue
        for r in h.verdict.reasons:
            example.setdefault(r.code.value, str(r))
        reasons.update({r.code.value for r in h.verdict.reasons})  # hosts, not reasons
    # a reboot or reimage supersedes the restart steps it carries
    units = collections.Counter(
        u
        for h in hosts
        if h.verdict is not None and h.verdict.verdict is VerdictKind.RESTART
        for u in host_class(h)[1]
    )
    return {
        "hosts": len(hosts),
        "verdicts": {k.value: verdicts.get(k.value, 0) for k in VerdictKind}
        | {"error": verdicts.get("error", 0)},
        "top_reasons": [
            {"code": code, "hosts": n, "example": example[code]}
            for code, n in reasons.most_common(_TOP_REASONS)
        ],
        "units": dict(sorted(units.items(), key=lambda kv: (-kv[1], kv[0]))),
        "drifted": [h.snapshot for h in hosts if h.drifted],
        "missed_update": [h.snapshot for h in hosts if h.behind],
    }

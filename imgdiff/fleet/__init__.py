"""The fleet: one update's verdict for many hosts, from their reports, on Dask.

`plan(old, new, reports, client=None)` reads OLD and NEW once, gives every host exactly
the verdict single-host `imgdiff plan` gives its report, and returns a `FleetVerdict`:
those verdicts, a summary and rollout waves (`waves`). The work runs on Dask distributed
(the `fleet` extra): a local cluster by default, or the caller's `client`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from imgdiff.errors import BadInput
from imgdiff.fleet.host import HostVerdict
from imgdiff.fleet.waves import RolloutPolicy, Wave, host_class, summary, waves
from imgdiff.plan import Policy, read_policy_file

__all__ = ["FleetVerdict", "HostVerdict", "RolloutPolicy", "Wave", "load_policy", "plan"]

# the columns of `FleetVerdict.to_pandas()`, with hosts or none
HOST_COLUMNS = (
    "snapshot", "host", "verdict", "wave", "units", "steps", "drifted", "behind", "error",
)  # fmt: skip

SCHEMA = "imgdiff.fleet/1"


@attrs.frozen(eq=False)
class FleetVerdict:
    """Every host's verdict, the summary and the rollout waves."""

    hosts: tuple[HostVerdict, ...]
    summary: dict[str, Any]
    waves: tuple[Wave, ...]
    rollout: RolloutPolicy = attrs.field(factory=RolloutPolicy)
    # seconds: "images" (OLD and NEW read once), "programs" (their graphs and closures),
    # "drift" (this machine's root, for a plain snapshot of its boot), "hosts" (every
    # host planned on the cluster)
    timings: dict[str, float] = attrs.field(factory=dict)

    def wave_of(self) -> dict[int, int]:
        """Host index → the wave it is in (reimage and error hosts: in none)."""
        return {i: w.number for w in self.waves for i in w.hosts}

    def to_json(self) -> dict[str, Any]:
        """The `imgdiff.fleet/1` document (docs/fleet.md)."""
        from imgdiff.report.json import verdict_doc

        wave = self.wave_of()
        hosts = []
        for i, h in enumerate(self.hosts):
            doc: dict[str, Any] = {"snapshot": h.snapshot, "host": h.host}
            if h.verdict is not None:
                body = verdict_doc(h.verdict)
                del body["schema"]
                doc |= body
            else:
                doc |= {"verdict": None, "reasons": [], "steps": []}
            doc |= {
                "error": h.error,
                "machine_id": h.machine_id,
                "drifted": h.drifted,
                "behind": list(h.behind),
                "wave": wave.get(i),
            }
            hosts.append(doc)
        return {
            "schema": SCHEMA,
            "hosts": hosts,
            "summary": self.summary,
            "waves": [
                {
                    "wave": w.number,
                    "kind": w.kind,
                    "hosts": [self.hosts[i].host for i in w.hosts],
                    "snapshots": [self.hosts[i].snapshot for i in w.hosts],
                }
                for w in self.waves
            ],
            "reimage": [h.snapshot for h in self.hosts if _kind(h) == "reimage"],
            "errors": [{"snapshot": h.snapshot, "error": h.error} for h in self.hosts if h.error],
            "rollout": attrs.asdict(self.rollout),
        }

    def to_pandas(self) -> Any:
        """One row per host: snapshot, host, verdict, wave, units restarted, error
        (pandas is not a dependency: a clear error says how to get it)."""
        from imgdiff.report.notebook import _frame

        wave = self.wave_of()
        return _frame(
            [
                {
                    "snapshot": h.snapshot,
                    "host": h.host,
                    "verdict": _kind(h),
                    "wave": wave.get(i),
                    "units": ", ".join(host_class(h)[1]) if h.verdict is not None else "",
                    "steps": len(h.verdict.steps) if h.verdict is not None else 0,
                    "drifted": h.drifted,
                    "behind": len(h.behind),
                    "error": h.error,
                }
                for i, h in enumerate(self.hosts)
            ],
            HOST_COLUMNS,
        )

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from imgdiff.fleet.render import console_view

        yield console_view(self)

    def _repr_html_(self) -> str:
        from imgdiff.fleet.render import html_view

        return html_view(self)


def _kind(h: HostVerdict) -> str:
    return h.verdict.verdict.value if h.verdict is not None else "error"


def load_policy(path: str | os.PathLike[str]) -> tuple[Policy, RolloutPolicy]:
    """A policy file with the fleet's keys (`max_unavailable`, `canaries`) beside
    `plan.Policy`'s; either part may be absent."""
    name = os.fspath(path)
    doc = read_policy_file(path)
    fleet_keys = {f.name for f in attrs.fields(RolloutPolicy)}
    plan_keys = {f.name for f in attrs.fields(Policy)}
    unknown = set(doc) - fleet_keys - plan_keys
    if unknown:
        raise BadInput(name, f"unknown policy keys: {', '.join(sorted(unknown))}")
    rollout_values = {k: v for k, v in doc.items() if k in fleet_keys}
    if isinstance(rollout_values.get("max_unavailable"), str):  # "10%"
        text = rollout_values["max_unavailable"].strip()
        try:
            rollout_values["max_unavailable"] = float(text.rstrip("%")) / 100
        except ValueError:
            raise BadInput(name, f"bad policy: max_unavailable {text!r}") from None
    plan_values: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in doc.items() if k in plan_keys
    }
    try:
        return Policy(**plan_values), RolloutPolicy(**rollout_values)
    except (TypeError, ValueError) as exc:
        raise BadInput(name, f"bad policy: {exc}") from None


def plan(
    old: str,
    new: str,
    reports: Sequence[str],
    client: Any = None,
    *,
    policy: Policy | None = None,
    rollout: RolloutPolicy | None = None,
    use_cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
    scheduler: str | None = None,
) -> FleetVerdict:
    """Every host's verdict for updating from OLD to NEW, a summary and rollout waves.

    `reports` are host reports or saved snapshots (files, or directories of `*.json`).
    The work runs on `client` (a `distributed.Client`), else on the scheduler at
    `scheduler`, else on a local cluster started and stopped here. The workers must
    be able to read the report files; OLD and NEW are read here only.
    """
    from imgdiff.fleet import engine
    from imgdiff.fleet.host import prepare

    paths = engine.expand(reports)
    rollout = rollout or RolloutPolicy()
    # the cluster first: an unreachable scheduler is said before the images are read
    with contextlib.nullcontext(client) if client is not None else engine.connect(scheduler) as c:
        t0 = time.perf_counter()
        ctx, image, check_here = prepare(old, new, policy, use_cache=use_cache)
        timings = {"images": time.perf_counter() - t0}
        try:
            hosts = engine.run(ctx, image, paths, c, progress, timings, check_here)
        finally:
            image.close()
    return FleetVerdict(tuple(hosts), summary(hosts), waves(hosts, rollout), rollout, timings)

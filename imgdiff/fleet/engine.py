"""Running a fleet plan on Dask distributed: a local cluster, or an existing scheduler.

This module owns the distribution: reports split in chunks, a first quick pass that
finds which programs the hosts run (so the import graphs and ELF closures of OLD are
computed once, here, for all of them), the context scattered to every worker once, and
one task per chunk whose answer is its hosts' verdicts in input order. Dask recomputes a
task whose worker died, and answers are placed by chunk, so a host is never lost nor
counted twice. It never falls back to running locally when a scheduler was named.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import attrs

from imgdiff.errors import BadInput, Unsupported
from imgdiff.fleet.host import (
    FleetContext,
    HostVerdict,
    context_with,
    plan_host,
    program_keys,
)
from imgdiff.impact import ImageEvidence
from imgdiff.results import Drift

CONNECT_TIMEOUT = 10.0  # seconds to reach a named scheduler
MAX_CHUNK = 32  # hosts per task at most: the last tasks' imbalance stays small


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise Unsupported(
            "imgdiff fleet needs Dask distributed: pip install 'imgdiff-updates[fleet]'"
        ) from None
    return distributed


@contextmanager
def connect(scheduler: str | None, workers: int | None = None) -> Iterator[Any]:
    """A Dask client: of the scheduler at `scheduler`, or of a local cluster of
    `workers` processes (default: the CPUs available) closed afterwards. An unreachable
    scheduler is `BadInput` naming it."""
    distributed = _distributed()
    if scheduler is not None:
        _probe(scheduler)
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            raise BadInput(
                scheduler, f"cannot reach the Dask scheduler: {type(exc).__name__}: {exc}"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    from imgdiff._parallel import workers as cpus

    with (
        distributed.LocalCluster(
            n_workers=workers or cpus(),
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: never a clash with 8787
            silence_logs=40,  # errors only: the progress bar is ours
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _probe(scheduler: str) -> None:
    """A refused TCP connection is said at once (Dask itself retries until its timeout)."""
    import socket
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(scheduler if "://" in scheduler else f"tcp://{scheduler}")
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise BadInput(scheduler, f"not a scheduler address: {exc}") from None
    if parts.scheme not in ("tcp", "tls") or host is None or port is None:
        if parts.scheme in ("tcp", "tls"):
            raise BadInput(scheduler, "not a scheduler address: give tcp://HOST:PORT")
        return  # another transport (inproc, ucx): Dask's own connect says
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise BadInput(
            scheduler, f"cannot reach the Dask scheduler: {exc.strerror or exc}"
        ) from None


def chunks(paths: Sequence[str], workers: int) -> list[list[str]]:
    """Paths in chunks: a few per worker so a lost worker costs little, at most
    MAX_CHUNK each."""
    if not paths:
        return []
    size = max(1, min(MAX_CHUNK, math.ceil(len(paths) / max(1, workers * 8))))
    return [list(paths[i : i + size]) for i in range(0, len(paths), size)]


def _keys_task(paths: list[str], image: ImageEvidence) -> tuple[set[tuple[object, ...]], set[str]]:
    return program_keys(paths, image)


def _plan_task(paths: list[str], ctx: FleetContext) -> list[HostVerdict]:
    return [plan_host(ctx, p) for p in paths]


def run(
    ctx: FleetContext,
    image: ImageEvidence,
    paths: Sequence[str],
    client: Any,
    progress: Callable[[int, int], None] | None = None,
    timings: dict[str, float] | None = None,
    check_here: Callable[[], Drift] | None = None,
) -> list[HostVerdict]:
    """Every host's verdict, in the order of `paths`; `timings` is given the seconds of
    each phase ("programs": finding and computing them, "drift": this machine's root
    checked by `check_here`, when a plain snapshot of its boot is among the reports,
    "hosts": planning the hosts)."""
    import time

    t0 = time.perf_counter()
    distributed = _distributed()
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    parts = chunks(paths, n_workers)
    if not parts:
        return []
    # 1. which programs the hosts run: computed once from OLD, here, for all of them
    probe = client.scatter(image.shareable(), broadcast=True)
    boots: set[str] = set()
    for keys, seen in client.gather(client.map(_keys_task, parts, image=probe, pure=False)):
        boots |= seen
        for key in keys:
            image.compute(key)
    t1 = time.perf_counter()
    # a plain snapshot of this boot has this machine's root checked, as `plan` does
    if ctx.boot_id in boots and check_here is not None and not ctx.policy.allow_drift:
        ctx = attrs.evolve(ctx, drift_here=check_here())
        if timings is not None:
            timings["drift"] = time.perf_counter() - t1
        t1 = time.perf_counter()
    # 2. the context, with what was computed, sent to each worker once
    shared = client.scatter(context_with(ctx, image), broadcast=True)
    futures = client.map(_plan_task, parts, ctx=shared, pure=False)
    index = {f.key: i for i, f in enumerate(futures)}
    answers: list[list[HostVerdict] | None] = [None] * len(parts)
    done = 0
    if progress is not None:
        progress(0, len(paths))
    arriving = distributed.as_completed(futures)
    futures.clear()  # each answer is dropped from the cluster once it is here
    for future in arriving:
        i = index[future.key]
        answers[i] = future.result()
        future.release()
        done += len(parts[i])
        if progress is not None:
            progress(done, len(paths))
    if timings is not None:
        timings |= {"programs": t1 - t0, "hosts": time.perf_counter() - t1}
    return [h for part in answers if part is not None for h in part]


def expand(reports: Sequence[str]) -> list[str]:
    """Report arguments as files: a directory stands for its *.json and *.json.zst
    files, sorted."""
    out: list[str] = []
    for arg in reports:
        if os.path.isdir(arg):
            names = sorted(n for n in os.listdir(arg) if n.endswith((".json", ".json.zst")))
            out += [os.path.join(arg, n) for n in names]
        else:
            out.append(arg)
    return out

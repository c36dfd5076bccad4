"""Run a function over slices of work in forked worker processes.

The delta's costs are per-file Python work plus page-cache copies; threads serialise on
the GIL (2 threads were 10% faster than 1 here), forked workers do not. Workers only run
code already loaded in this process (no exec, no new imports) and return plain data
through a pipe. A worker that fails or dies is not trusted to explain itself: its slice
is redone in the parent, which raises the real error if there is one.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MIN_ITEMS = 64  # below this, a fork costs more than it saves


def workers() -> int:
    """How many processes to use: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _child(fn: Callable[[T], R], work: T, fd: int) -> None:
    try:
        data = pickle.dumps(fn(work), protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:  # noqa: S110 - the parent redoes this slice and reports
        pass
    finally:
        os._exit(0)


def fork_map(fn: Callable[[T], R], work: Sequence[T], *, size: int = 0) -> list[R]:
    """`[fn(w) for w in work]`, the first item in this process, the rest in children.

    `size` is the number of underlying items (files); small jobs run inline.
    """
    if len(work) < 2 or size < MIN_ITEMS or not hasattr(os, "fork"):
        return [fn(w) for w in work]
    sys.stdout.flush()
    sys.stderr.flush()
    children: list[tuple[int, int]] = []  # (pid, read end), in work order, not yet reaped
    try:
        for w in work[1:]:
            r, wfd = os.pipe()
            try:
                pid = os.fork()
            except BaseException:
                os.close(r)
                os.close(wfd)
                raise
            if pid == 0:  # pragma: no cover - runs in the child
                os.close(r)
                _child(fn, w, wfd)
            os.close(wfd)
            children.append((pid, r))
        results = [fn(work[0])]
        for w in work[1:]:
            pid, r = children[0]
            # loaded from the pipe as it comes: a large result is never held twice (raw
            # bytes beside the objects made from them)
            try:
                with os.fdopen(r, "rb", buffering=1 << 16) as pipe:
                    try:
                        result = pickle.load(pipe)  # noqa: S301 - our own child's output
                        failed = False
                    except Exception:  # empty or torn: the child failed, redo it here
                        failed = True
                    while pipe.read(1 << 20):  # let the child finish writing what is left
                        pass
            finally:
                del children[0]  # its pipe is closed: a child still writing gets EPIPE
                os.waitpid(pid, 0)
            results.append(fn(w) if failed else result)
    except BaseException:
        _reap(children)
        raise
    return results


def _reap(children: list[tuple[int, int]]) -> None:
    """Kill and wait for children whose results will not be read: no child outlives the
    call (one blocked on a full pipe would wait for ever)."""
    import signal  # only on this path

    for pid, r in children:
        os.kill(pid, signal.SIGKILL)
        os.close(r)
        os.waitpid(pid, 0)


def split(items: Sequence[T], parts: int) -> list[list[T]]:
    """`items` in `parts` interleaved slices of nearly equal length."""
    return [list(items[i::parts]) for i in range(parts)]

"""Rich renderings for the terminal: the delta summary and its change table.

Only presentation lives here; names are shown escaped (control and undecodable bytes as
`\\xNN`) so a hostile file name cannot drive the terminal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from imgdiff.errors import escape_path
from imgdiff.model import Status

if TYPE_CHECKING:  # the model renders itself through these: import it lazily
    from imgdiff.delta import Delta

_STYLE = {Status.ADDED: "green", Status.REMOVED: "red", Status.MODIFIED: "yellow"}


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def render_delta(delta: Delta, *, max_rows: int | None = 200) -> RenderableType:
    """The delta as a summary line, a by-kind table and the change table."""
    s = delta.stats
    summary = Text.assemble(
        ("added ", "bold"),
        (f"{s.added}", "green"),
        f" ({_size(s.added_bytes)})  ",
        ("removed ", "bold"),
        (f"{s.removed}", "red"),
        f" ({_size(s.removed_bytes)})  ",
        ("modified ", "bold"),
        (f"{s.modified}", "yellow"),
        f" ({_size(s.modified_bytes)})  ",
        f"mtime-only {s.mtime_only}  unchanged {s.unchanged}  ",
        f"share of new image: {s.share_files:.1%} of files, {s.share_bytes:.1%} of bytes",
    )
    kinds = Table(title="by kind", show_edge=False)
    kinds.add_column("kind")
    kinds.add_column("changes", justify="right")
    for kind, n in sorted(s.by_kind.items(), key=lambda kv: -kv[1]):
        kinds.add_row(kind, str(n))
    table = Table(show_edge=False, title=f"{delta.old.path} → {delta.new.path}")
    table.add_column("status")
    table.add_column("kind")
    table.add_column("aspects")
    table.add_column("path", overflow="fold")
    rows = delta.changes if max_rows is None else delta.changes[:max_rows]
    for c in rows:
        table.add_row(
            Text(c.status.value, style=_STYLE[c.status]),
            c.kind,
            ",".join(a.value for a in c.aspects),
            Text(escape_path(c.path)),
        )
    parts: list[RenderableType] = [table]
    if max_rows is not None and len(delta.changes) > max_rows:
        parts.append(Text(f"… {len(delta.changes) - max_rows} more (use --all or --json)"))
    parts += [kinds, summary]
    if delta.warnings:
        parts.append(Text(f"{len(delta.warnings)} warnings:", style="bold red"))
        parts.extend(Text(f"  {escape_path(w.path)}: {w.message}") for w in delta.warnings[:50])
    return Group(*parts)


def stderr_console() -> Console:
    """A console on stderr that stays quiet unless stderr is an interactive terminal."""
    quiet = not sys.stderr.isatty() or bool(os.environ.get("CI"))
    return Console(stderr=True, quiet=quiet, no_color=bool(os.environ.get("NO_COLOR")))


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None] | None]:
    """A byte-progress callback drawn on stderr, or None when stderr is not a TTY."""
    console = stderr_console()
    if console.quiet:
        yield None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update

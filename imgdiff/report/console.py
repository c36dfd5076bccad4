"""Rich renderings of every result for the terminal, and progress on stderr.

`render` picks a result's rendering by its type (`results.Rendered.__rich_console__` and
the CLI both call it). Only presentation lives here, no logic and no printing; names are
shown escaped (control and undecodable bytes as `\\xNN`) so a hostile file name cannot
drive the terminal.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from imgdiff._progress import ReadCounts
from imgdiff.errors import escape_path
from imgdiff.model import Kind, Status
from imgdiff.report import draws_on_stderr
from imgdiff.results import (
    ApplyResult,
    CheckResult,
    Delta,
    DemoRun,
    Evidence,
    Impact,
    PackageChangeKind,
    PackageDelta,
    PackResult,
    Plan,
    StaleReport,
    StepAction,
    Verdict,
    VerdictKind,
    Verification,
)
from imgdiff.runtime.snapshot import Snapshot

_STYLE = {Status.ADDED: "green", Status.REMOVED: "red", Status.MODIFIED: "yellow"}


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@functools.singledispatch
def render(result: object, full: bool = False) -> RenderableType:
    """A result for the terminal; `full` lists every row where a rendering shortens."""
    raise TypeError(f"no console rendering for {type(result).__name__}")


# the default table's order: what running code executes first, documentation last
_KIND_RANK = {
    Kind.ELF_EXECUTABLE: 0, Kind.ELF_LIBRARY: 0, Kind.PYTHON_EXTENSION: 0, Kind.KERNEL: 0,
    Kind.BOOT: 0, Kind.SYSTEMD_UNIT: 1, Kind.CONFIG: 1, Kind.SCRIPT: 2, Kind.PYTHON_SOURCE: 2,
    Kind.PYTHON_BYTECODE: 2, Kind.KERNEL_MODULE: 2, Kind.FIRMWARE: 2, Kind.DOCS: 9,
}  # fmt: skip
_NARROW = 100  # below this many columns, tables leave out their least useful columns


class _Fitted:
    """A renderable built for the width it is given, so a narrow terminal gets fewer
    columns rather than paths cut to a few characters."""

    def __init__(self, build: Callable[[int], RenderableType]) -> None:
        self._build = build

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self._build(options.max_width)


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def render_warnings(result: object, most: int = 50) -> Iterator[Text]:
    """A result's read warnings under the rendering (the first `most`, then how many
    more), as a library shows them; the CLI writes them on stderr instead."""
    from imgdiff.report.plain import warnings

    lines = list(warnings(result))
    if lines:
        yield Text(f"{_n(len(lines), 'warning')}:", style="bold red")
    yield from (Text(f"  {line}") for line in lines[:most])
    if len(lines) > most:
        yield Text(f"  … {len(lines) - most} more (.warnings has them)")


@render.register
def render_delta(delta: Delta, full: bool = False) -> RenderableType:
    """The delta as the change table (executables, libraries, units and config first, docs
    last; the first 200 unless `full`, with how many are not shown), a by-kind table and a
    summary line; "no differences" when there are none."""
    max_rows = None if full else 200
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
    total = s.added + s.removed + s.modified
    if total == 0:
        same = Text(
            f"no differences: {escape_path(delta.old.path)} and {escape_path(delta.new.path)} "
            f"hold the same {_n(s.unchanged + s.mtime_only, 'path')}",
            style="bold green",
        )
        if s.mtime_only:
            same.append(f" ({s.mtime_only} differ in mtime only)", style="")
        return same
    kinds = Table(title="by kind", show_edge=False)
    kinds.add_column("kind")
    kinds.add_column("changes", justify="right")
    for kind, n in sorted(s.by_kind.items(), key=lambda kv: -kv[1]):
        kinds.add_row(kind, str(n))
    ordered = sorted(delta.changes, key=lambda c: (_KIND_RANK.get(c.kind, 5), c.path))
    rows = ordered if max_rows is None else ordered[:max_rows]

    def table(width: int) -> RenderableType:
        narrow = width < _NARROW
        title = f"{escape_path(delta.old.path)} → {escape_path(delta.new.path)}"
        t = Table(show_edge=False, title=title)
        t.add_column("status", no_wrap=True)
        t.add_column("kind", no_wrap=True)
        if not narrow:
            t.add_column("aspects", overflow="fold")
            t.add_column("package", overflow="fold")
        t.add_column("path", overflow="fold")
        for c in rows:
            cells: list[RenderableType] = [Text(c.status.value, style=_STYLE[c.status]), c.kind]
            if not narrow:
                cells.append(",".join(a.value for a in c.aspects))
                cells.append(", ".join(p.split(":", 1)[1] for p in c.packages[:2]) or "-")
            cells.append(Text(escape_path(c.path)))
            t.add_row(*cells)
        return t

    shown = f"{len(rows)} of {_n(total, 'change')} shown"
    if len(rows) < len(delta.changes):
        shown += f"; {len(delta.changes) - len(rows)} more match (--all lists them)"
    if len(delta.changes) < total:
        shown += f"; {total - len(delta.changes)} left out by the filters"
    return Group(_Fitted(table), Text(shown, style="bold"), kinds, summary)


_PKG_STYLE = {
    PackageChangeKind.ADDED: "green", PackageChangeKind.REMOVED: "red",
    PackageChangeKind.UPGRADED: "cyan", PackageChangeKind.DOWNGRADED: "magenta",
    PackageChangeKind.REBUILT: "yellow",
}  # fmt: skip


@render.register
def render_packages(pdelta: PackageDelta, full: bool = False) -> RenderableType:
    """Package changes as a table, then unowned changed paths (the first 30 unless
    `full`) and local modifications."""
    max_unowned = len(pdelta.unowned) if full else 30

    def table(width: int) -> RenderableType:
        columns: tuple[str, ...] = ("change", "package", "old", "new")
        if width >= _NARROW:
            columns = ("manager", *columns, "files")
        t = Table(show_edge=False, title="package changes")
        for col in columns:
            # versions and names fold onto the next line rather than being cut
            t.add_column(col, justify="right" if col == "files" else "left", overflow="fold")
        for c in pdelta.changes:
            cells: dict[str, RenderableType] = {
                "manager": c.manager,
                "change": Text(c.change, style=_PKG_STYLE.get(c.change, "")),
                "package": Text(escape_path(f"{c.name}:{c.arch}" if c.arch else c.name)),
                "old": c.old_version or "-",
                "new": c.new_version or "-",
                "files": str(len(c.paths)),
            }
            t.add_row(*(cells[col] for col in columns))
        return t

    parts: list[RenderableType] = [
        _Fitted(table) if pdelta.changes else Text("no package changes", style="bold green")
    ]
    if pdelta.unowned:
        parts.append(Text(f"{len(pdelta.unowned)} changed paths no package owns:", style="bold"))
        parts.extend(Text(f"  {escape_path(p)}") for p in pdelta.unowned[:max_unowned])
        if len(pdelta.unowned) > max_unowned:
            parts.append(Text(f"  … {len(pdelta.unowned) - max_unowned} more (--json)"))
    if pdelta.modified_locally:
        parts.append(
            Text("changed files that differ from their package's record:", style="bold red")
        )
        parts.extend(
            Text(f"  {escape_path(m.path)} ({m.manager}:{m.package})")
            for m in pdelta.modified_locally
        )
    return Group(*parts)


@render.register
def render_snapshot(snap: Snapshot, full: bool = False) -> RenderableType:
    """Processes with their unit and how many files they use."""
    table = Table(
        show_edge=False, title=f"{_n(len(snap.processes), 'process', 'processes')} on {snap.host}"
    )
    for col in ("pid", "unit", "exe", "mapped", "open", "imported"):
        table.add_column(
            col, justify="right" if col in ("pid", "mapped", "open", "imported") else "left"
        )
    for p in snap.processes:
        count = {v: sum(1 for f in p.files if f.via == v) for v in ("mapped", "open", "imported")}
        table.add_row(
            str(p.pid), p.unit or "-", Text(escape_path(p.exe or p.comm)),
            str(count["mapped"]), str(count["open"]),
            str(count["imported"]) if p.traced else "-",
        )  # fmt: skip
    parts: list[RenderableType] = [table]
    if not snap.processes:
        parts.append(Text("no process runs in the root asked about", style="yellow"))
    parts.extend(Text(f"not inspected: pid {g.pid}: {g.reason}", style="red") for g in snap.gaps)
    return Group(*parts)


@render.register
def render_stale(report: StaleReport, full: bool = False) -> RenderableType:
    """Stale processes as a tree: process → changed path (via); reasons not confirmed
    (`Evidence.confirmed`) are one line per process with a count, unless `full`."""
    if report.considered == 0:
        head: RenderableType = Text(
            f"no process runs in {escape_path(report.root)}: nothing was checked", style="yellow"
        )
    elif not report.processes:
        head = Text("no process uses deleted or replaced code", style="green")
    else:
        count = _n(len(report.processes), "process needs", "processes need")
        tree = Tree(Text(f"{count} a restart", style="bold"))
        for p in report.processes:
            node = tree.add(Text(f"{p.pid} {p.unit or '-'} {escape_path(p.exe or p.comm)}"))
            shown = p.reasons if full else [r for r in p.reasons if r.confirmed]
            for r in shown:
                node.add(Text(f"{escape_path(r.path)}  ({r.via}: {r.detail})"))
            if len(shown) < len(p.reasons):
                node.add(_unconfirmed_line(len(p.reasons) - len(shown), report.against))
        head = tree
    parts: list[RenderableType] = [head]
    parts.extend(Text(f"not inspected: pid {g.pid}: {g.reason}", style="red") for g in report.gaps)
    return Group(*parts)


def _unconfirmed_line(count: int, against: str | None) -> Text:
    """The line standing for a process's unconfirmed reasons (`against`: the image that
    settled what it could, "plan" for the plan, which has no --against)."""
    files = "file" if count == 1 else "files"
    hint = (
        ""
        if against
        else "; `imgdiff stale --against IMAGE` (the tree before the update) settles them"
    )
    return Text(
        f"+ {count} {files} rewritten after it started, bytes not known to differ "
        f"(unconfirmed{hint}; --full or --json lists them)",
        style="dim",
    )


_VERDICT_STYLE = {
    VerdictKind.NO_ACTION: "bold green", VerdictKind.RESTART: "bold yellow",
    VerdictKind.REBOOT: "bold red", VerdictKind.REIMAGE: "bold magenta",
}  # fmt: skip
_IN_BATCH = frozenset({StepAction.RESTART, StepAction.STOP, StepAction.START})
_SYSTEMD = frozenset({StepAction.DAEMON_RELOAD, StepAction.DAEMON_REEXEC})


@render.register
def render_verdict(verdict: Verdict, full: bool = False) -> RenderableType:
    """The verdict first, then its reasons, the steps as a tree (batch → unit → process →
    changed path and how it is used), then what could not be inspected."""
    parts: list[RenderableType] = [
        Text(f"verdict: {verdict.verdict}", style=_VERDICT_STYLE.get(verdict.verdict, "bold"))
    ]
    parts.append(_bullets(verdict.reasons))
    if verdict.steps:
        title = (
            "steps"
            if verdict.verdict is VerdictKind.RESTART
            else f"restart plan ({verdict.verdict} supersedes it)"
        )
        tree = Tree(Text(title, style="bold"))
        batches: dict[int, Tree] = {}
        for n, step in enumerate(verdict.steps, 1):
            parent = tree
            if step.action in _IN_BATCH:
                if step.batch not in batches:
                    label = f"batch {step.batch}" + (
                        "" if step.unit else ": processes with no unit"
                    )
                    batches[step.batch] = tree.add(Text(label, style="dim"))
                parent = batches[step.batch]
            if step.action in _SYSTEMD:
                node = parent.add(Text(f"{n}. systemctl {step.action}", style="bold"))
                for e in step.reasons:
                    node.add(_evidence_text(e))
                continue
            if step.unit:
                node = parent.add(Text(f"{n}. systemctl {step.action} {step.unit}", style="bold"))
            elif step.main_pid is not None:
                others = len(step.pids) - 1
                tree_of = f" (and {others} of its children)" if others else ""
                node = parent.add(
                    Text(
                        f"{n}. restart pid {step.main_pid}{tree_of}: {escape_path(step.command)}",
                        style="bold",
                    )
                )
            else:
                node = parent
            if not step.processes:  # a unit to start: why, not who
                for e in step.reasons:
                    node.add(_evidence_text(e))
            # a unit's workers often share program and evidence: one node for all of them
            alike: dict[tuple[str, tuple[Evidence, ...]], list[int]] = {}
            for proc in step.processes:
                key = (proc.command, proc.evidence)
                alike.setdefault(key, []).append(proc.pid)
            for (command, evidence), pids in alike.items():
                shown = " ".join(map(str, pids[:8]))
                if len(pids) > 8:
                    shown += f" (+{len(pids) - 8})"
                label = f"pid{'s' if len(pids) > 1 else ''} {shown}  {escape_path(command)}"
                pnode = node.add(Text(label))
                _add_evidence(pnode, evidence, full)
        parts.append(tree)
    parts.extend(Text(f"not inspected: {u}", style="red") for u in verdict.uninspected)
    return Group(*parts)


class _Hanging:
    """`prefix` then `text`, wrapped to the width given with a hanging indent: continuation
    lines start under the text, not under the prefix (no padding at line ends)."""

    def __init__(self, prefix: str, text: Text) -> None:
        self._prefix, self._text = prefix, text

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        indent = len(self._prefix)
        lines = self._text.wrap(console, max(20, options.max_width - indent), overflow="fold")
        for n, line in enumerate(lines):
            line.rstrip()
            yield Text(self._prefix if n == 0 else " " * indent) + line


def _bullets(items: Sequence[str], bullet: str = "  • ") -> RenderableType:
    """One item a line; an item too long for the terminal wraps with a hanging indent."""
    return Group(*(_Hanging(bullet, Text(item)) for item in items))


_CHAINS_SHOWN = 3  # import-graph lines per process unless --full
_HOPS_SHOWN = 4  # modules of a chain shown unless --full


def _add_evidence(node: Tree, evidence: tuple[Evidence, ...], full: bool) -> None:
    """A process's evidence under its node. Unless `full`: the import-graph lines with the
    shortest chains (each chain cut to its ends) and a count of the rest, and the
    unconfirmed lines as one count."""
    if full:
        for e in evidence:
            node.add(_evidence_text(e))
        return
    graph = sorted(
        (e for e in evidence if e.via == "import-graph" and e.confirmed),
        key=lambda e: (e.detail.count(" ← "), e.path),
    )
    for e in evidence:
        if e.confirmed and e.via != "import-graph":
            node.add(_evidence_text(e))
    for e in graph[:_CHAINS_SHOWN]:
        node.add(_evidence_text(e, short_chain=True))
    if len(graph) > _CHAINS_SHOWN:
        node.add(
            Text(
                f"… and {len(graph) - _CHAINS_SHOWN} more changed modules its imports reach "
                f"({len(graph)} in all; --full lists each with its import chain)",
                style="dim",
            )
        )
    unconfirmed = sum(1 for e in evidence if not e.confirmed)
    if unconfirmed:
        assumed = [e for e in evidence if not e.confirmed and "assumed from" in e.detail]
        if assumed:
            for e in assumed:
                node.add(_evidence_text(e))
            unconfirmed -= len(assumed)
        if unconfirmed:
            node.add(_unconfirmed_line(unconfirmed, "plan"))


def _short_chain(detail: str) -> str:
    """An import chain cut to its first modules and its end: "a ← b ← … 9 more … ← __main__"."""
    hops = detail.split(" ← ")
    if len(hops) <= _HOPS_SHOWN:
        return detail
    head, tail = hops[: _HOPS_SHOWN - 1], hops[-1]
    return " ← ".join([*head, f"… {len(hops) - _HOPS_SHOWN} more …", tail])


def _evidence_text(e: Evidence, short_chain: bool = False) -> Text:
    text = Text(escape_path(e.path))
    text.append(f"  ({e.via}", style="cyan")
    if e.detail:
        detail = _short_chain(e.detail) if short_chain else e.detail
        text.append(f": {detail}", style="cyan")
    text.append(f", {e.status})", style="cyan")
    return text


@render.register
def render_verification(result: Verification, full: bool = False) -> RenderableType:
    """Whether the tree is the image, then each difference (image → tree; the first 200
    unless `full`)."""
    most = len(result.differences) if full else 200
    if result.matches:
        return Text(
            f"{escape_path(result.tree)} matches {escape_path(result.image)}", style="bold green"
        )
    table = Table(
        show_edge=False,
        title=f"{escape_path(result.tree)} differs from {escape_path(result.image)} in "
        f"{len(result.differences)} paths (added: only in the tree)",
    )
    for col in ("status", "aspects", "path"):
        table.add_column(col)
    for c in result.differences[:most]:
        table.add_row(
            Text(c.status.value, style=_STYLE[c.status]),
            ",".join(a.value for a in c.aspects),
            Text(escape_path(c.path)),
        )
    more = len(result.differences) - most
    parts: list[RenderableType] = [table]
    if more > 0:
        parts.append(Text(f"… and {more} more (--json lists all)"))
    return Group(*parts)


@render.register
def render_plan(plan: Plan, full: bool = False) -> RenderableType:
    """A plan is shown as its verdict."""
    return render_verdict(plan.verdict, full)


@render.register
def render_impact(impact: Impact, full: bool = False) -> RenderableType:
    """Affected processes as a tree: process → changed path (via: detail, status)."""
    tree = Tree(
        Text(
            f"{len(impact.affected)} of {_n(impact.considered, 'process', 'processes')} "
            f"use{'s' if len(impact.affected) == 1 else ''} changed files",
            style="bold",
        )
    )
    for p in impact.affected:
        node = tree.add(Text(f"{p.pid} {p.unit or '-'} {escape_path(p.exe or '-')}"))
        for e in p.evidence:
            node.add(_evidence_text(e))
    parts: list[RenderableType] = [tree]
    parts.extend(
        Text(f"not inspected: pid {g.pid}: {g.reason}", style="red") for g in impact.uninspected
    )
    return Group(*parts)


@render.register
def render_demo(run: DemoRun, full: bool = False) -> RenderableType:
    """Where the demo runs, then its plan."""
    return Group(
        Text.from_markup(
            f"[bold]imgdiff demo[/]: {run.workdir}/old is live (chroot) with services "
            f"{dict(run.pids)}"
        ),
        Text(f"planning the update to {run.workdir}/new\n"),
        render_verdict(run.verdict, full),
    )


def stderr_console(*, quiet: bool = False) -> Console:
    """A console on stderr that stays quiet unless stderr is an interactive terminal (and
    `quiet` is false)."""
    quiet = not draws_on_stderr(quiet=quiet)
    return Console(stderr=True, quiet=quiet, no_color=bool(os.environ.get("NO_COLOR")))


@contextmanager
def progress_bar(
    description: str, *, quiet: bool = False
) -> Iterator[Callable[[int, int], None] | None]:
    """A byte-progress callback drawn on stderr, or None when stderr is not a TTY."""
    with stage_progress(quiet=quiet) as (update, stage):
        if stage is not None:
            stage(description)
        yield update


@contextmanager
def stage_progress(
    *, quiet: bool = False
) -> Iterator[tuple[Callable[[int, int], None] | None, Callable[[str], None] | None]]:
    """(byte progress, stage announcer) drawn on stderr as one display, or (None, None)
    when stderr is not a TTY or `quiet`."""
    console = stderr_console(quiet=quiet)
    if console.quiet:
        yield None, None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        def stage(description: str) -> None:
            bar.update(task, description=description, completed=0, total=None)

        yield update, stage


class ImageProgress:
    """One stderr display for reading images then hashing: entries read so far (and, for
    archives, bytes with an ETA), then bytes hashed with an ETA; `stage` names a new stage.
    `reading` is None when nothing is drawn (stderr not a terminal, or quiet)."""

    def __init__(self, bar: Progress | None) -> None:
        self._bar = bar
        self.reading: ReadCounts | None = ReadCounts() if bar is not None else None
        self._task = bar.add_task("reading", total=None, what="") if bar is not None else None
        self._read_over = False  # hashing or a later stage has begun: counts stay still
        self._stages = 0

    def poll(self) -> None:
        """Show the counts of the read under way (called from the display's thread)."""
        if self._bar is None or self._task is None or self.reading is None or self._read_over:
            return
        entries, consumed, size = self.reading.totals()
        what = f"{entries:,} entries"
        if size:
            self._bar.update(self._task, completed=consumed, total=size, what=what)
        else:
            self._bar.update(self._task, what=what)

    def update(self, done: int, total: int) -> None:
        """Bytes hashed of `total` (a `ProgressFn`)."""
        if self._bar is None or self._task is None:
            return
        if not self._read_over:
            self.poll()  # the final count of entries read stays shown
            self._read_over = True
            self._bar.update(self._task, description="hashing")
        self._bar.update(self._task, completed=done, total=total)

    def stage(self, description: str) -> None:
        """A new stage: its name, and no counts until it reports some (the first stage
        is the read: its counts go on)."""
        self._stages += 1
        if self._bar is not None and self._task is not None:
            self._read_over = self._read_over or self._stages > 1
            self._bar.update(self._task, description=description, completed=0, total=None, what="")


class _Bytes(ProgressColumn):
    """Bytes done of the total, once a total is known (DownloadColumn shows "0/?" before)."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        return Text(f"{_size(int(task.completed))}/{_size(int(task.total))}")


@contextmanager
def image_progress(description: str = "reading", *, quiet: bool = False) -> Iterator[ImageProgress]:
    """An `ImageProgress` drawn on stderr while the block runs (nothing drawn when stderr
    is not a terminal, `CI` is set, or `quiet`)."""
    console = stderr_console(quiet=quiet)
    if console.quiet:
        yield ImageProgress(None)
        return
    with Progress(
        SpinnerColumn(),
        "[progress.description]{task.description}",
        BarColumn(),
        TextColumn("{task.fields[what]}"),
        _Bytes(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        display = ImageProgress(bar)
        if description != "reading":
            display.stage(description)
        done = threading.Event()

        def poll() -> None:
            while not done.wait(0.1):
                display.poll()

        poller = threading.Thread(target=poll, name="imgdiff-progress", daemon=True)
        poller.start()
        try:
            yield display
        finally:
            done.set()
            poller.join()


@render.register
def render_pack(result: PackResult, full: bool = False) -> RenderableType:
    """The delta written: its digest, size and how its content is encoded."""
    lines = [
        f"{escape_path(result.path)}: {_size(result.size)}, {result.changed} paths change",
        f"digest {result.digest}",
    ]
    lines += [
        f"  {encoding:6} {result.records[encoding]:6} files "
        f"{_size(result.record_bytes.get(encoding, 0))}"
        for encoding in sorted(result.records)
    ]
    return Text("\n".join(lines))


@render.register
def render_apply(result: ApplyResult, full: bool = False) -> RenderableType:
    """What an apply or a rollback left the tree as."""
    if result.rolled_back:
        what = f"rolled back to {result.old_identity}"
    else:
        what = f"is now {result.new_identity}" + (
            " (interrupted apply finished)" if result.resumed else ""
        )
    return Text(f"{escape_path(result.tree)} {what} ({result.operations} operations)", style="bold")


@render.register
def render_check(result: CheckResult, full: bool = False) -> RenderableType:
    """Yes, or no with the paths that are not NEW and the processes still on old files."""
    if result.ok:
        return Text(
            f"{escape_path(result.tree)} is {escape_path(result.image)}", style="bold green"
        )
    most = len(result.files) if full else 200
    lines = [f"{escape_path(result.tree)} is not ready:"]
    lines += [f"  not NEW: {f}" for f in result.files[:most]]  # escaped once already
    if len(result.files) > most:
        lines.append(f"  … and {len(result.files) - most} more paths (--all lists them)")
    lines += [
        f"  pid {p.pid} ({escape_path(p.comm)}{', ' + p.unit if p.unit else ''}) still uses "
        + ", ".join(escape_path(e.path) for e in p.reasons)
        for p in result.stale.processes
    ]
    return Text("\n".join(lines), style="bold red")

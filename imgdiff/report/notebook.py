"""Jupyter and pandas views of results: HTML tables and data frames.

`to_html` picks a result's HTML by its type (`results.Rendered._repr_html_` calls it); a
result with no table of its own is its console rendering exported as HTML. pandas is
optional: `delta_frame` imports it on call and says how to get it if missing. HTML
escapes every name, so a hostile path cannot inject markup into a notebook. No logic here.
"""

from __future__ import annotations

import functools
import html
import io
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from imgdiff.errors import ImgdiffError, escape_path
from imgdiff.results import Delta, Evidence, Plan, Verdict

_MAX_ROWS = 500
# pyproject.toml's distribution name and the optional extra that brings pandas
_DISTRIBUTION = "imgdiff-updates"
_PANDAS_EXTRA = "pandas"


@functools.singledispatch
def to_html(result: object) -> str:
    """A result as HTML for notebooks: its console rendering, when it has no table."""
    from imgdiff.report.console import render

    console = Console(record=True, file=io.StringIO(), width=120)
    console.print(render(result))
    return console.export_html(inline_styles=True)


# the columns of each frame, the same whether it has rows or none (code that selects or
# groups by them works on an empty delta or a no-action verdict too)
DELTA_COLUMNS = (
    "path", "status", "kind", "aspects", "old_size", "new_size", "old_mode", "new_mode", "top",
)  # fmt: skip
VERDICT_COLUMNS = (
    "step", "batch", "action", "unit", "pid", "command", "path", "via", "detail", "status",
    "kind", "confirmed",
)  # fmt: skip


def delta_rows(delta: Delta) -> list[dict[str, Any]]:
    """One flat record per change: what a data frame or a CSV wants."""
    rows = []
    for c in delta.changes:
        old, new = c.old, c.new
        rows.append(
            {
                "path": c.path,
                "status": c.status.value,
                "kind": c.kind,
                "aspects": ",".join(a.value for a in c.aspects),
                "old_size": old.size if old else None,
                "new_size": new.size if new else None,
                "old_mode": old.mode if old else None,
                "new_mode": new.mode if new else None,
                "top": "/" + c.path.split("/", 2)[1] if c.path.count("/") > 1 else "/",
            }
        )
    return rows


def _frame(rows: list[dict[str, Any]], columns: Sequence[str]) -> Any:
    """A data frame of `rows`, whose keys are `columns` (its columns even with no row)."""
    try:
        import pandas as pd  # optional: only this view needs it
    except ImportError:
        raise ImgdiffError(
            f"to_pandas() needs pandas, which imgdiff does not install by default: "
            f"pip install '{_DISTRIBUTION}[{_PANDAS_EXTRA}]' (or pip install pandas)"
        ) from None
    return pd.DataFrame(rows, columns=list(columns))


def delta_frame(delta: Delta) -> Any:
    """A pandas DataFrame of `delta_rows`."""
    return _frame(delta_rows(delta), DELTA_COLUMNS)


def verdict_rows(verdict: Verdict) -> list[dict[str, Any]]:
    """One flat record per piece of evidence of each step's processes (a daemon-reload
    step: per changed unit file), in step order."""
    rows = []
    for number, step in enumerate(verdict.steps, 1):
        base = {"step": number, "batch": step.batch, "action": step.action, "unit": step.unit}
        pieces: list[tuple[int | None, str | None, Evidence]] = [
            (p.pid, p.command, e) for p in step.processes for e in p.evidence
        ]
        if not step.processes:
            pieces = [(None, None, e) for e in step.reasons]
        for pid, command, e in pieces:
            rows.append(
                {
                    **base,
                    "pid": pid,
                    "command": command,
                    "path": e.path,
                    "via": e.via,
                    "detail": e.detail,
                    "status": e.status,
                    "kind": e.kind,
                    "confirmed": e.confirmed,
                }
            )
    return rows


def verdict_frame(verdict: Verdict) -> Any:
    """A pandas DataFrame of `verdict_rows`."""
    return _frame(verdict_rows(verdict), VERDICT_COLUMNS)


@to_html.register
def verdict_html(verdict: Verdict) -> str:
    """The verdict, its reasons and the evidence of its steps as HTML for notebooks."""
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in verdict.reasons)
    head = f"<p><b>verdict: {html.escape(verdict.verdict)}</b></p><ul>{reasons}</ul>"
    cols = ("step", "action", "unit", "pid", "command", "path", "via", "detail")
    rows = verdict_rows(verdict)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(escape_path(str(r[c])) if r[c] is not None else '-')}</td>"
            for c in cols
        )
        + "</tr>"
        for r in rows[:_MAX_ROWS]
    )
    table = (
        "<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>" + body + "</table>"
        if rows
        else ""
    )
    more = len(rows) - _MAX_ROWS
    tail = f"<p>… {more} more: use <code>to_pandas()</code></p>" if more > 0 else ""
    missing = "".join(f"<p>not inspected: {html.escape(u)}</p>" for u in verdict.uninspected)
    return head + table + tail + missing


@to_html.register
def plan_html(plan: Plan) -> str:
    """A plan is shown as its verdict."""
    return verdict_html(plan.verdict)


@to_html.register
def delta_html(delta: Delta) -> str:
    """A compact HTML summary and change table for notebooks."""
    s = delta.stats
    head = (
        f"<p><b>{html.escape(delta.old.path)}</b> → <b>{html.escape(delta.new.path)}</b>: "
        f"{s.added} added, {s.removed} removed, {s.modified} modified "
        f"({s.mtime_only} mtime-only); {s.share_files:.1%} of files, "
        f"{s.share_bytes:.1%} of bytes</p>"
    )
    row = "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>"
    cells = [
        row.format(
            c.status.value,
            html.escape(c.kind),
            ",".join(a.value for a in c.aspects),
            html.escape(escape_path(c.path)),
        )
        for c in delta.changes[:_MAX_ROWS]
    ]
    more = len(delta.changes) - _MAX_ROWS
    tail = f"<p>… {more} more: use <code>to_pandas()</code></p>" if more > 0 else ""
    return (
        head
        + "<table><tr><th>status</th><th>kind</th><th>aspects</th><th>path</th></tr>"
        + "".join(cells)
        + "</table>"
        + tail
    )

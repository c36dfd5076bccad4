"""A fleet verdict for people: a terminal view (rich) and a notebook view (HTML).

Presentation only: the numbers come from `FleetVerdict`; nothing here decides.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgdiff.fleet import FleetVerdict

_MAX_NAMES = 8  # host names shown per wave before "and N more"


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMES])
    more = len(names) - _MAX_NAMES
    return shown + (f" and {more} more" if more > 0 else "")


def _rows(fv: FleetVerdict) -> list[tuple[str, str, str]]:
    rows = [
        (str(w.number), w.kind, _names([fv.hosts[i].host or fv.hosts[i].snapshot for i in w.hosts]))
        for w in fv.waves
    ]
    reimage = [
        h.host or h.snapshot for h in fv.hosts if h.verdict and h.verdict.verdict == "reimage"
    ]
    if reimage:
        rows.append(("-", "reimage", _names(reimage)))
    errors = [h.snapshot for h in fv.hosts if h.error]
    if errors:
        rows.append(("-", "error", _names(errors)))
    return rows


def _counts(fv: FleetVerdict) -> str:
    verdicts = fv.summary["verdicts"]
    return ", ".join(f"{n} {kind}" for kind, n in verdicts.items() if n)


def console_view(fv: FleetVerdict) -> Any:
    """The summary line, the waves, and the errors (each on its own line)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text(f"{len(fv.hosts)} hosts: {_counts(fv) or 'none'}")
    table = Table("wave", "kind", "hosts", box=None, show_edge=False)
    for row in _rows(fv):
        table.add_row(*row)
    parts: list[Any] = [head, table]
    parts += [Text(f"error: {h.error}") for h in fv.hosts if h.error]
    units = fv.summary["units"]
    if units:
        top = ", ".join(f"{u} ({n})" for u, n in list(units.items())[:_MAX_NAMES])
        parts.append(Text(f"units restarted (hosts): {top}"))
    return Group(*parts)


def html_view(fv: FleetVerdict) -> str:
    """The same as a small HTML fragment for Jupyter."""
    rows = "".join(
        f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>"
        for a, b, c in _rows(fv)
    )
    return (
        f"<div><b>{len(fv.hosts)} hosts</b>: {html.escape(_counts(fv))}"
        f"<table><tr><th>wave</th><th>kind</th><th>hosts</th></tr>{rows}</table></div>"
    )

"""Jupyter and pandas views of results: HTML tables and data frames.

pandas is optional: `delta_frame` imports it on call and says how to get it if missing.
HTML escapes every name, so a hostile path cannot inject markup into a notebook.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from imgdiff.errors import ImgdiffError, escape_path

if TYPE_CHECKING:  # the model renders itself through these: import it lazily
    from imgdiff.delta import Delta

_MAX_ROWS = 500


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


def delta_frame(delta: Delta) -> Any:
    """A pandas DataFrame of `delta_rows`."""
    try:
        import pandas as pd  # optional: only this view needs it
    except ImportError:
        raise ImgdiffError("to_pandas() needs pandas: pip install pandas") from None
    return pd.DataFrame(delta_rows(delta))


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

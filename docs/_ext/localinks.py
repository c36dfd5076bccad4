"""After an HTML build, every internal link of every page leads to a file of the site and,
when it names an anchor, to an element with that id.

Sphinx's own `linkcheck` builder goes to the network for external links and does not look
at anchors inside the site; this checks only what the site itself holds, offline, in a
fraction of a second. A broken link is a warning (an error under `-W`).
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if value is None:
                continue
            if key in ("id", "name"):
                self.ids.add(value)
            elif key == "href" and tag in ("a", "link"):
                self.links.append(value)


def broken_links(outdir: Path) -> list[str]:
    """`page: link` for every internal link of the HTML under `outdir` that leads nowhere."""
    pages: dict[Path, _Page] = {}
    for path in sorted(outdir.rglob("*.html")):
        page = _Page()
        page.feed(path.read_text(encoding="utf-8"))
        pages[path.resolve()] = page
    broken = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("mailto:"):
                continue  # external: not checked (no network)
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.is_relative_to(outdir.resolve()) or not target.exists():
                broken.append(f"{path.relative_to(outdir.resolve())}: {link}")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else set()
                if fragment not in ids:
                    broken.append(f"{path.relative_to(outdir.resolve())}: {link} (no such anchor)")
    return broken


def _check(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    for broken in broken_links(Path(app.outdir)):
        logger.warning("internal link leads nowhere: %s", broken, type="localinks")


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("build-finished", _check)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

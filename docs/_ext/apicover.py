"""The API pages cover the public API, and references to it resolve to them.

- Every name in `imgdiff.__all__` and `imgdiff.fleet.__all__` must be documented (as
  `imgdiff.NAME` / `imgdiff.fleet.NAME`); a name added to `__all__` and not to docs/api.md
  is a warning (an error under `-W`).
- Signatures name classes where they are defined (`imgdiff.results.Delta`); such a
  reference resolves to the public name the pages document (`imgdiff.Delta`).
"""

from __future__ import annotations

import importlib
from typing import Any

from docutils import nodes
from docutils.nodes import Element
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

logger = logging.getLogger(__name__)
PUBLIC = ("imgdiff", "imgdiff.fleet")  # modules whose __all__ is the public API


def _documented(env: BuildEnvironment) -> set[str]:
    return set(env.get_domain("py").objects)  # type: ignore[attr-defined]


def _check_coverage(app: Sphinx, env: BuildEnvironment) -> None:
    documented = _documented(env)
    for module in PUBLIC:
        names = importlib.import_module(module).__all__
        for name in names:
            if name.startswith("__"):
                continue
            if f"{module}.{name}" not in documented:
                logger.warning(
                    "%s.%s is in %s.__all__ but not documented in docs/api.md",
                    module, name, module, type="apicover",
                )  # fmt: skip


def _public_alias(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: Element
) -> nodes.reference | None:
    if node.get("refdomain") != "py":
        return None
    target = str(node.get("reftarget", ""))
    documented = _documented(env)
    if "." not in target:  # a name from a string annotation: the one documented object
        found = [name for name in documented if name.endswith("." + target)]
        target = found[0] if len(found) == 1 else target
    if not target.startswith("imgdiff."):
        return None
    short = target.rsplit(".", 1)[-1]
    parts = target.split(".")
    candidates = [f"{m}.{short}" for m in PUBLIC]
    # a member: imgdiff.results.Verdict.rows -> imgdiff.Verdict.rows
    candidates += [f"{m}.{'.'.join(parts[i:])}" for m in PUBLIC for i in range(2, len(parts))]
    for alias in [target, *candidates]:
        if alias in documented:
            new = node.deepcopy()
            new["reftarget"] = alias
            return env.get_domain("py").resolve_xref(  # type: ignore[no-any-return]
                env, node["refdoc"], app.builder, node["reftype"], alias, new, contnode
            )
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("env-check-consistency", _check_coverage)
    app.connect("missing-reference", _public_alias)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

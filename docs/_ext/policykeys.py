"""The `policy-keys` directive: a policy's keys, defaults and meanings, from the code.

`.. policy-keys:: imgdiff.plan.Policy` lists every attrs field of the class with its
default (as TOML) and the comment written above the field in the source, which is where
the meaning of each key is kept. A key added to the class shows up here by itself.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import attrs
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

_FIELD = re.compile(r"^\s+(\w+)\s*:\s*[^=]+=")
_RST_SPECIAL = re.compile(r"([\\*|_])")


def _escape(text: str) -> str:
    """Text as reST shows it literally (backquoted parts stay code)."""
    return _RST_SPECIAL.sub(r"\\\1", text)


def toml_value(value: Any) -> str:
    """A Python default as TOML writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def field_comments(cls: type) -> dict[str, str]:
    """Field name → the comment lines right above its definition, joined."""
    comments: dict[str, str] = {}
    block: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        match = _FIELD.match(line)
        if match and block:
            comments[match.group(1)] = " ".join(block)
        block = []
    return comments


class PolicyKeys(SphinxDirective):
    """`.. policy-keys:: module.Class`."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module, _, name = self.arguments[0].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        self.env.note_dependency(inspect.getsourcefile(cls) or "")
        comments = field_comments(cls)
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 15 25 60", ""]
        lines += ["   * - key", "     - default", "     - meaning"]
        for field in attrs.fields(cls):
            meaning = comments.get(field.name)
            if not meaning:
                raise self.error(f"{cls.__name__}.{field.name} has no comment above it")
            default = field.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = default.factory()
            lines += [
                f"   * - ``{field.name}``",
                f"     - ``{toml_value(default)}``",
                f"     - {_escape(meaning)}",
            ]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=module), 0, container)
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("policy-keys", PolicyKeys)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

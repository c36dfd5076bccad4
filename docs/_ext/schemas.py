"""The `json-schema` directive: one JSON document of the contract, from docs/schemas/.

`.. json-schema:: verdict` renders docs/schemas/verdict.schema.json: its description,
a table of its keys (nested objects flattened to dotted names, `$ref`s followed), its
example and the schema itself. The schema files are the single source; tests/
test_schemas.py validates real command output and these examples against them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return dict(root["$defs"][ref.removeprefix("#/$defs/")])
    return node


def _type(node: dict[str, Any], root: dict[str, Any]) -> str:
    node = _resolve(node, root)
    if "const" in node:
        return f"``{json.dumps(node['const'])}``"
    if "enum" in node:
        return "one of " + ", ".join(f"``{json.dumps(v)}``" for v in node["enum"])
    if "anyOf" in node:
        return " or ".join(_type(n, root) for n in node["anyOf"])
    typ = node.get("type", "any")
    names = typ if isinstance(typ, list) else [typ]
    if "array" in names and isinstance(node.get("items"), dict):
        inner = _type(node["items"], root)
        return " or ".join(f"array of {inner}" if n == "array" else n for n in names)
    if "prefixItems" in node:
        return "array (a row)"
    return " or ".join(names)


def _rows(
    node: dict[str, Any], root: dict[str, Any], prefix: str = ""
) -> Iterator[tuple[str, str, bool, str]]:
    node = _resolve(node, root)
    required = set(node.get("required", ()))
    for key, sub in node.get("properties", {}).items():
        sub_r = _resolve(sub, root)
        name = prefix + key
        yield name, _type(sub, root), key in required, sub_r.get("description", "")
        if sub_r.get("type") == "object" and "properties" in sub_r:
            yield from _rows(sub_r, root, name + ".")
        items = sub_r.get("items")
        if sub_r.get("type") == "array" and isinstance(items, dict):
            items_r = _resolve(items, root)
            if "properties" in items_r:
                yield from _rows(items_r, root, name + "[].")
        for alt in sub_r.get("anyOf", ()):
            alt_r = _resolve(alt, root)
            if "properties" in alt_r:
                yield from _rows(alt_r, root, name + ".")


def _cell(text: str) -> str:
    return text.replace("\n", " ") or "\\"


class JsonSchema(SphinxDirective):
    """`.. json-schema:: NAME` — docs/schemas/NAME.schema.json, its keys and example."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        path = SCHEMAS / f"{self.arguments[0]}.schema.json"
        self.env.note_dependency(str(path))
        schema = json.loads(path.read_text())
        lines = [schema["description"], "", ".. list-table::", "   :header-rows: 1", ""]
        lines += ["   * - key", "     - type", "     - required", "     - meaning"]
        for name, typ, required, desc in _rows(schema, schema):
            lines += [
                f"   * - ``{name}``",
                f"     - {_cell(typ)}",
                f"     - {'yes' if required else 'no'}",
                f"     - {_cell(desc)}",
            ]
        lines.append("")
        for example in schema.get("examples", ()):
            lines += ["Example (real output of the test fixture, lists cut):", ""]
            lines += [".. code-block:: json", ""]
            lines += ["   " + line for line in json.dumps(example, indent=1).splitlines()]
            lines.append("")
        rel = path.relative_to(SCHEMAS.parent).as_posix()
        lines += [f"The schema: :download:`{path.name} <{rel}>`.", ""]
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source=str(path)), container)
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("json-schema", JsonSchema)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

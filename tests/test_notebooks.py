"""The notebooks in notebooks/ run top to bottom (code cells executed in order, no Jupyter)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path) -> None:
    doc = json.loads(path.read_text())
    scope: dict[str, object] = {"__name__": "__notebook__"}
    for cell in doc["cells"]:
        if cell["cell_type"] == "code":
            exec(
                compile("".join(cell["source"]), f"{path.name}", "exec"), scope
            )  # our own notebook
    assert "delta" in scope


def test_there_is_a_notebook() -> None:
    assert NOTEBOOKS

"""The notebooks in notebooks/ run top to bottom (code cells executed in order, no Jupyter)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def _run(path: Path) -> dict[str, object]:
    doc = json.loads(path.read_text())
    scope: dict[str, object] = {"__name__": "__notebook__"}
    try:
        for cell in doc["cells"]:
            if cell["cell_type"] == "code":
                code = compile("".join(cell["source"]), path.name, "exec")
                exec(code, scope)  # our own notebook
    finally:  # a failing cell must not leave the notebook's processes running
        for value in list(scope.values()):
            if isinstance(value, contextlib.ExitStack):
                value.close()
    return scope


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path) -> None:
    scope = _run(path)
    assert "delta" in scope


def test_impact_notebook_finds_the_services_the_update_touches() -> None:
    scope = _run(Path(__file__).parent.parent / "notebooks/explore-impact.ipynb")
    verdict = scope["verdict"]
    assert getattr(verdict, "verdict", None) == "restart"
    rows = scope["rows"]
    assert isinstance(rows, list)
    units = {r["unit"] for r in rows}
    assert {"demo-web.service", "demo-tls.service"} <= units
    assert "demo-idle.service" not in units
    assert "<b>verdict: restart</b>" in verdict._repr_html_()  # type: ignore[attr-defined]
    assert getattr(scope["lenient"], "verdict", None) == "reboot"  # never_restart


def test_there_is_a_notebook() -> None:
    assert NOTEBOOKS


def test_fleet_notebook_plans_every_host_and_orders_the_rollout() -> None:
    scope = _run(Path(__file__).parent.parent / "notebooks/fleet-rollout.ipynb")
    fv: Any = scope["fv"]
    assert len(fv.hosts) == 40
    by_host = {h.host: h for h in fv.hosts}
    assert by_host["web07"].verdict.verdict == "reimage"  # its tree drifted from OLD
    assert fv.waves[0].kind == "canary"
    per_wave: Any = scope["per_wave"]
    assert sum(n for _, n in per_wave) == 39  # all but the reimaged host
    assert scope["units"]  # the services' units, for the units x hosts plot

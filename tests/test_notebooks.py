"""The notebooks in notebooks/ run top to bottom in a fresh Jupyter kernel (nbclient), with
notebooks/ as the working directory, as Jupyter and the docs build run them; they are
stored without outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

HERE = Path(__file__).parent.parent / "notebooks"
NOTEBOOKS = sorted(HERE.glob("*.ipynb"))
CGROUP = Path("/sys/fs/cgroup/unified/system.slice")
# stops a notebook's services whatever cell failed (each notebook also closes its stack
# in its last cell and at kernel exit)
CLEANUP = "if 'stack' in globals():\n    stack.close()"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the notebooks chroot as root")


def execute(path: Path, probe: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Run the notebook in a new kernel; with `probe` (code printing one JSON document)
    run after the last cell, also what it printed."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    )
    facts: dict[str, Any] = {}
    with client.setup_kernel():
        try:
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
            if probe is not None:
                nb.cells.append(nbformat.v4.new_code_cell(probe))
                cell = client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
                text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
                facts = json.loads(text)
        finally:
            nb.cells.append(nbformat.v4.new_code_cell(CLEANUP))
            client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
    return nb, facts


def images(nb: Any) -> int:
    """How many PNG images the executed notebook's cells show."""
    return sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    )


def test_there_are_the_notebooks() -> None:
    assert {p.name for p in NOTEBOOKS} >= {
        "explore-update.ipynb",
        "image-vs-package.ipynb",
        "fleet-rollout.ipynb",
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_are_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has outputs"
            assert cell.execution_count is None, f"{path.name}: a cell has an execution count"
        assert "attachments" not in cell or not cell.attachments


HAVE_CORPUS = Path("/var/tmp/imgdiff-corpus/old/usr/bin/python3.11").is_file()


@needs_root
@pytest.mark.parametrize(
    "corpus",
    [
        pytest.param(None, id="real-pair", marks=pytest.mark.skipif(
            not HAVE_CORPUS, reason="no real pair here: the example run covers the notebook")),
        pytest.param("/nonexistent", id="example-pair"),
    ],
)  # fmt: skip
def test_explore_update_finds_the_services_the_update_touches(
    corpus: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if corpus is not None:  # the kernel inherits the environment
        monkeypatch.setenv("IMGDIFF_CORPUS", corpus)
    probe = (
        "import json\nprint(json.dumps({'verdict': verdict.verdict.value, 'units': units, "
        "'web': WEB, 'tls': TLS, 'idle': IDLE, 'lenient': lenient.verdict.value, "
        "'html': verdict._repr_html_(), 'changes': len(delta), 'tops': int(len(by_top)), "
        "'old': OLD, 'packages': len(pkg_frame), 'pids': list(pids.values())}))"
    )
    nb, facts = execute(HERE / "explore-update.ipynb", probe)
    assert facts["verdict"] == "restart"
    assert {facts["web"], facts["tls"]} <= set(facts["units"])
    assert facts["idle"] not in facts["units"]
    assert "<b>verdict: restart</b>" in facts["html"]
    assert facts["lenient"] == "reboot"  # the web unit may not be restarted in place
    assert facts["changes"] > 0
    assert facts["tops"] >= 1
    if corpus is None:  # the real pair: dpkg and pip changes
        assert facts["old"] == "/var/tmp/imgdiff-corpus/old"
        assert facts["packages"] > 10
    else:
        assert facts["old"].endswith("/old")
        assert not facts["old"].startswith("/var/tmp/imgdiff-corpus")
    assert images(nb) >= 1  # the delta by top directory and kind
    for pid in facts["pids"]:  # the last cell stopped them, and their cgroups are gone
        assert not Path(f"/proc/{pid}").exists()
    assert not list(CGROUP.glob("nb-*.service"))


@needs_root
def test_fleet_notebook_plans_every_host_and_orders_the_rollout() -> None:
    probe = (
        "import json\nprint(json.dumps({'hosts': len(fv.hosts), "
        "'web07': next(h.verdict.verdict.value for h in fv.hosts if h.host == 'web07'), "
        "'first': fv.waves[0].kind, 'per_wave': sum(n for _, n in per_wave), "
        "'units': units, 'in_waves': int(waves.to_numpy().sum())}))"
    )
    nb, facts = execute(HERE / "fleet-rollout.ipynb", probe)
    assert facts["hosts"] == 40
    assert facts["web07"] == "reimage"  # its tree drifted from OLD
    assert facts["first"] == "canary"
    assert facts["per_wave"] == facts["in_waves"] == 39  # all but the reimaged host
    assert facts["units"]
    assert images(nb) >= 2  # verdicts/waves/units, and the waves by verdict


def test_image_vs_package_reads_the_committed_report() -> None:
    report = json.loads((HERE.parent / "benchmarks/results/report.json").read_text())
    probe = (
        "import json\nprint(json.dumps({'names': names, 'shipped': list(shipped.columns), "
        "'restarts': list(restarts.columns), 'ratios': int(len(timings))}))"
    )
    nb, facts = execute(HERE / "image-vs-package.ipynb", probe)
    assert facts["names"] == [u["name"] for u in report["updates"]]
    assert facts["shipped"] == ["full_image", "packages", "imgdiff_delta", "ostree_delta"]
    assert facts["restarts"][:4] == [
        "restart_everything",
        "imgdiff_plan",
        "needrestart",
        "checkrestart",
    ]
    assert facts["ratios"] == len(report["updates"])
    assert images(nb) == 2

"""`python -m benchmarks report --quick`: the whole report on the built-in example pair (real
processes in cgroups, real zstd/OSTree/needrestart/checkrestart runs), and the notebook that
reads its JSON. The full run over mmdebstrap images is not part of the suite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_notebooks import HERE, execute, images

ROOT = Path(__file__).parent.parent

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("checkrestart") is None,
    reason="needs root (chroot, cgroups) and debian-goodies",
)


def test_quick_report_measures_every_strategy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "results"
    scratch_before = set(Path("/opt").glob("imgdiff-report-*"))
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "report", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads((out / "report.json").read_text())
    assert doc["schema"] == "imgdiff.bench-report/1"
    assert doc["quick"] is True
    assert doc["machine"]["cores"] == os.cpu_count()
    assert doc["machine"]["peers"]["needrestart"] != "not installed"
    (u,) = doc["updates"]
    b = u["bytes"]
    assert b["packages"] is None  # the example pair has no dpkg database
    assert 0 < b["imgdiff_delta"] < b["full_image"]
    if shutil.which("ostree"):
        assert 0 < b["ostree_delta"] < b["full_image"]
    r = u["restarts"]
    # the demo's three services, one unit each; web and tls use what the update changes
    assert r["restart_everything"] == {"services": 3, "processes": 3}
    assert u["verdict"] == "restart"
    assert r["imgdiff_plan"]["services"] == 2
    assert r["imgdiff_stale_after"]["services"] == 2  # forecast before == found after
    assert r["checkrestart"]["services"] == 2  # the files the update replaced, seen after it
    for job in ("delta", "stale", "plan"):
        assert u["timings"][job]["imgdiff"] > 0
        assert u["timings"][job]["peer"] > 0
    assert len(doc["headlines"]) >= 10
    assert sum("not found" in h["value"] for h in doc["headlines"]) == 0
    text = (out / "REPORT.md").read_text()
    assert "## Bytes to ship, per update" in text
    assert "| example | 3 | 3 / 3 | 2 / 2 |" in text
    for png in doc["plots"]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the notebook reads this run's JSON as it reads the committed one
    monkeypatch.setenv("IMGDIFF_REPORT_JSON", str(out / "report.json"))
    nb, _ = execute(HERE / "image-vs-package.ipynb", "print('{}')")
    assert images(nb) == 2
    assert set(Path("/opt").glob("imgdiff-report-*")) <= scratch_before  # scratch removed


def test_the_report_is_the_only_verb() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks"], cwd=ROOT, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert run.returncode == 2
    assert "python -m benchmarks report" in run.stderr


def test_committed_report_has_every_update_of_the_series() -> None:
    doc = json.loads((ROOT / "benchmarks/results/report.json").read_text())
    assert doc["quick"] is False
    names = [u["name"] for u in doc["updates"]]
    assert names[:3] == ["s0→s1", "s1→s2", "s2→s3"]
    for u in doc["updates"]:
        b = u["bytes"]
        assert set(b) == {"full_image", "packages", "imgdiff_delta", "imgdiff_delta_records",
                          "ostree_delta"}  # fmt: skip
        assert 0 <= b["imgdiff_delta_records"] < b["imgdiff_delta"] < b["full_image"]
    text = (ROOT / "benchmarks/results/REPORT.md").read_text()
    assert "shared" in text
    for png in doc["plots"]:
        assert (ROOT / "benchmarks/results" / png).is_file()


def test_readme_and_report_show_the_committed_runs_headline() -> None:
    from benchmarks import report

    doc = json.loads((ROOT / "benchmarks/results/report.json").read_text())
    block = "\n".join(report.headline(doc))
    assert block in (ROOT / "benchmarks/results/REPORT.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert block in readme, "README's headline is not the committed run's: run the report"
    assert report.with_headline(readme, doc) == readme

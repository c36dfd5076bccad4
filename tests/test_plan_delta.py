"""`plan OLD DELTA` and `packages OLD DELTA`: the delta archive stands for NEW, contents
included (unit files, package databases), so the answer is the one `plan OLD NEW` gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imgdiff import BadInput
from imgdiff.archive.pack import pack
from imgdiff.cli import main
from imgdiff.pipeline import package_diff, plan_update
from imgdiff.results import Verdict

from . import test_plan
from .debs import build_deb, dpkg
from .test_plan import Host

host = test_plan.host  # the fixture: OLD live with a process in a unit, NEW a copy


def _both(h: Host, tmp_path: Path) -> tuple[Verdict, Verdict]:
    delta = tmp_path / "update.delta"
    pack(str(h.old), str(h.new), delta)
    by_image = h.plan()
    by_delta = plan_update(str(h.old), str(delta), root=str(h.old), use_cache=False).verdict
    return by_image, by_delta


def test_unit_newly_enabled_in_new_is_started_when_planned_from_the_delta(
    host: Host, tmp_path: Path
) -> None:
    units = host.new / "etc/systemd/system"
    (units / "multi-user.target.wants").mkdir(parents=True)
    (units / "metrics.service").write_text("[Service]\nExecStart=/usr/bin/sleep 600\n")
    (units / "multi-user.target.wants/metrics.service").symlink_to("../metrics.service")
    by_image, by_delta = _both(host, tmp_path)
    assert by_delta == by_image
    assert (by_delta.steps[-1].unit, by_delta.steps[-1].action) == ("metrics.service", "start")


def test_changed_unit_file_and_config_plan_the_same_from_the_delta(
    host: Host, tmp_path: Path
) -> None:
    units = host.new / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    (units / "app.service").write_text("[Service]\nExecStart=/usr/bin/sleep 600\n")
    (host.new / "etc/app/app.conf").write_text("workers = 8\n")
    by_image, by_delta = _both(host, tmp_path)
    assert by_delta == by_image
    assert [s.action for s in by_delta.steps] == ["daemon-reload", "restart"]


def test_package_delta_from_the_delta_is_the_images(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    for d in ("info", "updates"):
        (old / "var/lib/dpkg" / d).mkdir(parents=True)
    (old / "var/lib/dpkg/status").touch()
    for version, root in (("1.0", old), ("2.0", new)):
        if root is new:
            shutil.copytree(old, new, symlinks=True)
        files = {"/usr/bin/tool": f"tool {version}\n".encode(), "/etc/tool.conf": b"a = 1\n"}
        dpkg(root, "-i", str(build_deb(tmp_path / version, "tool", version, files)))
    delta = tmp_path / "update.delta"
    pack(str(old), str(new), delta)
    _, by_image = package_diff(str(old), str(new), use_cache=False)
    _, by_delta = package_diff(str(old), str(delta), use_cache=False)
    assert by_delta == by_image
    (change,) = by_delta.changes
    assert (change.name, change.change, change.old_version, change.new_version) == (
        "tool", "upgraded", "1.0", "2.0",
    )  # fmt: skip
    assert main(["packages", str(old), str(delta), "--json"]) == 0


def test_old_that_is_not_the_deltas_base_is_refused_when_a_file_is_read(
    host: Host, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for tree in (host.old, host.new):  # a unit file the update leaves alone
        (tree / "etc/systemd/system").mkdir(parents=True)
        (tree / "etc/systemd/system/app.service").write_text("[Service]\nExecStart=/bin/x\n")
    (host.new / "etc/app/app.conf").write_text("workers = 8\n")
    delta = tmp_path / "update.delta"
    pack(str(host.old), str(host.new), delta)
    other = tmp_path / "other"
    shutil.copytree(host.old, other, symlinks=True)  # OLD but for that unit file
    (other / "etc/systemd/system/app.service").write_text("[Service]\nExecStart=/bin/y\n")
    with pytest.raises(BadInput, match="is not this delta's base"):
        plan_update(str(other), str(delta), root=str(host.old), use_cache=False)
    assert main(["plan", str(other), str(delta), "--root", str(host.old)]) == 3
    assert "not this delta's base" in capsys.readouterr().err

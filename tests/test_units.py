"""Restart order from real unit files read out of an image."""

from __future__ import annotations

from pathlib import Path

from imgdiff import Manifest
from imgdiff.units import batches, dependencies, is_unit_file, parse_unit

from .conftest import write_tree

UNITS: dict[str, str | bytes] = {
    "usr/lib/systemd/system/db.service": "[Unit]\nDescription=db\n[Service]\nExecStart=/db\n",
    "usr/lib/systemd/system/cache.service": "[Unit]\nAfter=db.service\n",
    "usr/lib/systemd/system/web.service": "[Unit]\nAfter=cache.service network.target\n",
    "usr/lib/systemd/system/worker.service": "[Unit]\nPartOf=web.service\n",
    "usr/lib/systemd/system/log.service": "[Unit]\nAfter=db.service\n",
    # the admin's copy wins over the vendor's, and a drop-in resets then adds
    "etc/systemd/system/log.service": "[Unit]\nAfter=web.service\n",
    "etc/systemd/system/log.service.d/override.conf": "[Unit]\nAfter=\nAfter=cache.service\n",
    "etc/systemd/system/a.service": "[Unit]\nAfter=b.service\n",
    "etc/systemd/system/b.service": "[Unit]\nAfter=a.service\n",
    "etc/app.conf": "not a unit\n",
}


def _deps(tmp_path: Path) -> dict[str, set[str]]:
    m = Manifest.read(str(write_tree(tmp_path / "img", UNITS)), use_cache=False)
    files = m.read_files([p for p in m.entries if is_unit_file(p)])
    return dependencies(files)


def test_precedence_and_dropins(tmp_path: Path) -> None:
    deps = _deps(tmp_path)
    assert deps["log.service"] == {"cache.service"}
    assert deps["web.service"] == {"cache.service", "network.target"}
    assert deps["worker.service"] == {"web.service"}


def test_batches_put_dependencies_first_even_through_units_outside_the_plan(
    tmp_path: Path,
) -> None:
    deps = _deps(tmp_path)
    # cache.service is not in the plan, but web comes after it and it after db
    assert batches({"web.service", "db.service", "worker.service"}, deps) == [
        ["db.service"],
        ["web.service"],
        ["worker.service"],
    ]
    assert batches({"log.service", "web.service"}, deps) == [["log.service", "web.service"]]


def test_a_cycle_does_not_hang(tmp_path: Path) -> None:
    assert batches({"a.service", "b.service"}, _deps(tmp_path)) == [["a.service", "b.service"]]


def test_parse_ignores_other_sections_and_comments() -> None:
    text = (
        "[Service]\nAfter=nope.service\n[Unit]\n# After=comment.service\n"
        "Requires=x.service y.service\n"
    )
    assert parse_unit(text) == {"Requires": ["x.service", "y.service"]}

"""The JSON schemas in docs/schemas/ describe what the command really writes.

Every verb runs on the built-in example pair (with the demo's services running chrooted
in OLD, a dpkg package upgraded between the images, a delta applied under the running
services and rolled back), and each JSON document it writes must validate against its
schema; so must every schema's own example, and the schemas' closed vocabularies must be
the library's enums. A key added to a document without being added to its schema fails
here (the schemas are strict), so the documentation cannot fall behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import zstandard

from imgdiff import demo
from imgdiff.examples import build_example_pair
from imgdiff.model import Aspect, EntryType, Kind, Status, Via
from imgdiff.results import PackageChangeKind, ReasonCode, StepAction, VerdictKind

from .debs import build_deb, dpkg

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schemas"
NAMES = sorted(p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json"))


def _schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())  # type: ignore[no-any-return]


def _errors(name: str, doc: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(_schema(name))
    return [
        f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
        for e in validator.iter_errors(doc)
    ]


def test_there_is_a_schema_for_every_document() -> None:
    assert set(NAMES) >= {
        "delta", "packages", "snapshot", "stale", "verdict", "verify", "check", "pack",
        "apply", "manifest", "report", "fleet",
    }  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_and_its_example_validates(name: str) -> None:
    schema = _schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["examples"], f"{name}: no example"
    for example in schema["examples"]:
        assert not _errors(name, example)
    # strict: a key the code adds must be added here too (documented), or this fails
    assert schema["additionalProperties"] is False


def _enum_at(schema: dict[str, Any], *path: str) -> set[Any]:
    node: Any = schema
    for key in path:
        node = node[key]
    return set(node["enum"])


def test_vocabularies_are_the_librarys_enums() -> None:
    delta = _schema("delta")
    change = delta["properties"]["changes"]["items"]["properties"]
    assert set(change["status"]["enum"]) == {m.value for m in Status}
    assert set(change["aspects"]["items"]["enum"]) == {m.value for m in Aspect}
    assert set(change["kind"]["enum"]) == {m.value for m in Kind}
    entry_type = _enum_at(delta, "$defs", "entry", "properties", "type")
    assert entry_type == {m.value for m in EntryType}
    verdict = _schema("verdict")
    assert _enum_at(verdict, "properties", "verdict") == {m.value for m in VerdictKind}
    codes = verdict["properties"]["reason_codes"]["items"]["enum"]
    assert set(codes) == {m.value for m in ReasonCode}
    assert _enum_at(verdict, "$defs", "step", "properties", "action") == {
        m.value for m in StepAction
    }
    assert _enum_at(verdict, "$defs", "reason", "properties", "via") == {m.value for m in Via}
    package = _schema("packages")["properties"]["changes"]["items"]["properties"]
    assert set(package["change"]["enum"]) == {m.value for m in PackageChangeKind}


def _imgdiff(*argv: str, ok: tuple[int, ...] = (0,)) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "imgdiff", *argv], capture_output=True, text=True, check=False
    )
    assert done.returncode in ok, f"imgdiff {' '.join(argv)}: {done.returncode} {done.stderr}"
    return done.stdout


def _json(*argv: str, ok: tuple[int, ...] = (0,)) -> Any:
    return json.loads(_imgdiff(*argv, ok=ok))


@pytest.fixture
def example(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """The example pair with the demo's services (running in OLD) and a dpkg package at
    version 1.0 in OLD, 2.0 in NEW."""
    old, new = (Path(p) for p in build_example_pair(str(tmp_path)))
    for version, root in (("1.0", old), ("2.0", new)):
        demo.install_services(root)
        for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "var/lib/dpkg/status").touch()
        files = {"/usr/share/doc/demo-notes/README": f"notes {version}\n".encode()}
        dpkg(root, "-i", str(build_deb(tmp_path / version, "demo-notes", version, files)))
    with demo.running(old):
        yield old, new


def test_every_document_the_command_writes_validates(
    example: tuple[Path, Path], tmp_path: Path
) -> None:
    old, new = example
    o, n = str(old), str(new)
    docs: list[tuple[str, Any]] = []
    docs.append(("delta", _json("diff", o, n, "--json", "--no-cache")))
    packages = _json("packages", o, n, "--json", "--no-cache")
    assert packages["changes"], "the fixture upgrades a package"
    docs.append(("packages", packages))
    docs.append(("snapshot", _json("snapshot", "--root", o, "--json")))
    verdict = _json("plan", o, n, "--root", o, "--json", "--no-cache")
    assert verdict["steps"], "the fixture's services use changed files"
    docs.append(("verdict", verdict))
    docs.append(("verify", _json("verify", o, n, "--json", "--no-cache")))
    manifest = tmp_path / "old.manifest"
    _imgdiff("manifest", o, "-o", str(manifest), "--no-cache")
    with zstandard.ZstdDecompressor().stream_reader(manifest.open("rb")) as fh:
        docs.append(("manifest", json.loads(fh.read())))
    report = tmp_path / "report.json"
    _imgdiff("report", "--root", o, "--against", o, "-o", str(report), "--no-cache", "-q")
    docs.append(("report", json.loads(report.read_text())))
    fleet = _json("fleet", "plan", o, n, str(report), "--json", "--no-cache", "-q")
    docs.append(("fleet", fleet))
    delta = tmp_path / "u.delta"
    docs.append(("pack", _json("pack", o, n, "-o", str(delta), "--json")))
    # the update under the running services: they now use replaced files
    docs.append(("apply", _json("apply", str(delta), o, "--json", "--no-cache")))
    try:
        stale = _json("stale", "--root", o, "--json")
        assert stale["processes"], "the services map replaced files"
        docs.append(("stale", stale))
        check = _json("check", o, str(delta), "--json", "--no-cache", ok=(1,))
        assert check["processes"]
        docs.append(("check", check))
        # saved now, the snapshot's code marked deleted carries same_bytes (the report's
        # schema lacked it: every report of a host with a replaced library failed it)
        after = tmp_path / "after.json"
        _imgdiff("report", "--root", o, "-o", str(after), "-q")
        saved = json.loads(after.read_text())
        files = [f for p in saved["snapshot"]["processes"] for f in p["files"]]
        assert any("same_bytes" in f for f in files), "the services map deleted files"
        docs.append(("report", saved))
        _imgdiff("snapshot", "--root", o, "-o", str(after))
        docs.append(("snapshot", json.loads(after.read_text())))
    finally:
        rollback = _json("rollback", o, "--json")
    docs.append(("apply", rollback))
    errors = [error for name, doc in docs for error in _errors(name, doc)]
    assert not errors, "\n".join(errors)
    assert {name for name, _ in docs} == set(NAMES)  # every schema met a real document

"""`diff --json` is written in pieces: the same text as the whole document dumped at once,
without ever holding that text (or a dict per change) for a large delta."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import attrs
import jsonschema
import pytest

import imgdiff
from imgdiff.cli import main
from imgdiff.model import Aspect, Status
from imgdiff.report.json import delta_doc, write

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "schemas" / "delta.schema.json"


def _dumped(delta: imgdiff.Delta) -> str:
    return json.dumps(delta_doc(delta), ensure_ascii=True, separators=(",", ":"))


def _written(delta: imgdiff.Delta) -> str:
    out = io.StringIO()
    write(delta, out)
    return out.getvalue()


def _tree(root: Path, files: dict[str, bytes]) -> None:
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)


@pytest.fixture
def varied(tmp_path: Path) -> imgdiff.Delta:
    """A delta of two real trees with every status, aspects of each sort, a name that is
    not UTF-8, xattrs, symlinks and hard links."""
    old, new = tmp_path / "old", tmp_path / "new"
    common = {"etc/a.conf": b"a = 1\n", "usr/bin/tool": b"\x7fELF v1", "usr/share/x": b"x\n"}
    _tree(old, {**common, "usr/lib/gone.so": b"gone\n"})
    _tree(new, {**common, "usr/bin/tool": b"\x7fELF v2", "usr/lib/new.so": b"new\n"})
    (new / "etc/a.conf").chmod(0o600)  # mode only
    os.chown(new / "usr/share/x", 1, 1)  # owner only
    os.setxattr(new / "usr/lib/new.so", "user.note", b"\x00\xffbinary")
    os.setxattr(old / "usr/share/x", "user.tag", b"old")
    os.setxattr(new / "usr/share/x", "user.tag", b"new")
    for root, target in ((old, "tool"), (new, "../lib/new.so")):
        (root / "usr/bin/link").symlink_to(target)
    os.link(new / "usr/lib/new.so", new / "usr/lib/new-again.so")  # a hard-link group
    with open(os.path.join(os.fsencode(new / "etc"), b"caf\xe9\n\x1b"), "wb") as fh:
        fh.write(b"not UTF-8\n")
    return imgdiff.diff(str(old), str(new), use_cache=False)


def test_written_delta_is_the_dumped_document(varied: imgdiff.Delta) -> None:
    statuses = {c.status for c in varied.changes}
    aspects = {a for c in varied.changes for a in c.aspects}
    assert statuses == set(Status)
    assert aspects >= {Aspect.CONTENT, Aspect.MODE, Aspect.OWNER, Aspect.TARGET, Aspect.XATTRS}
    assert any(c.new is not None and c.new.hardlink for c in varied.changes)
    assert any("\udce9" in c.path for c in varied.changes)
    for delta in (varied, attrs.evolve(varied, owners=True), attrs.evolve(varied, changes=())):
        assert _written(delta) == _dumped(delta)
    assert "caf\\udce9\\n\\u001b" in _written(varied)


def test_other_results_are_written_as_dumped(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    verification = imgdiff.verify(str(tmp_path / "tree"), str(tmp_path / "tree"))
    out = io.StringIO()
    write(verification, out)
    assert out.getvalue() == json.dumps(
        verification.to_json(), ensure_ascii=True, separators=(",", ":")
    )


def test_large_delta_is_written_in_pieces_and_validates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "many.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tf:
        for i in range(50_000):
            info = tarfile.TarInfo(f"usr/share/many/d{i // 1000:02d}/f{i % 1000:03d}")
            info.mtime = 1_700_000_000
            tf.addfile(info)
    (tmp_path / "empty").mkdir()

    class Recording(io.StringIO):
        largest = 0

        def write(self, s: str) -> int:
            self.largest = max(self.largest, len(s))
            return super().write(s)

    out = Recording()
    monkeypatch.setattr("sys.stdout", out)
    assert main(["diff", str(tmp_path / "empty"), str(archive), "--json", "-q"]) == 0
    text = out.getvalue()
    assert text.endswith("}\n")
    assert out.largest < len(text) // 10  # never the whole document in one piece
    doc = json.loads(text)
    added = [c for c in doc["changes"] if c["status"] == "added"]
    assert len(added) == len(doc["changes"]) == 50_000 + 50 + 3  # and the dirs implied
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    assert not [e.message for e in validator.iter_errors(doc)]

"""Saved manifests keep the contents of package databases and unit files (version 2):
written from real trees and tar archives, read back exactly, and checked as untrusted
input (each kept file must be the content its entry's size and digest name)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from imgdiff import Manifest, Unsupported
from imgdiff.cli import main
from imgdiff.errors import BadInput, LimitExceeded
from imgdiff.image.base import Limits

from .conftest import gnu_tar, write_tree

STATUS = "/var/lib/dpkg/status"
UNIT = "/usr/lib/systemd/system/app.service"
RPMDB = "/var/lib/rpm/rpmdb.sqlite"
APP = "/etc/app.conf"
BINARY = b"SQLite format 3\0\xff\xfe\x80" + bytes(range(256))  # not UTF-8: kept as base64
FILES: dict[str, str | bytes] = {
    STATUS[1:]: "Package: app\nStatus: install ok installed\nVersion: 1\n\n",
    UNIT[1:]: "[Unit]\nDescription=caf\u00e9\n",  # UTF-8 text beyond ASCII
    RPMDB[1:]: BINARY,
    APP[1:]: "workers = 4\n",  # no package database: its content is not kept
    "var/lib/dpkg/info/app.list": "/etc/app.conf\n",
    "var/lib/dpkg/info/empty.md5sums": "",
}
KEPT = {"/" + rel: v.encode() if isinstance(v, str) else v for rel, v in FILES.items()}
del KEPT[APP]

Doc = dict[str, Any]


def _decode(path: Path) -> Doc:
    with open(path, "rb") as fh:
        doc: Doc = json.loads(zstandard.ZstdDecompressor().stream_reader(fh).read())
    return doc


def _encode(doc: Doc, path: Path) -> Path:
    raw = json.dumps(doc, separators=(",", ":")).encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(raw))
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tree(tmp_path_factory.mktemp("kept") / "tree", FILES)


@pytest.fixture(scope="module")
def saved(tree: Path) -> Path:
    out = tree.parent / "tree.manifest"
    Manifest.read(str(tree), use_cache=False).save(out)
    return out


def test_saved_manifest_keeps_package_databases_and_unit_files(saved: Path) -> None:
    doc = _decode(saved)
    assert doc["schema"] == "imgdiff.manifest/2"
    assert set(doc["files"]) == set(KEPT)
    assert doc["files"][UNIT] == "[Unit]\nDescription=caf\u00e9\n"  # text stays text
    assert doc["files"][RPMDB].keys() == {"base64"}
    loaded = Manifest.load(saved)
    assert loaded.has_databases
    assert not loaded.has_contents
    assert loaded.read_files([*KEPT, "/no/such/file", "/var/lib/dpkg"]) == KEPT


def test_tar_saved_through_the_cli_keeps_the_same_files(tree: Path, tmp_path: Path) -> None:
    archive = gnu_tar(tree, tmp_path / "t.tar.zst", "zstd")
    assert main(["manifest", str(archive), "-o", str(tmp_path / "m"), "--no-cache"]) == 0
    assert Manifest.load(tmp_path / "m").read_files(KEPT) == KEPT


def test_contents_it_did_not_keep_are_unsupported_not_missing(saved: Path) -> None:
    with pytest.raises(Unsupported, match=r"/etc/app\.conf: a saved manifest keeps the contents"):
        Manifest.load(saved).read_files([STATUS, APP])


def test_version_1_still_loads_and_keeps_nothing(tree: Path, tmp_path: Path) -> None:
    doc = Manifest.read(str(tree), use_cache=False).document()  # no files: version 1
    assert doc["schema"] == "imgdiff.manifest/1"
    assert "files" not in doc
    loaded = Manifest.load(_encode(doc, tmp_path / "v1"))
    assert not loaded.has_databases
    with pytest.raises(Unsupported, match="holds no file contents"):
        loaded.read_files([STATUS])


def test_resaving_a_loaded_manifest_keeps_its_files(saved: Path, tmp_path: Path) -> None:
    Manifest.load(saved).save(tmp_path / "again")
    again = _decode(tmp_path / "again")
    assert again["schema"] == "imgdiff.manifest/2"
    assert again["files"] == _decode(saved)["files"]


def _set(value: Any, *keys: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        for key in keys[:-1]:
            doc = doc[key]
        doc[keys[-1]] = value

    return mutate


def _drop_files(doc: Doc) -> None:
    del doc["files"]


MALFORMED: list[tuple[str, Callable[[Doc], None], str]] = [
    ("version-1-with-files", _set("imgdiff.manifest/1", "schema"), "version 2 has"),
    ("version-2-without-files", _drop_files, "top-level key 'files' is missing"),
    ("files-list", _set([], "files"), "top-level key 'files' has a list"),
    ("names-no-entry", _set("x", "files", "/etc/none"), r"files\[/etc/none\] names no regular"),
    ("names-a-directory", _set("", "files", "/var/lib/dpkg"), "names no regular file"),
    ("other-content", _set("Package: evil\n", "files", STATUS), "is not the content its entry"),
    ("number", _set(5, "files", STATUS), "is neither null, a string nor"),
    ("lone-surrogate", _set("\ud800", "files", STATUS), "holds a lone surrogate"),
    ("base64-extra-key", _set({"base64": "", "x": 1}, "files", RPMDB), "is neither null"),
    ("base64-not-base64", _set({"base64": "!!"}, "files", RPMDB), r"rpmdb\.sqlite\] is not base64"),
    ("base64-number", _set({"base64": 1}, "files", RPMDB), "is an integer, not a string"),
]


@pytest.mark.parametrize(
    ("mutate", "message"), [pytest.param(m, msg, id=name) for name, m, msg in MALFORMED]
)
def test_malformed_kept_files_are_bad_input(
    saved: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mutate: Callable[[Doc], None],
    message: str,
) -> None:
    doc = copy.deepcopy(_decode(saved))
    mutate(doc)
    bad = _encode(doc, tmp_path / "bad.manifest")
    with pytest.raises(BadInput, match=message):
        Manifest.load(bad)
    assert main(["packages", str(bad), str(bad)]) == 3
    assert capsys.readouterr().err.count("\n") == 1


def test_unreadable_file_loads_as_absent(saved: Path, tmp_path: Path) -> None:
    doc = copy.deepcopy(_decode(saved))
    doc["files"][STATUS] = None  # could not be read when saved
    loaded = Manifest.load(_encode(doc, tmp_path / "m"))
    assert STATUS not in loaded.read_files([STATUS, UNIT])


def test_kept_bytes_are_bounded_by_limits(saved: Path) -> None:
    total = sum(len(v) for v in KEPT.values())
    with pytest.raises(LimitExceeded, match=f"files hold more than {total - 1} bytes"):
        Manifest.load(saved, Limits(max_capture_bytes=total - 1))
    Manifest.load(saved, Limits(max_capture_bytes=total))

"""The package-level delta between two real dpkg roots, through the API and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import zstandard

from imgdiff import Manifest
from imgdiff.cli import main
from imgdiff.manifest import saved_files
from imgdiff.packages.view import PackageView
from imgdiff.pipeline import diff, package_diff
from imgdiff.report.json import delta_doc, dumps
from imgdiff.results import PackageDelta

from .conftest import gnu_tar
from .debs import LIBZ, build_deb, dpkg, new_root

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")

LIB = "/usr/lib/x86_64-linux-gnu/libdemo.so.1"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("pkgpair")
    libz = Path(LIBZ).read_bytes()
    true = Path("/bin/true").read_bytes()

    def lib(version: str, payload: bytes) -> Path:
        return build_deb(
            work, "demo-lib", version,
            {"/lib/x86_64-linux-gnu/libdemo.so.1": payload, "/etc/demo/demo.conf": b"a = 1\n",
             "/usr/share/doc/demo-lib/README": b"demo\n"},
            conffiles=("/etc/demo/demo.conf",),
        )  # fmt: skip

    rebuilt = work / "rebuilt"  # same name and version as in work/: another directory
    rebuilt.mkdir()
    app_v1 = build_deb(work, "demo-app", "1.0-1", {"/usr/bin/demo-app": true}, depends="demo-lib")
    app_rebuilt = build_deb(
        rebuilt, "demo-app", "1.0-1", {"/usr/bin/demo-app": true + b"\0"}, depends="demo-lib"
    )
    tool_new = build_deb(work, "demo-tool", "2.0", {"/usr/bin/demo-tool": b"#!/bin/sh\n"})
    tool_old = build_deb(work, "demo-tool", "1.5", {"/usr/bin/demo-tool": b"#!/bin/sh\n# 1.5\n"})
    gone = build_deb(work, "gone", "1", {"/usr/share/gone/data": b"bye\n"})
    fresh = build_deb(work, "fresh", "1", {"/usr/share/fresh/data": b"hi\n"})

    old = new_root(work / "old")
    dpkg(
        old, "--force-depends", "-i", str(lib("1.0-1", libz)), str(app_v1), str(tool_new), str(gone)
    )
    new = new_root(work / "new")
    dpkg(new, "--force-depends", "-i", str(lib("2:1.1-1", libz + b"\0patched")), str(app_rebuilt),
         str(tool_old), str(fresh))  # fmt: skip
    (new / "etc/motd").write_text("hand-made\n")  # owned by no package
    (new / "usr/share/doc/demo-lib/README").write_text("edited after install\n")
    return old, new


def _changes(pdelta: PackageDelta) -> dict[str, tuple[str, str | None, str | None]]:
    return {c.name: (c.change, c.old_version, c.new_version) for c in pdelta.changes}


def test_package_delta_kinds(pair: tuple[Path, Path]) -> None:
    old, new = pair
    _, pdelta = package_diff(str(old), str(new), use_cache=False)
    assert _changes(pdelta) == {
        "demo-lib": ("upgraded", "1.0-1", "2:1.1-1"),
        "demo-app": ("rebuilt", "1.0-1", "1.0-1"),
        "demo-tool": ("downgraded", "2.0", "1.5"),
        "gone": ("removed", "1", None),
        "fresh": ("added", None, "1"),
    }
    lib = next(c for c in pdelta.changes if c.name == "demo-lib")
    assert LIB in lib.paths
    assert "/usr/share/doc/demo-lib/README" in lib.paths
    assert next(c for c in pdelta.changes if c.name == "demo-lib").reverse_depends == (
        "demo-app:amd64",
    )


def test_unowned_and_locally_modified(pair: tuple[Path, Path]) -> None:
    old, new = pair
    _, pdelta = package_diff(str(old), str(new), use_cache=False)
    assert "/etc/motd" in pdelta.unowned
    assert LIB not in pdelta.unowned
    assert [(m.path, m.package) for m in pdelta.modified_locally] == [
        ("/usr/share/doc/demo-lib/README", "demo-lib:amd64")
    ]


def test_file_changes_name_their_owner(pair: tuple[Path, Path]) -> None:
    old, new = pair
    delta, _ = package_diff(str(old), str(new), use_cache=False)
    by_path = {c.path: c for c in delta.changes}
    assert by_path[LIB].packages == ("dpkg:demo-lib:amd64",)
    assert by_path["/etc/motd"].packages == ()


def test_tar_images_give_the_same_package_delta(pair: tuple[Path, Path], tmp_path: Path) -> None:
    old, new = pair
    ot = gnu_tar(old, tmp_path / "old.tar.zst", "zstd")
    nt = gnu_tar(new, tmp_path / "new.tar", None)
    _, from_tars = package_diff(str(ot), str(nt))
    _, from_dirs = package_diff(str(old), str(new), use_cache=False)
    assert from_tars.changes == from_dirs.changes
    assert from_tars.modified_locally == from_dirs.modified_locally


def test_packages_cli_json(pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    old, new = pair
    assert main(["packages", str(old), str(new), "--json", "--no-cache"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "imgdiff.packages/1"
    for change in doc["changes"]:
        assert set(change) >= {
            "manager",
            "name",
            "arch",
            "change",
            "old_version",
            "new_version",
            "paths",
        }
    assert {c["manager"] for c in doc["changes"]} == {"dpkg"}
    assert "/etc/motd" in doc["unowned"]


def test_saved_manifests_give_the_images_package_delta(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = pair
    tars = [gnu_tar(old, tmp_path / "old.tar", None), gnu_tar(new, tmp_path / "new.tar", None)]
    saved = [tmp_path / "old.m", tmp_path / "new.m"]
    for image, manifest in zip(tars, saved, strict=True):
        assert main(["manifest", str(image), "-o", str(manifest), "--no-cache"]) == 0
    capsys.readouterr()

    def packages(a: Path, b: Path) -> dict[str, Any]:
        assert main(["packages", str(a), str(b), "--json", "--no-cache"]) == 0
        doc: dict[str, Any] = json.loads(capsys.readouterr().out)
        return doc

    from_tars, from_saved = packages(*tars), packages(*saved)
    assert len(from_tars["changes"]) == 5
    assert from_saved["changes"] == from_tars["changes"]
    assert from_saved["unowned"] == from_tars["unowned"]
    assert from_tars["warnings"] == []
    # the one thing a manifest cannot tell: whether changed files match their packages'
    # digests (it holds no contents of them); it says so instead of reporting none silently
    assert [m["path"] for m in from_tars["modified_locally"]] == ["/usr/share/doc/demo-lib/README"]
    assert from_saved["modified_locally"] == []
    assert [w["message"] for w in from_saved["warnings"]] == [
        "saved manifest: 5 changed files not checked against their packages' digests "
        "(it keeps no contents)"
    ]


CORPUS = Path("/var/tmp/imgdiff-corpus")


@pytest.mark.skipif(not (CORPUS / "old.tar").exists(), reason="needs the real image pair")
def test_real_pair_saved_manifests_give_the_archives_package_delta(tmp_path: Path) -> None:
    tars = [str(CORPUS / "old.tar"), str(CORPUS / "new.tar")]
    saved = [str(tmp_path / "old.m"), str(tmp_path / "new.m")]
    keep = saved_files()  # kept on the archive's one pass
    for image, out in zip(tars, saved, strict=True):
        Manifest.read(image, capture=keep).save(out, keep=keep)
    _, from_tars = package_diff(*tars)
    _, from_saved = package_diff(*saved)
    assert len(from_tars.changes) > 20
    assert from_saved.changes == from_tars.changes
    assert from_saved.unowned == from_tars.unowned
    assert from_tars.modified_locally == from_saved.modified_locally == ()
    assert from_tars.warnings == ()
    (note,) = from_saved.warnings
    assert "changed files not checked against their packages' digests" in note.message


def test_version_1_manifest_side_says_it_has_no_packages(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    old, new = pair
    doc = Manifest.read(str(old), use_cache=False).document()  # version 1: no files kept
    raw = json.dumps(doc, separators=(",", ":")).encode()
    (tmp_path / "old.m").write_bytes(zstandard.ZstdCompressor().compress(raw))
    _, pdelta = package_diff(str(tmp_path / "old.m"), str(new), use_cache=False)
    assert [w.message for w in pdelta.warnings] == ["saved manifest: no package databases read"]
    assert {c.change for c in pdelta.changes} == {"added"}


def _with_pip_dist(tree: Path, version: str, payload: str) -> None:
    site = tree / "usr/lib/python3/dist-packages"
    info = site / f"demo_py-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: demo-py\nVersion: {version}\n")
    (site / "demo_py.py").write_text(payload)
    (info / "RECORD").write_text(
        f"demo_py.py,,\ndemo_py-{version}.dist-info/METADATA,,\n"
        f"demo_py-{version}.dist-info/RECORD,,\n"
    )


@pytest.mark.parametrize("as_tar", [False, True])
def test_diff_names_the_owners_the_package_delta_names(
    pair: tuple[Path, Path], tmp_path: Path, as_tar: bool
) -> None:
    old, new = (tmp_path / "old", tmp_path / "new")
    shutil.copytree(pair[0], old, symlinks=True)
    shutil.copytree(pair[1], new, symlinks=True)
    _with_pip_dist(old, "1.0", "x = 1\n")
    _with_pip_dist(new, "1.1", "x = 2\n")
    a, b = str(old), str(new)
    if as_tar:
        a, b = str(gnu_tar(old, tmp_path / "old.tar")), str(gnu_tar(new, tmp_path / "new.tar"))
    lazily = diff(a, b, use_cache=False, owners=True)
    whole, _ = package_diff(a, b, use_cache=False)
    assert dumps(delta_doc(lazily)) == dumps(delta_doc(whole))
    owners = {c.path: c.packages for c in lazily.changes}
    assert owners[LIB] == ("dpkg:demo-lib:amd64",)
    assert owners["/usr/lib/python3/dist-packages/demo_py.py"] == (
        "pip:demo-py:/usr/lib/python3/dist-packages",
    )
    assert owners["/usr/share/gone/data"] == ("dpkg:gone:amd64",)  # removed: OLD's owner
    assert owners["/etc/motd"] == ()


def test_restricted_view_owns_what_the_whole_view_owns(pair: tuple[Path, Path]) -> None:
    for tree in pair:
        m = Manifest.read(str(tree), use_cache=False)
        whole = PackageView.read(m)
        asked = set(m.entries) | {"/lib/x86_64-linux-gnu/libdemo.so.1", "/nowhere"}
        some = PackageView.read(m, only=asked)
        for path in asked:
            keys = [(p.manager, p.key) for p in some.owners(path)]
            assert keys == [(p.manager, p.key) for p in whole.owners(path)], path

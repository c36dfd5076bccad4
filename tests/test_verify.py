"""`imgdiff verify TREE IMAGE`: a live tree checked against the image it should be."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import imgdiff
from imgdiff.archive.apply import apply
from imgdiff.archive.pack import pack
from imgdiff.cli import main
from imgdiff.verify import verify

from .conftest import gnu_tar, write_tree

TREE: dict[str, str | bytes] = {
    "usr/bin/app": b"\x7fELF app v1",
    "etc/app.conf": "workers = 4\n",
    "etc/hostname": "image\n",
    "var/log/app.log": "started\n",
    "var/lib/dpkg/status": "",
    "usr/share/doc/app/README": "docs\n",
}


@pytest.fixture
def shipped(tmp_path: Path) -> tuple[Path, Path]:
    """A tree and the tar image it was made from."""
    tree = write_tree(tmp_path / "tree", TREE)
    return tree, gnu_tar(tree, tmp_path / "image.tar")


def _verify_json(
    tree: Path, image: Path, *extra: str, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    assert main(["verify", str(tree), str(image), "--json", "--no-cache", *extra]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def test_a_tree_matches_the_image_it_was_made_from(
    shipped: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    tree, image = shipped
    doc = _verify_json(tree, image, capsys=capsys)
    assert doc["schema"] == "imgdiff.verify/1"
    assert doc["matches"] is True
    assert doc["differences"] == []


def test_differences_are_named_from_the_image_to_the_tree(
    shipped: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    tree, image = shipped
    (tree / "etc/app.conf").write_text("workers = 8\n")
    (tree / "usr/bin/app").chmod(0o700)
    (tree / "usr/share/doc/app/README").unlink()
    (tree / "usr/bin/extra").write_bytes(b"hand-copied\n")
    # what a running system writes for itself is ignored unless --exact
    (tree / "var/log/app.log").write_text("started\nstopped\n")
    (tree / "etc/hostname").write_text("box-17\n")
    doc = _verify_json(tree, image, capsys=capsys)
    assert doc["matches"] is False
    found = {d["path"]: (d["status"], tuple(d["aspects"])) for d in doc["differences"]}
    assert found == {
        "/etc/app.conf": ("modified", ("content",)),
        "/usr/bin/app": ("modified", ("mode",)),
        "/usr/share/doc/app/README": ("removed", ()),
        "/usr/bin/extra": ("added", ()),
    }
    exact = _verify_json(tree, image, "--exact", capsys=capsys)
    paths = {d["path"] for d in exact["differences"]}
    assert {"/var/log/app.log", "/etc/hostname"} <= paths
    assert exact["ignored"] == []


def test_console_output_and_bad_input(
    shipped: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree, image = shipped
    table = ["--no-cache", "--format", "table"]
    assert main(["verify", str(tree), str(image), *table]) == 0
    assert "matches" in capsys.readouterr().out
    (tree / "etc/app.conf").write_text("workers = 8\n")
    assert main(["verify", str(tree), str(image), *table]) == 0
    out = capsys.readouterr().out
    assert "differs from" in out
    assert "/etc/app.conf" in out
    assert main(["verify", str(image), str(image)]) == 3  # a tar is not a tree to check
    assert "not a directory" in capsys.readouterr().err


def test_verify_against_a_saved_manifest_and_after_an_update(
    shipped: tuple[Path, Path], tmp_path: Path
) -> None:
    """The last step of plan -> act -> verify: the tree is NEW now, not OLD."""
    tree, image = shipped
    saved = tmp_path / "old.manifest"
    assert main(["manifest", str(image), "-o", str(saved), "--no-cache"]) == 0
    new = tmp_path / "new"
    shutil.copytree(tree, new, symlinks=True)
    (new / "usr/bin/app").write_bytes(b"\x7fELF app v2")
    assert verify(str(tree), str(saved), use_cache=False).matches
    assert not verify(str(tree), str(new), use_cache=False).matches
    # act: install NEW's file the way a package manager does (write, then rename)
    staged = tree / "usr/bin/.app.new"
    staged.write_bytes((new / "usr/bin/app").read_bytes())
    os.chmod(staged, (new / "usr/bin/app").stat().st_mode)
    os.replace(staged, tree / "usr/bin/app")
    after = verify(str(tree), str(new), use_cache=False)
    assert after.matches, after.differences
    assert [c.path for c in verify(str(tree), str(saved), use_cache=False).differences] == [
        "/usr/bin/app"
    ]


@pytest.mark.parametrize("var", ["var/lib", "none"])
def test_exact_leaves_out_imgdiffs_own_state_directory(
    tmp_path: Path, var: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a clean apply `verify --exact` listed every /var/lib/imgdiff/* (and the /var,
    /var/lib apply made for it) as added: like `check`, it leaves imgdiff's state out."""
    old = write_tree(tmp_path / "old", {"etc/app.conf": "v1\n"})
    if var != "none":
        (old / var).mkdir(parents=True)
    new = shutil.copytree(old, tmp_path / "new", symlinks=True)
    (new / "etc/app.conf").write_text("v2\n")
    delta = tmp_path / "d.idd"
    pack(str(old), str(new), delta)
    tree = shutil.copytree(old, tmp_path / "tree", symlinks=True)
    apply(str(delta), str(tree))
    assert (tree / "var/lib/imgdiff/journal.json").exists()
    assert verify(str(tree), str(delta), ignore=()).differences == ()
    doc = _verify_json(tree, new, "--exact", capsys=capsys)
    assert (doc["matches"], doc["differences"]) == (True, [])
    (tree / "var/lib/extra").write_text("x\n")  # the rest of /var/lib still counts
    assert [c.path for c in verify(str(tree), str(delta), ignore=()).differences] == [
        "/var/lib/extra"
    ]


def test_a_tree_whose_hard_links_differ_from_the_image_does_not_match(tmp_path: Path) -> None:
    """Same bytes and metadata everywhere, but the image's two names of one inode are two
    files in the tree: a write to one would no longer change the other."""
    image = write_tree(tmp_path / "image", {"a": "h\n", "f": "1\n"})
    os.link(image / "a", image / "b")
    tree = tmp_path / "tree"
    shutil.copytree(image, tree, symlinks=True)  # copies: two inodes
    os.utime(tree / "b", ns=(os.stat(image / "b").st_atime_ns, os.stat(image / "b").st_mtime_ns))
    result = verify(str(tree), str(image), use_cache=False)
    assert not result.matches
    assert [(c.path, c.status.value, [a.value for a in c.aspects]) for c in result.differences] == [
        ("/a", "modified", ["hardlink"]),
        ("/b", "modified", ["hardlink"]),
    ]
    assert imgdiff.diff(str(image), str(tree), use_cache=False).changes == ()

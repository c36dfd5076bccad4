"""Several delta archives applied in one go: the chain is checked before the tree is touched."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from imgdiff import BadInput
from imgdiff.archive.apply import apply_chain, rollback
from imgdiff.archive.pack import pack
from imgdiff.cli import main

from .conftest import write_tree


def _same(want: Path, tree: Path) -> list[str]:
    """rsync's itemised differences (the state directory, the /var and /var/lib apply made
    to hold it in a tree without them, and the root's mtime aside)."""
    out = subprocess.run(
        ["rsync", "-anicX", "--delete", "--numeric-ids", "--exclude=/var/lib/imgdiff",
         f"{want}/", f"{tree}/"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    ours = ("cannot delete non-empty directory: var", "*deleting   var/")
    return [
        line for line in out.splitlines() if not line.endswith(" ./") and not line.startswith(ours)
    ]


@pytest.fixture
def versions(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """Trees v1, v2, v3 (each a small update of the last) and the deltas 1→2, 2→3."""
    v1 = write_tree(tmp_path / "v1", {"etc/app.conf": "v1\n", "usr/bin/app": "app 1\n"})
    v2 = write_tree(tmp_path / "v2", {"etc/app.conf": "v2\n", "usr/bin/app": "app 2\n"})
    v3 = write_tree(
        tmp_path / "v3", {"etc/app.conf": "v3\n", "usr/bin/app": "app 2\n", "usr/bin/new": "n\n"}
    )
    deltas = [tmp_path / "1-2.delta", tmp_path / "2-3.delta"]
    pack(str(v1), str(v2), deltas[0])
    pack(str(v2), str(v3), deltas[1])
    return [v1, v2, v3], deltas


def test_a_chain_of_deltas_takes_the_tree_from_the_first_base_to_the_last_image(
    tmp_path: Path, versions: tuple[list[Path], list[Path]]
) -> None:
    (v1, _, v3), deltas = versions
    tree = tmp_path / "tree"
    subprocess.run(["cp", "-a", str(v1), str(tree)], check=True)
    results = apply_chain([str(d) for d in deltas], str(tree))
    assert [r.operations > 0 for r in results] == [True, True]
    assert _same(v3, tree) == []
    history = json.loads((tree / "var/lib/imgdiff/history.json").read_text())
    assert [h["new"] for h in history] == [r.new_identity for r in results]
    rollback(str(tree))  # the last one: back to v2
    assert _same(versions[0][1], tree) == []


def test_a_broken_chain_is_refused_before_the_tree_is_touched(
    tmp_path: Path, versions: tuple[list[Path], list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    (v1, _, _), deltas = versions
    tree = tmp_path / "tree"
    subprocess.run(["cp", "-a", str(v1), str(tree)], check=True)
    with pytest.raises(BadInput, match="breaks the chain"):
        apply_chain([str(deltas[1]), str(deltas[0])], str(tree))
    assert _same(v1, tree) == []
    assert not (tree / "var").exists()  # not even a state directory
    assert main(["apply", str(deltas[0]), str(deltas[0]), str(tree)]) == 3
    assert "breaks the chain" in capsys.readouterr().err
    assert _same(v1, tree) == []

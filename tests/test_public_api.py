"""The public face: one namespace, one exception tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import imgdiff
from imgdiff.errors import escape_path

from .conftest import write_tree


@pytest.mark.parametrize("name", imgdiff.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(imgdiff, name) is not None


@pytest.mark.parametrize("first", ["verify_restarted", "verify"])
def test_lazy_names_win_over_submodules_of_the_same_name(first: str) -> None:
    # `imgdiff.verify` is both a lazy name and a submodule; whichever loads first, the
    # package attribute is the function (a fresh interpreter: this one has loaded both)
    code = (
        f"import imgdiff, types; imgdiff.{first}; import imgdiff.verify as m; "
        "print(isinstance(imgdiff.verify, types.FunctionType), callable(imgdiff.verify))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = imgdiff.nope


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (imgdiff.BadInput, ValueError),
        (imgdiff.Unsupported, NotImplementedError),
        (imgdiff.NoSuchProcess, ProcessLookupError),
        (imgdiff.AccessDenied, PermissionError),
        (imgdiff.ElfParseError, ValueError),
    ],
)
def test_every_error_is_an_imgdiff_error_and_its_builtin(
    error: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(error, imgdiff.ImgdiffError)
    assert issubclass(error, builtin)


def test_process_errors_carry_the_pid() -> None:
    exc = imgdiff.NoSuchProcess(42, "42: gone while reading maps")
    assert exc.pid == 42
    assert str(exc) == "42: gone while reading maps"
    with pytest.raises(imgdiff.ImgdiffError):
        raise imgdiff.AccessDenied(7, "7: maps: Permission denied")


@pytest.mark.parametrize("code", range(0x80))
def test_messages_escape_each_ascii_character_that_would_break_a_line(code: int) -> None:
    ch = chr(code)
    want = f"\\x{code:02x}" if code < 0x20 or code == 0x7F else "\\\\" if ch == "\\" else ch
    assert escape_path(f"/etc/a{ch}b") == f"/etc/a{want}b"


def test_messages_escape_undecodable_bytes_and_keep_other_text() -> None:
    raw = os.fsdecode(b"/srv/caf\xe9/\xc3\xa9t\xc3\xa9")  # Latin-1 byte, then UTF-8
    assert escape_path(raw) == "/srv/caf\\xe9/\u00e9t\u00e9"


def test_import_stays_cheap() -> None:
    # the namespace loads on first use: importing it must not pull in the stages
    code = "import imgdiff, sys; print(sorted(m for m in sys.modules if m.startswith('imgdiff')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['imgdiff', 'imgdiff._lazy', 'imgdiff.errors']"


def test_workers_1_never_forks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # threaded callers need the library to stay in their process
    old, new = tmp_path / "old", tmp_path / "new"
    for root, text in ((old, "a"), (new, "b")):
        root.mkdir()
        for i in range(200):  # enough same-size pairs that digests would be forked
            (root / f"f{i:03d}").write_text(text)

    def no_fork() -> int:
        raise AssertionError("forked")

    with_fork = imgdiff.diff(str(old), str(new), use_cache=False)
    monkeypatch.setattr(os, "fork", no_fork)
    alone = imgdiff.diff(str(old), str(new), use_cache=False, workers=1)
    assert len(alone.changes) == len(with_fork.changes) == 200
    snap = imgdiff.Snapshot.capture(workers=1)
    assert snap.processes  # read in this process


def test_every_image_tree_and_file_argument_may_be_a_pathlib_path(tmp_path: Path) -> None:
    """A `pathlib.Path` where the API takes a path raised AttributeError ('PosixPath'
    object has no attribute 'read' / 'isascii') out of diff, package_diff, verify,
    pack, plan_update, Manifest.read, apply and rollback."""
    old = write_tree(tmp_path / "old", {"etc/app.conf": "a = 1\n", "bin/tool": "x"})
    new = write_tree(tmp_path / "new", {"etc/app.conf": "a = 2\n", "bin/tool": "x"})
    tree = tmp_path / "tree"
    shutil.copytree(old, tree)
    as_text = imgdiff.diff(str(old), str(new), use_cache=False)
    assert imgdiff.diff(old, new, use_cache=False).changes == as_text.changes
    assert imgdiff.package_diff(old, new, use_cache=False)[0].changes == as_text.changes
    assert imgdiff.Manifest.read(old, use_cache=False).entries.keys() == {
        "/etc",
        "/etc/app.conf",
        "/bin",
        "/bin/tool",
    }
    assert not imgdiff.verify(tree, old, use_cache=False).differences
    plan = imgdiff.plan_update(old, new, root=tree, use_cache=False)
    assert plan.verdict.verdict is imgdiff.VerdictKind.NO_ACTION
    delta = tmp_path / "update.delta"
    assert imgdiff.pack(old, new, delta).path == str(delta)
    imgdiff.apply(delta, tree)
    assert (tree / "etc/app.conf").read_text() == "a = 2\n"
    imgdiff.rollback(tree)
    assert (tree / "etc/app.conf").read_text() == "a = 1\n"
    snap = imgdiff.Snapshot.capture(tree)
    assert imgdiff.stale(snap, procfs=Path("/proc"), root=tree).processes == ()


def test_a_missing_root_or_output_directory_is_bad_input_naming_it(tmp_path: Path) -> None:
    """As the command line says it (exit 3): a root that does not exist raised
    FileNotFoundError, a regular file given as the root was an empty snapshot, and pack
    to a missing directory failed at the end, on its temporary file."""
    old = write_tree(tmp_path / "old", {"etc/app.conf": "a = 1\n"})
    afile = old / "etc/app.conf"
    with pytest.raises(imgdiff.BadInput, match=r"^/nonexistent: no such directory$"):
        imgdiff.plan_update(old, old, root="/nonexistent", use_cache=False)
    with pytest.raises(imgdiff.BadInput, match=r"^/nonexistent: no such directory$"):
        imgdiff.Snapshot.capture("/nonexistent")
    with pytest.raises(imgdiff.BadInput, match=rf"^{afile}: not a directory$"):
        imgdiff.Snapshot.capture(afile)
    # refused before OLD is read (OLD does not exist either)
    with pytest.raises(imgdiff.BadInput, match="cannot write: no such directory /nonexistent"):
        imgdiff.pack("/nonexistent-old", old, "/nonexistent/x.delta")

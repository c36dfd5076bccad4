"""Differential test: the paths imgdiff reports changed are the paths rsync would transfer.

For random pairs of real trees (seeded), `rsync -anic --delete --numeric-ids -X OLD/ NEW/`
itemizes every path whose content (by checksum), type, symlink target, permissions,
owner or xattrs differ, and every path only one side has. imgdiff must report exactly that
set of paths (added, removed or modified), reading the trees as directories, the old one
as a GNU tar archive, or both as archives. Times are ignored by both (rsync's "t" alone
does not count). Without -H rsync sees through hard links: a link broken into an equal
copy is no change for either tool.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

import imgdiff

from .conftest import gnu_tar
from .tarzoo import probe, show

pytestmark = pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")

SEEDS = range(30)
MODES = ("dir-dir", "tar-dir", "tar-tar")
OWNERS = (0, 1000, 1001, 65534, 70000)
FILE_MODES = (0o644, 0o600, 0o755, 0o640, 0o4755, 0o2750, 0o444)
DIR_MODES = (0o755, 0o700, 0o750, 0o1777, 0o555)


class TreeMaker:
    """Random real trees and random edits of them, all drawn from one seeded generator."""

    def __init__(self, seed: int, xattrs: bool) -> None:
        self.rng = random.Random(seed)
        self.xattrs = xattrs
        self.counter = 0  # names made so far: every name is new
        self.made = 0  # entries made so far
        self.dirs: list[Path] = []  # directories made so far

    def name(self) -> str:
        self.counter += 1
        stem = self.rng.choice(("f", "lib", "data", "conf", "bin", "x y"))
        return f"{stem}{self.counter}"

    def data(self) -> bytes:
        return self.rng.randbytes(self.rng.choice((0, 1, 17, 512, 700, 3000)))

    def owner(self, path: Path) -> None:
        os.chown(path, self.rng.choice(OWNERS), self.rng.choice(OWNERS), follow_symlinks=False)

    def xattr(self, path: Path) -> None:
        if self.xattrs and self.rng.random() < 0.15:
            os.setxattr(path, f"user.k{self.rng.randint(0, 2)}", self.rng.randbytes(6))

    def file(self, path: Path) -> None:
        self.made += 1
        path.write_bytes(self.data())
        self.owner(path)
        os.chmod(path, self.rng.choice(FILE_MODES))  # after chown, which clears setuid
        self.xattr(path)

    def directory(self, path: Path, entries: int) -> None:
        self.made += 1
        self.dirs.append(path)
        path.mkdir()
        self.owner(path)
        self.xattr(path)
        for _ in range(entries):
            self.add(path, depth=1)
        os.chmod(path, self.rng.choice(DIR_MODES))

    def symlink(self, path: Path) -> None:
        target = self.rng.choice(("../f1", "lib2/x", "/etc/passwd", "missing", self.name()))
        os.symlink(target, path)
        self.made += 1
        self.owner(path)

    def add(self, parent: Path, depth: int = 0) -> None:
        """One new entry directly under `parent` (a small subtree for a directory)."""
        path = parent / self.name()
        roll = self.rng.random()
        files = sorted(p for p in parent.iterdir() if p.is_file() and not p.is_symlink())
        if roll < 0.55:
            self.file(path)
        elif roll < 0.75 and depth < 3:
            self.directory(path, self.rng.randint(0, 4))
        elif roll < 0.9 or not files:
            self.symlink(path)
        else:
            os.link(self.rng.choice(files), path)
            self.made += 1

    def tree(self, root: Path) -> None:
        root.mkdir()
        size = self.rng.randint(50, 150)
        while self.made < size:
            self.add(self.rng.choice([root, *self.dirs]))

    def walk(self, root: Path) -> list[Path]:
        out = []
        for dirpath, dirnames, filenames in os.walk(root):
            out += [Path(dirpath, n) for n in sorted(dirnames + filenames)]
        return sorted(out)

    def mutate(self, root: Path) -> None:
        """Apply 3 to 12 random edits to the tree at `root`."""
        for _ in range(self.rng.randint(3, 12)):
            paths = self.walk(root)
            if not paths:  # everything was removed: start again
                self.add(root)
                continue
            edit = self.rng.choice(EDITS)
            edit(self, root, self.rng.choice(paths))


def _is_file(p: Path) -> bool:
    return p.is_file() and not p.is_symlink()


def _is_dir(p: Path) -> bool:
    return p.is_dir() and not p.is_symlink()


def _remove(p: Path) -> None:
    if _is_dir(p):
        shutil.rmtree(p)
    else:
        p.unlink()


def edit_same_size(m: TreeMaker, root: Path, p: Path) -> None:
    if _is_file(p) and p.stat().st_size:
        data = bytearray(p.read_bytes())
        data[m.rng.randrange(len(data))] ^= 1 + m.rng.randrange(255)
        mode = p.stat().st_mode
        with open(p, "r+b") as fh:  # in place: hard links see it too, as on a real system
            fh.write(data)
        os.chmod(p, mode)


def edit_resize(m: TreeMaker, root: Path, p: Path) -> None:
    if _is_file(p):
        with open(p, "ab") as fh:
            fh.write(m.rng.randbytes(m.rng.randint(1, 100)))


def chmod(m: TreeMaker, root: Path, p: Path) -> None:
    if not p.is_symlink():
        os.chmod(p, m.rng.choice(DIR_MODES if p.is_dir() else FILE_MODES))


def chown(m: TreeMaker, root: Path, p: Path) -> None:
    mode = p.lstat().st_mode
    m.owner(p)
    if not p.is_symlink():
        os.chmod(p, mode & 0o7777)  # chown clears setuid/setgid: keep the mode an edit of its own


def retype(m: TreeMaker, root: Path, p: Path) -> None:
    """A file, directory or symlink becomes one of the other two kinds."""
    was = "dir" if _is_dir(p) else "link" if p.is_symlink() else "file"
    _remove(p)
    kind = m.rng.choice([k for k in ("file", "dir", "link") if k != was])
    if kind == "file":
        m.file(p)
    elif kind == "dir":
        m.directory(p, m.rng.randint(0, 3))
    else:
        m.symlink(p)


def retarget(m: TreeMaker, root: Path, p: Path) -> None:
    if p.is_symlink():
        p.unlink()
        os.symlink(f"elsewhere/{m.name()}", p)


def add_subtree(m: TreeMaker, root: Path, p: Path) -> None:
    parent = p if _is_dir(p) else p.parent
    m.directory(parent / m.name(), m.rng.randint(1, 5))


def remove(m: TreeMaker, root: Path, p: Path) -> None:
    _remove(p)


def add_hardlink(m: TreeMaker, root: Path, p: Path) -> None:
    if _is_file(p):
        os.link(p, p.parent / m.name())


def break_hardlink(m: TreeMaker, root: Path, p: Path) -> None:
    """A linked file becomes a copy of its own: equal (no change) or edited."""
    if _is_file(p) and p.stat().st_nlink > 1:
        data, st = p.read_bytes(), p.stat()
        p.unlink()
        if m.rng.random() < 0.5:
            data += b"diverged"
        p.write_bytes(data)
        os.chown(p, st.st_uid, st.st_gid)
        os.chmod(p, st.st_mode & 0o7777)


def set_xattr(m: TreeMaker, root: Path, p: Path) -> None:
    if m.xattrs and not p.is_symlink():
        names = os.listxattr(p)
        if names and m.rng.random() < 0.5:
            os.removexattr(p, m.rng.choice(names))
        else:
            os.setxattr(p, f"user.k{m.rng.randint(0, 2)}", m.rng.randbytes(4))


EDITS = (
    edit_same_size,
    edit_resize,
    chmod,
    chown,
    retype,
    retarget,
    add_subtree,
    remove,
    add_hardlink,
    break_hardlink,
    set_xattr,
)


def rsync_changed(old: Path, new: Path) -> set[str]:
    """Image paths rsync would create, delete or update to turn NEW into OLD."""
    proc = subprocess.run(
        [
            "rsync",
            "-anic",
            "--delete",
            "--numeric-ids",
            "-X",
            "--out-format=%i %n",
            f"{old}/",
            f"{new}/",
        ],
        capture_output=True,
        text=True,
        errors="surrogateescape",
        check=True,
    )
    changed = set()
    for line in proc.stdout.splitlines():
        # "YXcstpoguax NAME": update type, file type, then one letter per attribute that
        # differs ("+" throughout for a creation); "*deleting   NAME" for a deletion
        flags, name = line[:11], line[12:]
        if not flags.startswith("*deleting") and not set(flags[2:]) - {".", "t", "T", " "}:
            continue  # nothing but times (a directory whose children changed, say)
        path = "/" + name.rstrip("/")
        if path != "/":
            changed.add(path)
    return changed


def _tree_pair(seed: int, tmp_path: Path) -> tuple[Path, Path]:
    xattrs = "xattrs" not in probe(tmp_path)
    maker = TreeMaker(seed, xattrs)
    old, new = tmp_path / "old", tmp_path / "new"
    maker.tree(old)
    subprocess.run(["cp", "-a", f"{old}", f"{new}"], check=True)  # links, owners, xattrs
    maker.mutate(new)
    return old, new


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", SEEDS)
def test_imgdiff_reports_the_paths_rsync_would_transfer(
    seed: int, mode: str, tmp_path: Path
) -> None:
    old, new = _tree_pair(seed, tmp_path)
    expected = rsync_changed(old, new)
    assert expected, "the edits changed nothing rsync can see: the case tests nothing"
    left, right = str(old), str(new)
    if mode != "dir-dir":
        left = str(gnu_tar(old, tmp_path / "old.tar"))
    if mode == "tar-tar":
        right = str(gnu_tar(new, tmp_path / "new.tar"))
    delta = imgdiff.diff(left, right, use_cache=False, classify=False)
    got = {c.path for c in delta.changes}
    assert got == expected, (
        f"imgdiff only: {sorted(got - expected)}\n"
        f"rsync only: {sorted(expected - got)}\n{show(delta)}"
    )

"""Shared factories: real directory trees, real tar archives made by GNU tar, crafted tars."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import imgdiff
import imgdiff.cache
from imgdiff.results import ReasonCode, Verdict

COMPRESSORS = {"": None, ".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd"}
_SESSION_CACHE: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """Digest caches of this run (and of every command it starts) in a directory of its own,
    removed at the end: the user's `~/.cache/imgdiff` is neither read nor filled."""
    path = tempfile.mkdtemp(prefix="imgdiff-test-cache-")
    _SESSION_CACHE.append(path)
    os.environ["XDG_CACHE_HOME"] = path


def pytest_unconfigure(config: pytest.Config) -> None:
    for path in _SESSION_CACHE:
        shutil.rmtree(path, ignore_errors=True)


def write_tree(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """Create regular files (parents included) under `root`; returns `root`."""
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def gnu_tar(src: Path, dest: Path, compress: str | None = None) -> Path:
    """Archive `src` with GNU tar (xattrs kept, numeric owners), then compress it."""
    plain = dest.with_name(dest.name + ".plain") if compress else dest
    subprocess.run(
        [
            "tar",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--sort=name",
            "-C",
            str(src),
            "-cf",
            str(plain),
            ".",
        ],
        check=True,
    )
    if compress:
        with open(dest, "wb") as out:
            subprocess.run([compress, "-c", str(plain)], stdout=out, check=True)
        plain.unlink()
    return dest


def crafted_tar(
    members: Iterable[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.GNU_FORMAT
) -> bytes:
    """A tar written member by member (names, types and sizes exactly as given)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name: str, data: bytes = b"", **kw: object) -> tuple[tarfile.TarInfo, bytes | None]:
    """A TarInfo with `data` as content (regular file unless `type` says otherwise)."""
    info = tarfile.TarInfo(name)
    info.size = len(data) if kw.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else 0
    for k, v in kw.items():
        setattr(info, k, v)
    return info, (data if info.size else None)


TreePair = Callable[[Mapping[str, str | bytes]], tuple[Path, Path]]


@pytest.fixture
def tree_pair(tmp_path: Path) -> TreePair:
    """Make old/ and new/ with the same files; the test then changes new/."""

    def make(files: Mapping[str, str | bytes]) -> tuple[Path, Path]:
        old = write_tree(tmp_path / "old", files)
        new = tmp_path / "new"
        shutil.copytree(old, new, symlinks=True)
        for dirpath, dirnames, filenames in os.walk(old):
            for name in dirnames + filenames:
                src = os.path.join(dirpath, name)
                st = os.lstat(src)
                os.utime(
                    new / os.path.relpath(src, old),
                    ns=(st.st_atime_ns, st.st_mtime_ns),
                    follow_symlinks=False,
                )
        return old, new

    return make


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files the test has just written count as settled for digest caches opened in this
    process (no writeback window), so they are cached as files changed long ago are."""
    monkeypatch.setattr(imgdiff.cache, "SETTLE_NS", 0)


_IMGDIFF = os.path.dirname(imgdiff.__file__) + os.sep


@pytest.fixture(autouse=True)
def every_verdict_reason_is_coded(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every verdict imgdiff makes during a test (not those a test builds itself) gives
    each reason a `ReasonCode` of its own, never the `other` of a caller's plain text."""
    made: list[Verdict] = []
    init = Verdict.__init__

    def watched(self: Verdict, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        caller = sys._getframe(1)
        while caller.f_back is not None and caller.f_globals["__name__"].startswith("attr"):
            caller = caller.f_back  # attrs.evolve: whoever called it
        if caller.f_code.co_filename.startswith(_IMGDIFF):
            made.append(self)

    monkeypatch.setattr(Verdict, "__init__", watched)
    yield
    uncoded = [
        str(r)
        for v in made
        for r in v.reasons
        if not isinstance(getattr(r, "code", None), ReasonCode) or r.code is ReasonCode.OTHER
    ]
    assert not uncoded, f"verdict reasons without a code: {uncoded}"

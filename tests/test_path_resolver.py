"""Path normalisation through an image's own symlinks (usr-merge), inside the image only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imgdiff import Manifest
from imgdiff.packages.base import PathResolver

from .conftest import write_tree


@pytest.fixture
def resolver(tmp_path: Path) -> PathResolver:
    root = write_tree(tmp_path / "img", {"usr/lib/x86_64-linux-gnu/libc.so.6": b"x"})
    os.symlink("usr/lib", root / "lib")
    os.symlink("/usr/lib", root / "lib64")
    os.symlink("../../../../../../etc", root / "usr/lib/escape")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.symlink("libc.so.6", root / "usr/lib/x86_64-linux-gnu/libc.so")
    return PathResolver(Manifest.read(str(root), use_cache=False))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
        ("/lib64/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
        ("lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
        ("/usr/lib/x86_64-linux-gnu/libc.so", "/usr/lib/x86_64-linux-gnu/libc.so"),  # last kept
        ("/usr/lib/escape/passwd", "/etc/passwd"),  # clamped at the image root
        ("/lib/../../../etc/x", "/etc/x"),
        ("/loop1/x", "/loop1/x"),  # a loop resolves to nothing: kept as given
        ("/lib/x86_64-linux-gnu/", "/usr/lib/x86_64-linux-gnu"),
    ],
)
def test_normalise(resolver: PathResolver, given: str, expected: str) -> None:
    assert resolver.normalise(given) == expected
    assert resolver.normalise(given) == expected  # the cached answer agrees


def test_sibling_after_trailing_slash_is_not_poisoned(resolver: PathResolver) -> None:
    assert resolver.normalise("/lib/x86_64-linux-gnu/") == "/usr/lib/x86_64-linux-gnu"
    assert resolver.normalise("/lib/x86_64-linux-gnu/libc.so.6") == (
        "/usr/lib/x86_64-linux-gnu/libc.so.6"
    )

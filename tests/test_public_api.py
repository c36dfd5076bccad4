"""The public face: one namespace, one exception tree."""

from __future__ import annotations

import subprocess
import sys

import pytest

import imgdiff


@pytest.mark.parametrize("name", imgdiff.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(imgdiff, name) is not None


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


def test_import_stays_cheap() -> None:
    # the namespace loads on first use: importing it must not pull in the stages
    code = "import imgdiff, sys; print(sorted(m for m in sys.modules if m.startswith('imgdiff')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['imgdiff', 'imgdiff.errors']"

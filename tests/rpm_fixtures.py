"""Real rpm artifacts for the rpm reader's tests: packages built by rpmbuild, installed by rpm.

Builds small noarch packages from spec files written here and installs them with
`rpm --root` into image trees laid out as rpm distributions lay them out. It owns only
fixture construction; it must not touch the host's rpm database (every rpm call names its
own `--root` and `--dbpath`) and must not assert anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import attrs


@attrs.frozen
class Spec:
    """One package to build: its identity, requirements and %files lines."""

    name: str
    version: str
    release: str = "1"
    epoch: int | None = None
    requires: tuple[str, ...] = ()
    # (path in the package, content as a printf format, %files prefix such as "%config")
    files: tuple[tuple[str, str, str], ...] = ()
    dirs: tuple[str, ...] = ()  # %dir entries (owned, empty)
    arch: str = "noarch"  # BuildArch (files are data: any arch builds here)
    # binary packages built beside it from the same source: (NAME-suffix, its %files lines)
    subpackages: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = ()

    @property
    def nvr(self) -> str:
        return f"{self.name}-{self.version}-{self.release}"

    def text(self) -> str:
        """The spec file."""
        head = [
            f"Name: {self.name}",
            f"Version: {self.version}",
            f"Release: {self.release}",
            *([f"Epoch: {self.epoch}"] if self.epoch is not None else []),
            f"Summary: imgdiff test package {self.name}",
            "License: MIT",
            f"BuildArch: {self.arch}",
            *[f"Requires: {r}" for r in self.requires],
            "%description",
            f"imgdiff test package {self.name}.",
        ]
        install = []
        every = [*self.files, *(f for _, files in self.subpackages for f in files)]
        for suffix, _ in self.subpackages:
            head += [f"%package {suffix}", f"Summary: {self.name}-{suffix}",
                     f"%description {suffix}", f"{self.name}-{suffix}."]  # fmt: skip
        head.append("%install")
        for path, content, _ in every:
            install.append(f"mkdir -p %{{buildroot}}{os.path.dirname(path)}")
            install.append(f"printf '{content}' > %{{buildroot}}{path}")
        install += [f"mkdir -p %{{buildroot}}{d}" for d in self.dirs]
        files = ["%files", *[f"{prefix} {path}".strip() for path, _, prefix in self.files]]
        files += [f"%dir {d}" for d in self.dirs]
        for suffix, sub_files in self.subpackages:
            files += [f"%files {suffix}", *[f"{pre} {path}".strip() for path, _, pre in sub_files]]
        return "\n".join([*head, *install, *files, ""])


def have_rpm_tools() -> bool:
    """True when both rpmbuild and rpm are on PATH."""
    return shutil.which("rpmbuild") is not None and shutil.which("rpm") is not None


def build(spec: Spec, topdir: Path) -> Path:
    """Build `spec` with rpmbuild under `topdir`; returns the .rpm file."""
    specfile = topdir / f"{spec.nvr}.spec"
    specfile.parent.mkdir(parents=True, exist_ok=True)
    specfile.write_text(spec.text())
    subprocess.run(
        ["rpmbuild", "--quiet", "--define", f"_topdir {topdir}", "-bb", str(specfile)],
        check=True,
        capture_output=True,
    )
    return topdir / "RPMS" / spec.arch / f"{spec.nvr}.{spec.arch}.rpm"


def subpackage(spec: Spec, suffix: str, topdir: Path) -> Path:
    """The .rpm of one of `spec`'s subpackages, built by `build(spec, topdir)`."""
    nvr = f"{spec.name}-{suffix}-{spec.version}-{spec.release}"
    return topdir / "RPMS" / spec.arch / f"{nvr}.{spec.arch}.rpm"


def rpm_cmd(root: Path, dbpath: str, *args: str) -> list[str]:
    """An rpm command line confined to `root` and its database at `dbpath` inside it."""
    return ["rpm", "--root", str(root), "--dbpath", dbpath, *args]


def install(root: Path, dbpath: str, rpms: list[Path]) -> None:
    """Install `rpms` into the tree `root` (files too when root; database only otherwise).

    Debian's rpm keeps its database at `~/.rpmdb` (so `ROOT/root/.rpmdb` under --root):
    the database path is always given, as an rpm distribution's macros would set it.
    """
    flags = ["-i", "--nodeps", "--noscripts"]
    if os.geteuid() != 0:
        flags.append("--justdb")  # rpm cannot chown installed files to root otherwise
    subprocess.run(rpm_cmd(root, dbpath, *flags, *map(str, rpms)), check=True, capture_output=True)


def dump(root: Path, dbpath: str) -> list[list[str]]:
    """`rpm -qa --dump`: per file, path size mtime digest mode owner group isconfig ..."""
    out = subprocess.run(
        rpm_cmd(root, dbpath, "-qa", "--dump"), check=True, capture_output=True, text=True
    ).stdout
    return [line.split(" ") for line in out.splitlines() if line.startswith("/")]

"""Real .deb packages built with dpkg-deb and installed with dpkg into test roots."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

LIBZ = "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"


def build_deb(
    workdir: Path,
    name: str,
    version: str,
    files: Mapping[str, bytes],
    *,
    conffiles: tuple[str, ...] = (),
    depends: str = "",
    arch: str = "amd64",
    source: str = "",
) -> Path:
    """A real .deb (dpkg-deb --build) holding `files` (absolute paths); `source`: its
    `Source:` field (none when empty: the source then has the package's name)."""
    pkg = workdir / f"{name}_{version.replace(':', '%3a')}"
    if pkg.exists():
        shutil.rmtree(pkg)
    (pkg / "DEBIAN").mkdir(parents=True)
    control = [
        f"Package: {name}",
        f"Version: {version}",
        f"Architecture: {arch}",
        "Maintainer: imgdiff tests <tests@example.org>",
        f"Description: {name} for imgdiff tests",
    ]
    if depends:
        control.append(f"Depends: {depends}")
    if source:
        control.append(f"Source: {source}")
    (pkg / "DEBIAN/control").write_text("\n".join(control) + "\n")
    if conffiles:
        (pkg / "DEBIAN/conffiles").write_text("\n".join(conffiles) + "\n")
    for path, data in files.items():
        target = pkg / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    out = workdir / f"{pkg.name}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(pkg), str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


def new_root(root: Path) -> Path:
    """An empty usr-merged root with an empty dpkg database."""
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/updates").mkdir()
    (root / "var/lib/dpkg/status").touch()
    for d in ("usr/lib", "usr/bin", "usr/sbin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for link, target in (("lib", "usr/lib"), ("bin", "usr/bin"), ("sbin", "usr/sbin")):
        (root / link).symlink_to(target)
    return root


def dpkg(root: Path, *args: str) -> None:
    """Run dpkg against `root` (no maintainer scripts are shipped, none run)."""
    subprocess.run(
        ["dpkg", f"--root={root}", "--force-script-chrootless", "--force-not-root", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

"""dpkg databases of real roots built with dpkg-deb and dpkg --root, and malformed ones."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from imgdiff import Manifest
from imgdiff.packages.base import Package, PathResolver
from imgdiff.packages.dpkg import compare_versions, read_dpkg

from .conftest import gnu_tar, write_tree
from .debs import LIBZ, build_deb, dpkg, new_root

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("debs")
    root = new_root(work / "root")
    lib = build_deb(
        work,
        "demo-lib",
        "2:1.1~rc1-1",
        {
            # shipped under /lib: usr-merge puts it at /usr/lib
            "/lib/x86_64-linux-gnu/libdemo.so.1": Path(LIBZ).read_bytes(),
            "/etc/demo/demo.conf": b"workers = 4\n",
            "/usr/share/doc/demo-lib/README": b"demo\n",
        },
        conffiles=("/etc/demo/demo.conf",),
    )
    app = build_deb(
        work,
        "demo-app",
        "1.0-1",
        {"/usr/bin/demo-tool": Path("/bin/true").read_bytes()},
        depends="demo-lib (>= 2:1.0) | libother, libc6",
    )
    dpkg(root, "--force-depends", "-i", str(lib), str(app))
    subprocess.run(
        ["dpkg-divert", f"--root={root}", "--package", "demo-lib", "--rename",
         "--divert", "/usr/bin/demo-tool.distrib", "--add", "/usr/bin/demo-tool"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return root


def _db(image: str) -> dict[str, Package]:
    m = Manifest.read(image, use_cache=False)
    db = read_dpkg(m, PathResolver(m))
    assert db is not None
    return {p.name: p for p in db.packages}


def test_packages_versions_and_usr_merged_paths(root: Path) -> None:
    pkgs = _db(str(root))
    lib = pkgs["demo-lib"]
    assert lib.version == "2:1.1~rc1-1"
    assert lib.arch == "amd64"
    assert "/usr/lib/x86_64-linux-gnu/libdemo.so.1" in lib.files
    assert not any(f.startswith("/lib/") for f in lib.files)
    assert lib.config_files == ("/etc/demo/demo.conf",)
    assert pkgs["demo-app"].depends == ("demo-lib", "libother", "libc6")


def test_diverted_file_belongs_to_its_new_name(root: Path) -> None:
    app = _db(str(root))["demo-app"]
    assert "/usr/bin/demo-tool.distrib" in app.files
    assert "/usr/bin/demo-tool" not in app.files


def test_md5sums_are_recorded_against_normalised_paths(root: Path) -> None:
    lib = _db(str(root))["demo-lib"]
    digests = dict(lib.file_digests)

    data = (root / "usr/lib/x86_64-linux-gnu/libdemo.so.1").read_bytes()
    want = hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert digests["/usr/lib/x86_64-linux-gnu/libdemo.so.1"] == f"md5:{want}"


def test_tar_image_reads_the_same_database(root: Path, tmp_path: Path) -> None:
    archive = gnu_tar(root, tmp_path / "root.tar.gz", "gzip")
    from_dir = _db(str(root))
    from_tar = _db(str(archive))
    assert from_dir == from_tar


def test_host_database_is_never_read(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", {"etc/hostname": "x\n"})
    m = Manifest.read(str(tree), use_cache=False)
    assert read_dpkg(m, PathResolver(m)) is None


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        ("1.0~rc1-1", "1.0-1", -1),
        ("1:0.9", "2.0", 1),
        ("1.0-1", "1.0-1+deb12u1", -1),
        ("3.0.17-1~deb12u2", "3.0.22-1~deb12u1", -1),
        ("1.0", "1.0", 0),
        ("1.0+b1", "1.0", 1),
    ],
)
def test_debian_version_ordering(a: str, b: str, order: int) -> None:
    assert compare_versions(a, b) == order


def test_malformed_status_gives_warnings_not_crashes(tmp_path: Path) -> None:
    status = (
        b"Package: good\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n\n"
        b"Package: noversion\nStatus: install ok installed\nArchitecture: all\n\n"
        b"Package: good\nStatus: install ok installed\nVersion: 2\nArchitecture: all\n\n"
        b"Package: latin1\nStatus: install ok installed\nVersion: 1\xe9\nArchitecture: all\n\n"
        b"Status: install ok installed\nVersion: 1\n\n"
        b"Package: gone\nStatus: purge ok not-installed\nArchitecture: all\n"
    )
    tree = write_tree(tmp_path / "t", {"var/lib/dpkg/status": status})
    (tree / "var/lib/dpkg/info").mkdir()
    m = Manifest.read(str(tree), use_cache=False)
    db = read_dpkg(m, PathResolver(m))
    assert db is not None
    assert [p.name for p in db.packages] == ["good", "latin1"]
    assert db.packages[0].version == "1"
    assert db.packages[1].version == "1\u00e9"
    messages = " | ".join(w.message for w in db.warnings)
    assert "noversion: no Version field" in messages
    assert "good: duplicate stanza" in messages
    assert "has no Package field" in messages
    assert "missing: package owns no files" in messages
    assert "line 17 is not UTF-8" in messages

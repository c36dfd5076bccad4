"""dpkg databases of real roots built with dpkg-deb and dpkg --root, and malformed ones."""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import imgdiff
from imgdiff import Manifest
from imgdiff.packages import dpkg as dpkg_mod
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
        ("a:b", "2.0", -1),  # not a Debian version (a damaged database): below every valid one
        ("2.0", "a:b", 1),
        ("a:b", "a:c", -1),
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


# pieces a status file may be made of: what dpkg writes, and what only a hand or an
# attacker writes (comments, PGP armour, odd whitespace, CR, garbage, stray folds)
_PIECES = [
    "Package: demo",
    "package: other",
    "PACKAGE: third",
    "Version: 1.0-1",
    "Version:2",
    "Status: install ok installed",
    "Status: deinstall ok config-files",
    "Architecture: amd64",
    "Depends: a (>= 1), b | c",
    "Conffiles:",
    " /etc/demo.conf 0123456789abcdef0123456789abcdef",
    "\t/etc/tab.conf abc",
    "Description: one line",
    " folded line",
    " .",
    "",
    "",
    "  ",
    "\t",
    "# a comment",
    "-----BEGIN PGP SIGNED MESSAGE-----",
    "garbage without colon",
    "Key : spaced",
    "Pàckage: accented",
    "Package: nbsp\xa0",
    "X-Odd:\x1cvalue",
    "Trailing: tab\t",
    "Version: 3\r",
    "-----END PGP SIGNATURE-----",
    ":empty key",
    "Dup: 1",
    "dup: 2",
    "#Package: commented out",
    "\xa0",
    "\x1c",
    "\x0b",
    " \x85",
]


def _reference(text: str) -> list[dict[str, str]]:
    from debian import deb822

    return [
        {k.lower(): v for k, v in p.items()}
        for p in deb822.Deb822.iter_paragraphs(io.StringIO(text), use_apt_pkg=False)
    ]


def test_status_split_without_python_debian_agrees_with_it() -> None:
    rng = random.Random(20261202)
    plain = 0
    for _ in range(3000):
        lines = [rng.choice(_PIECES) for _ in range(rng.randint(0, 14))]
        text = "\n".join(lines) + rng.choice(["", "\n"])
        fast = dpkg_mod._plain_stanzas(text)
        if fast is not None:
            plain += 1
            assert fast == _reference(text), text
        assert list(dpkg_mod._stanzas(text, [])) == _reference(text), text
    assert plain > 300  # the fast path was taken often enough to mean something


def test_status_file_with_a_comment_reads_through_python_debian(root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "root"
    shutil.copytree(root, copy, symlinks=True)
    status = copy / "var/lib/dpkg/status"
    text = status.read_text()
    assert dpkg_mod._plain_stanzas(text) is not None  # what dpkg writes takes the fast path
    status.write_text("# edited by hand\n" + text)
    assert dpkg_mod._plain_stanzas(status.read_text()) is None
    assert _db(str(copy)) == _db(str(root))


def test_only_the_owners_asked_for_are_read(root: Path) -> None:
    m = Manifest.read(str(root), use_cache=False)
    full = read_dpkg(m, PathResolver(m))
    assert full is not None
    wanted = {
        "/usr/lib/x86_64-linux-gnu/libdemo.so.1",  # listed as /lib/...: usr-merge
        "/usr/bin/demo-tool.distrib",  # the diverted name
        "/usr/bin/demo-tool",  # diverted away from demo-app
        "/etc/demo/demo.conf",
        "/usr/share/doc/demo-lib/nothing-here",
    }
    some = read_dpkg(m, PathResolver(m), only=wanted)
    assert some is not None
    assert [p.key for p in some.packages] == [p.key for p in full.packages]
    for a, b in zip(full.packages, some.packages, strict=True):
        assert b.files == tuple(f for f in a.files if f in wanted)
        assert b.config_files == tuple(f for f in a.config_files if f in wanted)
        assert b.file_digests == ()
    assert {f for p in some.packages for f in p.files} == wanted - {
        "/usr/bin/demo-tool", "/usr/share/doc/demo-lib/nothing-here",
    }  # fmt: skip


def test_a_version_debian_refuses_is_a_warning_and_the_delta_still_made(tmp_path: Path) -> None:
    """python-debian raises on it: `imgdiff packages` exited 4 (internal error)."""
    stanza = "Package: foo\nStatus: install ok installed\nVersion: {}\nArchitecture: amd64\n"
    trees = []
    for name, version in (("old", "a:b"), ("new", "2.0")):
        tree = write_tree(tmp_path / name, {"var/lib/dpkg/status": stanza.format(version)})
        (tree / "var/lib/dpkg/info").mkdir()
        (tree / "var/lib/dpkg/info/foo:amd64.list").write_text("/.\n")
        trees.append(str(tree))
    delta = imgdiff.package_diff(*trees)[1]
    assert [(c.name, c.old_version, c.new_version) for c in delta.changes] == [
        ("foo", "a:b", "2.0")
    ]
    assert any("'a:b' is not a Debian version" in w.message for w in delta.warnings)


def _status_trees(tmp_path: Path, old: bytes, new: bytes) -> list[str]:
    """Two images holding just these status files (and an empty foo.list)."""
    trees = []
    for name, status in (("old", old), ("new", new)):
        tree = write_tree(tmp_path / name, {"var/lib/dpkg/status": status})
        (tree / "var/lib/dpkg/info").mkdir()
        (tree / "var/lib/dpkg/info/foo.list").write_bytes(b"")
        trees.append(str(tree))
    return trees


def _query(admindir: str) -> list[str]:
    """dpkg-query's packages, the peer every reading is checked against."""
    out = subprocess.run(
        ["dpkg-query", f"--admindir={admindir}", "-W", "-f", "${Package} ${Version}\n"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return sorted(out.splitlines())


@pytest.mark.parametrize("odd", ["\r", "\x0c", "\x85", "\u2028"])
def test_a_folded_line_python_debian_refuses_is_read_as_dpkg_reads_it(
    tmp_path: Path, odd: str
) -> None:
    """python-debian raised ValueError on it: `packages` and `diff` exited 4."""
    stanza = "Package: {}\nStatus: install ok installed\nVersion: {}\nArchitecture: all\n"
    old = stanza.format("foo", "1.0").encode()
    new = stanza.format("foo", "1.1") + f"Description: x\n a{odd}b\n\n" + stanza.format("bar", "2")
    trees = _status_trees(tmp_path / "a", old, new.encode())
    m = Manifest.read(trees[1], use_cache=False)
    db = read_dpkg(m, PathResolver(m))
    assert db is not None
    assert sorted(f"{p.name} {p.version}" for p in db.packages) == _query(
        f"{trees[1]}/var/lib/dpkg"
    )
    # with a stanza dpkg refuses too: that stanza is skipped, with a warning
    trees = _status_trees(tmp_path / "b", old, (new + "\nnot a field\n").encode())
    delta = imgdiff.package_diff(*trees)[1]
    assert [(c.name, c.change, c.new_version) for c in delta.changes] == [
        ("bar", "added", "2"), ("foo", "upgraded", "1.1"),
    ]  # fmt: skip
    assert any("stanza 3 is not fields: skipped" in w.message for w in delta.warnings)
    imgdiff.diff(*trees, owners=True)  # names owners, no error


def test_many_folded_lines_are_read_in_linear_time(tmp_path: Path) -> None:
    """Each folded line was appended to the value string: 24,000 lines took 9-16 s."""
    head = "Package: foo\nStatus: install ok installed\nVersion: 1.1\nArchitecture: all\n"
    status = head + "Description: x\n" + (" " + "a" * 100 + "\n") * 100_000
    start = time.monotonic()
    stanzas = list(dpkg_mod._stanzas(status, []))
    assert time.monotonic() - start < 2
    assert stanzas[0]["description"].count("\n") == 100_000


_ODD_NAMES = ("/usr/share/odd/a\x0cb", "/usr/share/odd/c\x1cd", "/usr/share/odd/e\x85f",
              "/usr/share/odd/g\u2028h", "/usr/share/odd/i\x0bj")  # fmt: skip


def test_a_file_name_splitlines_would_split_keeps_its_owner(tmp_path: Path) -> None:
    """The .list, .md5sums and diversions were split with `str.splitlines`."""
    root = new_root(tmp_path / "root")
    files = {name: name.encode() for name in _ODD_NAMES}
    dpkg(root, "-i", str(build_deb(tmp_path, "odd", "1", files, arch="all")))
    subprocess.run(
        ["dpkg-divert", f"--root={root}", "--package", "other", "--rename",
         "--divert", _ODD_NAMES[1] + ".moved\x0c", "--add", _ODD_NAMES[1]],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    odd = _db(str(root))["odd"]
    for name in _ODD_NAMES:
        owner = subprocess.run(
            ["dpkg", f"--root={root}", "-S", name], check=True, capture_output=True
        ).stdout
        assert f"odd: {name}\n".encode() in owner
    want = {*_ODD_NAMES[:1], _ODD_NAMES[1] + ".moved\x0c", *_ODD_NAMES[2:]}
    assert want <= set(odd.files)
    assert want == {p for p, _ in odd.file_digests}


def test_a_conffile_name_with_spaces_keeps_them(tmp_path: Path) -> None:
    """Conffiles lines were split at whitespace: the name lost all after its first space."""
    root = new_root(tmp_path / "root")
    spaced, gone = "/etc/sp/my file.conf", "/etc/sp/old  one.conf"
    v1 = {spaced: b"1\n", gone: b"old\n", "/etc/sp/plain.conf": b"1\n"}
    dpkg(root, "-i", str(build_deb(tmp_path, "sp", "1", v1, conffiles=tuple(v1), arch="all")))
    v2 = {spaced: b"2\n", "/etc/sp/plain.conf": b"2\n"}  # `gone` becomes obsolete
    dpkg(root, "--force-confnew", "-i",
         str(build_deb(tmp_path, "sp", "2", v2, conffiles=tuple(v2), arch="all")))  # fmt: skip
    assert f" {gone} ".encode() in (root / "var/lib/dpkg/status").read_bytes()
    assert b" obsolete\n" in (root / "var/lib/dpkg/status").read_bytes()
    new = tmp_path / "new"
    shutil.copytree(root, new, symlinks=True)
    (new / spaced.lstrip("/")).write_bytes(b"edited\n")
    sp = _db(str(new))["sp"]
    assert set(sp.config_files) == {spaced, gone, "/etc/sp/plain.conf"}
    assert (spaced, "md5:" + hashlib.md5(b"2\n").hexdigest()) in sp.file_digests
    verify = subprocess.run(
        ["dpkg", f"--root={new}", "--verify", "sp"], check=False, capture_output=True, text=True
    ).stdout  # exits 1: a file is modified
    assert spaced in verify  # the peer: the edited conffile is modified
    delta = imgdiff.package_diff(str(root), str(new))[1]
    assert [m.path for m in delta.modified_locally] == [spaced]


def test_a_package_removed_but_not_purged_is_removed(tmp_path: Path) -> None:
    """Its config-files stanza ("rc") was matched with the installed one: `rebuilt`."""
    old = new_root(tmp_path / "old")
    files = {"/usr/bin/foo": b"foo\n", "/etc/foo.conf": b"c\n"}
    dpkg(old, "-i", str(build_deb(tmp_path, "foo", "1.0", files, conffiles=("/etc/foo.conf",))))
    new = tmp_path / "new"
    shutil.copytree(old, new, symlinks=True)
    dpkg(new, "-r", "foo")
    state = subprocess.run(
        ["dpkg-query", f"--root={new}", "-W", "-f", "${db:Status-Abbrev}", "foo"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert state.strip() == "rc"
    delta = imgdiff.package_diff(str(old), str(new))[1]
    assert [(c.name, c.change) for c in delta.changes] == [("foo", "removed")]
    assert "/usr/bin/foo" in delta.changes[0].paths
    assert _db(str(new))["foo"].files == ("/etc/foo.conf",)  # its conffile is still its own
    owner = subprocess.run(["dpkg", f"--root={new}", "-S", "/etc/foo.conf"],
                           check=True, capture_output=True, text=True).stdout  # fmt: skip
    assert owner == "foo: /etc/foo.conf\n"
    back = imgdiff.package_diff(str(new), str(old))[1]
    assert [(c.name, c.change) for c in back.changes] == [("foo", "added")]
    assert imgdiff.package_diff(str(new), str(new))[1].changes == ()


def test_an_upgrade_that_changes_the_architecture_is_an_upgrade(tmp_path: Path) -> None:
    """amd64 -> all was a removal and an addition; dpkg upgrades the package."""
    old = new_root(tmp_path / "old")
    files = {"/usr/share/foo/x": b"1\n"}
    dpkg(old, "-i", str(build_deb(tmp_path, "foo", "1.0-1", files, arch="amd64")))
    new = tmp_path / "new"
    shutil.copytree(old, new, symlinks=True)
    files = {"/usr/share/foo/x": b"2\n"}
    dpkg(new, "-i", str(build_deb(tmp_path, "foo", "1.1-1", files, arch="all")))
    assert _query(f"{new}/var/lib/dpkg") == ["foo 1.1-1"]
    delta = imgdiff.package_diff(str(old), str(new))[1]
    assert [(c.name, c.arch, c.change, c.old_version, c.new_version) for c in delta.changes] == [
        ("foo", "all", "upgraded", "1.0-1", "1.1-1")
    ]


def test_an_admindir_that_is_a_symlink_inside_the_image_is_followed_there(
    root: Path, tmp_path: Path
) -> None:
    """dpkg --root follows /var/lib/dpkg -> ../../srv/dpkg; the database was ignored."""
    moved = tmp_path / "moved"
    shutil.copytree(root, moved, symlinks=True)
    (moved / "srv").mkdir(exist_ok=True)
    os.rename(moved / "var/lib/dpkg", moved / "srv/dpkg")
    (moved / "var/lib/dpkg").symlink_to("../../srv/dpkg")
    want = _db(str(root))
    got = _db(str(moved))
    assert {n: (p.version, p.files, p.config_files) for n, p in got.items()} == {
        n: (p.version, p.files, p.config_files) for n, p in want.items()
    }
    query = subprocess.run(
        ["dpkg-query", f"--root={moved}", "-W", "-f", "${Package} ${Version}\n"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    assert {f"{n} {p.version}" for n, p in got.items()} <= set(query)
    tarred = gnu_tar(moved, tmp_path / "moved.tar")
    assert set(_db(str(tarred))) == set(want)

"""Tar fidelity: imgdiff reads an archive as GNU tar, run as root, extracts it.

The oracle is always the same: extract the archive with GNU tar (`tarzoo.extract_gnu`)
and compare imgdiff's reading of the archive with imgdiff's reading of the extracted
directory (`tarzoo.assert_same_as_extraction`). Archives come from the real writers
(GNU tar in each format, bsdtar in each format, Python's tarfile), from CPython's own tar
test data, and, for what no tool writes, from hand-made headers.

A case the reader gets wrong is marked ``xfail(strict=True, reason="tar fidelity: ...")``
until it is fixed (strict: once fixed it fails as XPASS, so the mark goes with the fix).
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import pwd
import subprocess
import sys
import tarfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import blake3
import pytest

import imgdiff
from imgdiff import Aspect, BadInput, EntryType, Manifest, Status
from imgdiff.cli import main

from .tarzoo import (
    ACL_GROUP,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_NO_ID,
    ACL_OTHER,
    ACL_USER,
    ACL_USER_OBJ,
    BASELINE,
    BSDTAR_FORMATS,
    FEATURES,
    GNU_FORMATS,
    GNU_XATTRS,
    PRE1970_NS,
    TARFILE_FORMATS,
    Measured,
    Tree,
    acl_xattr,
    assert_same_as_extraction,
    assert_same_tree,
    bsdtar_archive,
    compress,
    cpython_tar_data,
    extract_bsdtar,
    extract_gnu,
    file_member,
    gnu_archive,
    gnu_names,
    header,
    holds,
    image_path,
    make_tree,
    measure,
    pattern,
    pax_header,
    probe,
    run,
    seal,
    set_acl,
    show,
    tar_bytes,
    tarfile_archive,
    tarfile_names,
    walk_inodes,
    write_bytes,
)

FULL = frozenset(FEATURES)


def _read(archive: Path) -> Manifest:
    return Manifest.read(str(archive), use_cache=False)


def _imgdiff_env() -> dict[str, str]:
    """Environment for a child that must run the very imgdiff these tests imported."""
    env = dict(os.environ)
    root = str(Path(imgdiff.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The `imgdiff` command in a child process (what `.venv/bin/imgdiff` runs)."""
    return subprocess.run(
        [sys.executable, "-m", "imgdiff", *args],
        capture_output=True,
        text=True,
        errors="surrogateescape",
        env=_imgdiff_env(),
        timeout=120,
        check=False,
    )


def _note_missing(tree: Tree) -> None:
    if tree.missing:  # never silently: the run says which features this machine lacks
        warnings.warn(f"tree built without {tree.missing}", stacklevel=2)


def write_with(writer: str, root: Path, dest: Path) -> Path:
    """An archive of `root` by `writer` ("gnu-<format>", "bsdtar-<format>", "tarfile-<fmt>")."""
    tool, _, fmt = writer.partition("-")
    if tool == "gnu":
        return gnu_archive(root, dest, *GNU_FORMATS[fmt])
    if tool == "bsdtar":
        return bsdtar_archive(root, dest, *BSDTAR_FORMATS[fmt])
    return tarfile_archive(root, dest, TARFILE_FORMATS[fmt])


def roundtrip(writer: str, features: frozenset[str], tmp_path: Path) -> tuple[Tree, Path, Path]:
    """Tree with `features` (those the writer holds), its archive, and GNU's extraction.

    The extraction is checked against the source tree first, so the archive really
    holds every feature asked for and the comparison that follows tests something.
    """
    tree = make_tree(tmp_path / "src", holds(writer) & features)
    _note_missing(tree)
    archive = write_with(writer, tree.root, tmp_path / "img.tar")
    dest = tmp_path / "extracted"
    extract_gnu(archive, dest)
    assert_same_tree(tree.root, dest)
    return tree, archive, dest


# -- A. GNU tar in every format ---------------------------------------------------------


# Each writer's format with the features every reader has long handled (BASELINE) and
# with everything the format can hold (FULL: sparse files, xattrs, pre-1970 mtimes, hard
# links to symlinks, FIFOs and devices too), so a regression in the basics shows apart.
PROFILES = {"baseline": BASELINE, "full": FULL}


def _cases(formats: Iterable[str]) -> list[object]:
    return [
        pytest.param(fmt, features, id=f"{fmt}-{name}")
        for fmt in formats
        for name, features in PROFILES.items()
    ]


@pytest.mark.parametrize(("fmt", "features"), _cases(GNU_FORMATS))
def test_gnu_tar_archive_reads_like_its_extraction(
    fmt: str, features: frozenset[str], tmp_path: Path
) -> None:
    _, archive, dest = roundtrip(f"gnu-{fmt}", features, tmp_path)
    assert_same_as_extraction(archive, dest)


# -- B. bsdtar in its formats -------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "features"), _cases(BSDTAR_FORMATS))
def test_bsdtar_archive_reads_like_its_extraction(
    fmt: str, features: frozenset[str], tmp_path: Path
) -> None:
    _, archive, dest = roundtrip(f"bsdtar-{fmt}", features, tmp_path)
    assert_same_as_extraction(archive, dest)


# -- C. Python's tarfile ------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "features"), _cases(TARFILE_FORMATS))
def test_python_tarfile_archive_reads_like_its_extraction(
    fmt: str, features: frozenset[str], tmp_path: Path
) -> None:
    _, archive, dest = roundtrip(f"tarfile-{fmt}", features, tmp_path)
    assert_same_as_extraction(archive, dest)


# -- D. CPython's tar test data ----------------------------------------------------------

# testtar.tar holds one of everything: ustar/gnu/pax/v7 headers, a contiguous file (GNU tar:
# "Extracting contiguous files as regular files"), a directory whose size field is 255,
# an old v7 directory (typeflag NUL, trailing "/"), GNU old sparse and PAX sparse 0.0, 0.1
# and 1.0 members of the same 86016-byte file also stored plain as ustar/sparse, global
# PAX headers, hdrcharset=BINARY, a uid of 2**32-1 in base-256. GNU tar restores all of
# it and only warns about the keywords it ignores.
TESTTAR_GNU_STDERR = {
    "tar: Extracting contiguous files as regular files",
    "tar: Ignoring unknown extended header keyword 'hdrcharset'",
    "tar: Ignoring unknown extended header keyword 'SCHILY.dev'",
    "tar: Ignoring unknown extended header keyword 'SCHILY.ino'",
    "tar: Ignoring unknown extended header keyword 'SCHILY.nlink'",
}
TESTTAR_SPARSE = ("gnu/sparse", "gnu/sparse-0.0", "gnu/sparse-0.1", "gnu/sparse-1.0")


@pytest.fixture(scope="module")
def testtar_extracted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    archive = cpython_tar_data("testtar.tar")
    dest = tmp_path_factory.mktemp("testtar") / "x"
    proc = extract_gnu(archive, dest, check=False)
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stderr.splitlines()) == TESTTAR_GNU_STDERR
    return archive, dest


def test_cpython_testtar_reads_like_gnu_tar_extraction(
    testtar_extracted: tuple[Path, Path],
) -> None:
    archive, dest = testtar_extracted
    delta = imgdiff.diff(str(archive), str(dest), use_cache=False, classify=False)
    # same paths, same content, types and targets; owners and modes may differ where
    # extraction cannot restore them (gnu/regtype-gnu-uid has uid 2**32-1: chown(-1)
    # leaves the file root's)
    bad = [
        c
        for c in delta.changes
        if c.status is not Status.MODIFIED or set(c.aspects) - {Aspect.OWNER, Aspect.MODE}
    ]
    assert bad == [], show(delta)


def test_cpython_testtar_members_are_all_read_as_tarfile_lists_them(
    testtar_extracted: tuple[Path, Path],
) -> None:
    archive, _ = testtar_extracted
    entries = _read(archive).entries
    listed = {image_path(n) for n in tarfile_names(archive)}
    assert listed - set(entries) == set()
    # the member after the directory with a size field is not swallowed
    assert entries["/ustar/dirtype-with-size"].type is EntryType.DIR
    assert entries["/ustar/lnktype"].digest == entries["/ustar/regtype"].digest
    assert entries["/misc/dirtype-old-v7"].type is EntryType.DIR
    # every sparse flavour holds the same 86016 bytes as the plain copy
    plain = entries["/ustar/sparse"]
    for name in TESTTAR_SPARSE:
        e = entries["/" + name]
        assert (e.size, e.digest) == (plain.size, plain.digest), name


def test_cpython_recursion_tar_is_refused_cleanly(tmp_path: Path) -> None:
    # a global PAX header whose one record claims length 0, in a 516-byte file; GNU tar:
    # "Unexpected EOF in archive" (exit 2); tarfile: ReadError. imgdiff must stop too,
    # with BadInput (exit 3), never loop, never crash (exit 4).
    archive = cpython_tar_data("recursion.tar")
    gnu = extract_gnu(archive, tmp_path / "x", check=False)
    assert gnu.returncode == 2
    assert "Unexpected EOF" in gnu.stderr
    with contextlib.suppress(BadInput):  # reading it is fine too; anything else is not
        _read(archive)
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _cli("diff", "--json", str(archive), str(empty))
    assert proc.returncode in (0, 3), proc.stderr
    if proc.returncode == 3:
        assert proc.stderr.count("\n") == 1, proc.stderr


# -- E. cases from the bug report, each on its own ---------------------------------------


def test_directory_with_nonzero_size_does_not_swallow_the_next_member(tmp_path: Path) -> None:
    archive = write_bytes(
        tmp_path / "dirsize.tar",
        tar_bytes(header("d/", b"5", size=512, mode=0o755), file_member("d/f", b"hello")),
    )
    # both tarfile and GNU tar read no content after a directory header
    assert tarfile_names(archive) == ["d", "d/f"]
    assert gnu_names(archive) == ["d/", "d/f"]
    entries = _read(archive).entries
    assert set(entries) == {"/d", "/d/f"}
    assert entries["/d"].type is EntryType.DIR
    assert entries["/d/f"].size == 5
    dest = tmp_path / "x"
    extract_gnu(archive, dest)
    assert_same_as_extraction(archive, dest)


def _v7_dirs_by_bsdtar(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "a/b").mkdir(parents=True)
    (root / "a/b/f").write_bytes(b"f")
    (root / "empty").mkdir()
    os.chmod(root / "a", 0o750)
    archive = bsdtar_archive(root, tmp_path / "v7.tar", "--format=v7")
    raw = archive.read_bytes()  # bsdtar really writes "./a/" with typeflag NUL
    at = raw.find(b"./a/\0")
    assert at % 512 == 0
    assert raw[at + 156 : at + 157] == b"\0"
    return archive


def _v7_dir_crafted(flag: bytes) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        data = tar_bytes(
            header("a/", flag, mode=0o750),
            header("a/b/", flag, mode=0o755),
            file_member("a/b/f", b"f"),
        )
        return write_bytes(tmp_path / "v7.tar", data)

    return make


@pytest.mark.parametrize(
    "make",
    [_v7_dirs_by_bsdtar, _v7_dir_crafted(b"\0"), _v7_dir_crafted(b"0")],
    ids=["bsdtar-v7", "crafted-NUL", "crafted-0"],
)
def test_v7_member_with_trailing_slash_is_a_directory(
    make: Callable[[Path], Path], tmp_path: Path
) -> None:
    # GNU tar reads typeflag NUL and '0' with a trailing '/' as a directory
    archive = make(tmp_path)
    entries = _read(archive).entries
    assert entries["/a"].type is EntryType.DIR
    assert entries["/a"].mode == 0o750
    dest = tmp_path / "x"
    extract_gnu(archive, dest)
    assert_same_as_extraction(archive, dest)


def _xattr_tree(tmp_path: Path) -> Tree:
    tree = make_tree(tmp_path / "src", {"files", "xattrs", "security_xattrs"})
    tree.require("xattrs")
    return tree


def test_non_directory_member_naming_the_root_is_dropped_with_a_warning(tmp_path: Path) -> None:
    # GNU tar: ".: Cannot open: File exists"; bsdtar: "Can't replace existing directory
    # with non-directory": the root stays the directory it is, and we say so
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("hello\n")
    (src / "l").symlink_to("f")
    (src / "other").write_text("x\n")
    archive = tmp_path / "dot.tar"
    rename = "--transform=s,^f$,.,;s,^l$,.,"
    subprocess.run(
        ["tar", "-C", str(src), rename, "-cf", str(archive), "f", "l", "other"], check=True
    )
    assert gnu_names(archive) == [".", ".", "other"]
    read = _read(archive)
    assert set(read.entries) == {"/other"}
    assert [(w.path, w.message.split(" names")[0]) for w in read.warnings] == [
        ("/", "file member '.'"),
        ("/", "symlink member '.'"),
    ]
    assert extract_gnu(archive, tmp_path / "gnu", check=False).returncode == 2
    assert_same_as_extraction(archive, tmp_path / "gnu")
    assert extract_bsdtar(archive, tmp_path / "bsd").returncode == 1
    assert_same_as_extraction(archive, tmp_path / "bsd")


def test_xattrs_linux_cannot_set_are_dropped_with_a_warning_as_extraction_drops_them(
    tmp_path: Path,
) -> None:
    # no real file has them (the kernel refuses them), so no tool writes them but by hand;
    # GNU tar warns "Cannot set '' extended attribute", bsdtar fails: neither sets them
    records = [
        ("SCHILY.xattr.", "empty"),
        ("SCHILY.xattr.nons", "no namespace"),
        ("SCHILY.xattr.user.", "namespace alone"),
        ("SCHILY.xattr.user.ok", "kept"),
    ]
    archive = tmp_path / "x.tar"
    archive.write_bytes(tar_bytes(pax_header(records) + file_member("f", b"hi\n")))
    read = _read(archive)
    assert read.entries["/f"].xattrs == (("user.ok", b"kept"),)
    assert [(w.path, w.message.split(":")[0]) for w in read.warnings] == [
        ("/f", "xattr '' has no namespace Linux knows"),
        ("/f", "xattr 'nons' has no namespace Linux knows"),
        ("/f", "xattr 'user.' names a namespace alone"),
    ]
    extract_gnu(archive, tmp_path / "gnu")
    assert_same_as_extraction(archive, tmp_path / "gnu")
    assert extract_bsdtar(archive, tmp_path / "bsd").returncode == 1
    assert_same_as_extraction(archive, tmp_path / "bsd")


def test_gnu_tar_selinux_context_reads_with_its_nul_as_extraction_leaves_it(
    tmp_path: Path,
) -> None:
    # GNU tar --selinux writes RHT.security.selinux=CTX without the NUL the kernel keeps,
    # and restores it through setfilecon, which sets CTX and its NUL
    root = tmp_path / "src"
    root.mkdir()
    (root / "f").write_text("x\n")
    context = b"system_u:object_r:bin_t:s0\0"
    try:
        os.setxattr(root / "f", "security.selinux", context)
    except OSError as exc:
        pytest.skip(f"security.selinux cannot be set here: {exc.strerror}")
    selinux = tmp_path / "selinux.tar"
    subprocess.run(["tar", "-C", str(root), "--selinux", "-cf", str(selinux), "."], check=True)
    assert b"RHT.security.selinux=system_u:object_r:bin_t:s0\n" in selinux.read_bytes()
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["tar", "-C", str(dest), "--selinux", "-xf", str(selinux)], check=True)
    assert os.getxattr(dest / "f", "security.selinux") == context
    assert _read(selinux).entries["/f"].xattrs == (("security.selinux", context),)
    xattrs = tmp_path / "xattrs.tar"
    subprocess.run(
        ["tar", "-C", str(root), "--xattrs", "--xattrs-include=*", "-cf", str(xattrs), "."],
        check=True,
    )
    assert imgdiff.diff(str(selinux), str(xattrs), use_cache=False).changes == ()


@pytest.mark.parametrize("fmt", ["default", "pax"])
def test_bsdtar_doubled_xattr_records_are_read_once(fmt: str, tmp_path: Path) -> None:
    # bsdtar writes each xattr twice: LIBARCHIVE.xattr.NAME (base64) and SCHILY.xattr.NAME
    tree = _xattr_tree(tmp_path)
    archive = bsdtar_archive(tree.root, tmp_path / "x.tar", *BSDTAR_FORMATS[fmt])
    raw = archive.read_bytes()
    assert b"LIBARCHIVE.xattr.user.k=" in raw
    assert b"SCHILY.xattr.user.k=" in raw
    delta = imgdiff.diff(str(tree.root), str(archive), use_cache=False, classify=False)
    assert delta.changes == (), show(delta)
    entry = _read(archive).entries["/xattr/file"]
    assert entry.xattrs == (("user.binary", b"\xff\x00binary\n="), ("user.k", b"v"))


# names libarchive URL-encodes (a byte outside "!".."~", "%", "=") and one it leaves
_ENCODED_NAMES = (b"user.\xfe", b"user.p%x=y", b"user.sp ace", b"user.%41", b"user.k")


def test_bsdtar_url_encoded_xattr_names_read_as_the_files_names(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "f").write_text("x\n")
    for n, xname in enumerate(_ENCODED_NAMES):
        os.setxattr(root / "f", xname, str(n).encode())
    archive = bsdtar_archive(root, tmp_path / "x.tar")
    raw = archive.read_bytes()
    assert b"LIBARCHIVE.xattr.user.%FE=" in raw
    assert b"SCHILY.xattr.user.%FE=" in raw  # encoded in both records, not only the first
    delta = imgdiff.diff(str(root), str(archive), use_cache=False, classify=False)
    assert delta.changes == (), show(delta)
    dest = tmp_path / "x"
    dest.mkdir()
    run(["bsdtar", "-xpf", str(archive), "-C", str(dest)])
    # bsdtar -x sets each decoded name (and, from the SCHILY record, the encoded one too)
    assert set(_ENCODED_NAMES) <= {os.fsencode(n) for n in os.listxattr(dest / "f")}


def test_gnu_tar_xattr_names_with_percent_and_equals_read_as_gnu_tar_extracts_them(
    tmp_path: Path,
) -> None:
    # GNU tar writes "%" and "=" in a SCHILY.xattr name as %25 and %3D, and decodes only
    # those: "%41" is not "A" there
    root = tmp_path / "src"
    root.mkdir()
    (root / "f").write_text("x\n")
    for xname in (b"user.%41", b"user.100%", b"user.%fe", b"user.a=b"):
        os.setxattr(root / "f", xname, b"v")
    archive = gnu_archive(root, tmp_path / "x.tar", *GNU_FORMATS["posix"])
    assert b"LIBARCHIVE" not in archive.read_bytes()
    dest = tmp_path / "x"
    extract_gnu(archive, dest)
    assert_same_as_extraction(archive, dest)
    assert_same_tree(root, dest)


def test_gnu_tar_xattr_records_match_the_tree(tmp_path: Path) -> None:
    tree = _xattr_tree(tmp_path)
    archive = gnu_archive(tree.root, tmp_path / "x.tar", *GNU_FORMATS["posix"])
    delta = imgdiff.diff(str(tree.root), str(archive), use_cache=False, classify=False)
    assert delta.changes == (), show(delta)


# POSIX ACLs: bsdtar and GNU tar `--acls` write SCHILY.acl.access/default text; bsdtar
# (as root) and GNU tar `--acls` extraction make them system.posix_acl_* xattrs and set
# the mode's group bits from the mask. Ids 4321/4322/8765 have no name on this machine.
_U = ACL_NO_ID
_ACCESS = [(ACL_USER_OBJ, 6, _U), (ACL_USER, 7, 4322), (ACL_USER, 5, 4321), (ACL_GROUP_OBJ, 4, _U),
           (ACL_GROUP, 1, 8765), (ACL_MASK, 7, _U), (ACL_OTHER, 4, _U)]  # fmt: skip
_DIR_ACCESS = [(ACL_USER_OBJ, 7, _U), (ACL_USER, 7, 4321), (ACL_GROUP_OBJ, 5, _U),
               (ACL_MASK, 5, _U), (ACL_OTHER, 5, _U)]  # fmt: skip
_DEFAULT = [(ACL_USER_OBJ, 7, _U), (ACL_USER, 6, 4322), (ACL_GROUP_OBJ, 5, _U),
            (ACL_MASK, 7, _U), (ACL_OTHER, 0, _U)]  # fmt: skip
_MINIMAL = [(ACL_USER_OBJ, 7, _U), (ACL_GROUP_OBJ, 5, _U), (ACL_OTHER, 0, _U)]


def _acl_tree(root: Path, access: list[tuple[int, int, int]] = _ACCESS) -> Path:
    root.mkdir()
    (root / "f").write_text("x\n")
    set_acl(root / "f", access)
    restricted = root / "restricted"  # a mask below a named entry's rights
    restricted.write_text("r\n")
    set_acl(restricted, [(ACL_USER_OBJ, 6, _U), (ACL_USER, 7, 4321), (ACL_GROUP_OBJ, 6, _U),
                         (ACL_MASK, 4, _U), (ACL_OTHER, 0, _U)])  # fmt: skip
    (root / "minimal").write_text("m\n")
    set_acl(root / "minimal", _MINIMAL)  # no xattr: mode bits only
    (root / "d").mkdir()
    set_acl(root / "d", _DIR_ACCESS, _DEFAULT)
    (root / "inherits").mkdir()
    set_acl(root / "inherits", default=_MINIMAL)
    (root / "plain").write_text("p\n")
    return root


def _acl_archive(writer: str, root: Path, dest: Path) -> Path:
    if writer == "gnu-acls":
        return gnu_archive(root, dest, "--format=posix", "--acls")
    return bsdtar_archive(root, dest, *BSDTAR_FORMATS[writer.removeprefix("bsdtar-")])


def _extract_with(extractor: str, archive: Path, dest: Path) -> None:
    if extractor == "bsdtar":
        proc = extract_bsdtar(archive, dest)
        assert proc.returncode == 0, proc.stderr
    else:
        extract_gnu(archive, dest)


@pytest.mark.parametrize("extractor", ["bsdtar", "gnu"])
@pytest.mark.parametrize("writer", ["bsdtar-default", "bsdtar-pax", "gnu-acls"])
def test_posix_acls_read_as_extraction_restores_them(
    writer: str, extractor: str, tmp_path: Path
) -> None:
    root = _acl_tree(tmp_path / "src")
    archive = _acl_archive(writer, root, tmp_path / "x.tar")
    raw = archive.read_bytes()
    assert b"SCHILY.acl.access=" in raw
    assert b"SCHILY.acl.default=" in raw
    assert b"LIBARCHIVE.xattr.system.posix_acl" not in raw  # bsdtar writes the text only
    dest = tmp_path / "x"
    _extract_with(extractor, archive, dest)
    assert_same_tree(root, dest)  # the oracle restores every ACL, and the mode with it
    assert_same_as_extraction(archive, dest)
    entries = _read(archive).entries
    assert entries["/f"].mode == 0o674  # group bits from the mask, not group::
    assert "system.posix_acl_access" not in dict(entries["/minimal"].xattrs)
    assert entries["/minimal"].mode == 0o750


def test_acl_entry_difference_is_an_xattrs_change(tmp_path: Path) -> None:
    one = bsdtar_archive(_acl_tree(tmp_path / "a"), tmp_path / "a.tar")
    other = [(t, 5 if i == 4322 else p, i) for t, p, i in _ACCESS]
    two = bsdtar_archive(_acl_tree(tmp_path / "b", other), tmp_path / "b.tar")
    delta = imgdiff.diff(str(one), str(two), use_cache=False, classify=False)
    assert [(c.path, c.aspects) for c in delta.changes] == [("/f", (Aspect.XATTRS,))], show(delta)


def _acl_member(records: Sequence[tuple[str, bytes | str]], mode: int = 0o600) -> bytes:
    return pax_header(records) + file_member("f", b"x\n", mode=mode)


def _both_extractions(archive: Path, tmp_path: Path) -> None:
    """The archive reads as GNU tar --acls and bsdtar leave it (bsdtar may exit 1)."""
    extract_gnu(archive, tmp_path / "gnu")
    extract_bsdtar(archive, tmp_path / "bsdtar")
    assert_same_tree(tmp_path / "gnu", tmp_path / "bsdtar")
    assert_same_as_extraction(archive, tmp_path / "gnu")


_TEXT_ACL = "user::rw-,user:4321:rwx,group::r--,mask::rwx,other::r--"
_OTHER_RAW = acl_xattr([(ACL_USER_OBJ, 6, _U), (ACL_USER, 5, 9), (ACL_GROUP_OBJ, 4, _U),
                        (ACL_MASK, 5, _U), (ACL_OTHER, 4, _U)])  # fmt: skip


@pytest.mark.parametrize("raw_key", ["SCHILY.xattr.", "LIBARCHIVE.xattr."])
def test_acl_text_wins_over_a_raw_acl_xattr_record(raw_key: str, tmp_path: Path) -> None:
    raw = _OTHER_RAW if raw_key.startswith("SCHILY") else base64.b64encode(_OTHER_RAW)
    records: list[tuple[str, bytes | str]] = [
        ("SCHILY.acl.access", _TEXT_ACL),
        (raw_key + "system.posix_acl_access", raw),
    ]
    archive = write_bytes(tmp_path / "x.tar", tar_bytes(_acl_member(records)))
    _both_extractions(archive, tmp_path)
    entry = _read(archive).entries["/f"]
    assert entry.mode == 0o674
    assert dict(entry.xattrs)["system.posix_acl_access"] == acl_xattr(
        [(ACL_USER_OBJ, 6, _U), (ACL_USER, 7, 4321), (ACL_GROUP_OBJ, 4, _U),
         (ACL_MASK, 7, _U), (ACL_OTHER, 4, _U)]
    )  # fmt: skip


def test_raw_acl_xattr_record_alone_is_not_restored(tmp_path: Path) -> None:
    records: list[tuple[str, bytes | str]] = [
        ("SCHILY.xattr.system.posix_acl_access", _OTHER_RAW),
        ("SCHILY.xattr.user.k", "v"),
    ]
    archive = write_bytes(tmp_path / "x.tar", tar_bytes(_acl_member(records, 0o644)))
    _both_extractions(archive, tmp_path)
    assert _read(archive).entries["/f"].xattrs == (("user.k", b"v"),)


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("user::rwx,group::rwx,other::rwx", 0o777),
        ("user::r--\nuser:7:rwx\ngroup::r--\nmask::-w-\nother::--x\n", 0o421),
    ],
    ids=["minimal", "mask-below-group"],
)
def test_access_acl_sets_the_mode_bits(text: str, mode: int, tmp_path: Path) -> None:
    archive = write_bytes(
        tmp_path / "x.tar", tar_bytes(_acl_member([("SCHILY.acl.access", text)], 0o4600))
    )
    _both_extractions(archive, tmp_path)
    assert _read(archive).entries["/f"].mode == 0o4000 | mode


def test_default_acl_of_a_non_directory_is_not_restored(tmp_path: Path) -> None:
    records = [
        ("SCHILY.acl.access", "user::rwx,group::r-x,other::---"),
        ("SCHILY.acl.default", "user::rwx,user:7:rwx,group::r--,mask::rwx,other::--x"),
    ]
    archive = write_bytes(tmp_path / "x.tar", tar_bytes(_acl_member(records)))
    _both_extractions(archive, tmp_path)  # GNU tar drops it silently, bsdtar with an error
    entry = _read(archive).entries["/f"]
    assert (entry.mode, entry.xattrs) == (0o750, ())


def test_acl_id_field_wins_over_the_name_as_numeric_owner_extraction(tmp_path: Path) -> None:
    # bsdtar's "user:NAME:perms:ID": bsdtar --numeric-owner sets ID; by name (bsdtar without
    # it, GNU tar always) it would be this machine's uid of NAME, which we do not follow
    daemon = pwd.getpwnam("daemon").pw_uid
    assert daemon != 4321
    text = "user::rw-,user:daemon:rwx:4321,group::r--,mask::rwx,other::---"
    archive = write_bytes(tmp_path / "x.tar", tar_bytes(_acl_member([("SCHILY.acl.access", text)])))
    extract_bsdtar(archive, tmp_path / "x")
    assert_same_as_extraction(archive, tmp_path / "x")


def test_gnu_tar_acl_names_take_their_ids_from_the_raw_record(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "f").write_text("x\n")
    named = pwd.getpwnam("daemon").pw_uid
    set_acl(root / "f", [(ACL_USER_OBJ, 6, _U), (ACL_USER, 7, named), (ACL_GROUP_OBJ, 4, _U),
                         (ACL_MASK, 7, _U), (ACL_OTHER, 0, _U)])  # fmt: skip
    with_raw = gnu_archive(root, tmp_path / "x.tar", "--format=posix", "--acls", *GNU_XATTRS)
    assert b"user:daemon:rwx\n" in with_raw.read_bytes()  # GNU tar writes the name only
    delta = imgdiff.diff(str(root), str(with_raw), use_cache=False, classify=False)
    assert delta.changes == (), show(delta)
    assert delta.warnings == ()
    # without the raw record the name says nothing numeric: not restored, and said so
    text_only = gnu_archive(root, tmp_path / "y.tar", "--format=posix", "--acls")
    delta = imgdiff.diff(str(root), str(text_only), use_cache=False, classify=False)
    assert [(c.path, c.aspects) for c in delta.changes] == [("/f", (Aspect.XATTRS,))]
    assert [(w.path, "'daemon' without a numeric id" in w.message) for w in delta.warnings] == [
        ("/f", True)
    ]


@pytest.mark.parametrize(
    "text",
    [
        "user::rw-,group::r--",
        "user::rw-,user::r--,group::r--,other::r--",
        "user::rw-,user:7:rwx,group::r--,other::r--",
        "user::rw-,user:7:rwx,user:7:r--,group::r--,mask::rwx,other::r--",
        "user::rwz,group::r--,other::r--",
        "user::rw-,user:x:rwx:12a,group::r--,mask::rwx,other::r--",
        "user::rw-,user:x:rwx:4294967295,group::r--,mask::rwx,other::r--",
        "owner::rw-,group::r--,other::r--",
        "user:rw-,group::r--,other::r--",
    ],
    ids=[
        "no-other",
        "two-owners",
        "no-mask",
        "user-twice",
        "bad-perms",
        "bad-id",
        "id-2**32-1",
        "bad-tag",
        "two-fields",
    ],
)
def test_malformed_acl_text_is_bad_input(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = write_bytes(tmp_path / "x.tar", tar_bytes(_acl_member([("SCHILY.acl.access", text)])))
    with pytest.raises(BadInput, match=r"SCHILY\.acl\.access"):
        _read(archive)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["diff", str(archive), str(empty)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert ": f: " in err


# Sparse members. Which writers produce them (checked in the test, not assumed):
#   GNU tar oldgnu/gnu --sparse: typeflag 'S', map in the header (+ extension blocks);
#   GNU tar posix --sparse-version=0.0: repeated GNU.sparse.offset/numbytes records;
#   0.1: one GNU.sparse.map record, name "GNUSparseFile.PID/NAME" + GNU.sparse.name;
#   1.0 (posix default): the map in the data, GNU.sparse.major/minor/name/realsize;
#   bsdtar default and pax: 1.0, named "GNUSparseFile.0/NAME".
SPARSE_WRITERS = {
    "gnu-oldgnu": "GNU old sparse ('S')",
    "gnu-gnu": "GNU old sparse ('S')",
    "gnu-posix-sparse-0.0": "PAX sparse 0.0",
    "gnu-posix-sparse-0.1": "PAX sparse 0.1",
    "gnu-posix-sparse-1.0": "PAX sparse 1.0",
    "bsdtar-default": "PAX sparse 1.0 by bsdtar",
}


def _assert_sparse_members(archive: Path) -> None:
    with tarfile.open(archive) as tf:
        sparse = [m for m in tf if m.issparse()]
    assert sparse, f"{archive.name} holds no sparse member: the test would test nothing"


@pytest.mark.parametrize("writer", list(SPARSE_WRITERS))
def test_sparse_member_has_logical_size_and_content_digest(writer: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src", {"files", "sparse"})
    tree.require("sparse")
    archive = write_with(writer, tree.root, tmp_path / "img.tar")
    _assert_sparse_members(archive)
    source = Manifest.read(str(tree.root), use_cache=False)
    entries = _read(archive).entries
    for path in tree.paths("sparse"):
        want = source.entries[path]
        assert entries[path].type is EntryType.FILE
        assert entries[path].size == want.size
        assert entries[path].digest == source.digest(path), path
    assert not any("GNUSparseFile" in p for p in entries)
    dest = tmp_path / "x"
    extract_gnu(archive, dest)
    assert_same_as_extraction(archive, dest)


HUGE = 4 << 30
HUGE_ISLANDS = ((1 << 30, pattern(1 << 16, 8)), (HUGE - (1 << 16), pattern(1 << 16, 9)))


@pytest.fixture(scope="module")
def huge_sparse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A tree with one 4 GiB file holding two 64 KiB data islands, and its digest."""
    root = tmp_path_factory.mktemp("huge")
    if "sparse" in (cannot := probe(root)):
        pytest.skip(cannot["sparse"])
    with open(root / "huge", "wb") as fh:
        fh.truncate(HUGE)
        for offset, data in HUGE_ISLANDS:
            fh.seek(offset)
            fh.write(data)
    # hashed from memory: reading 4 GiB of hole would fill the page cache with zeros
    hasher = blake3.blake3()
    zeros = bytes(16 << 20)
    at = 0
    for offset, data in HUGE_ISLANDS:
        while at < offset:
            n = min(len(zeros), offset - at)
            hasher.update(zeros[:n])
            at += n
        hasher.update(data)
        at += len(data)
    assert at == HUGE
    return root, "blake3:" + hasher.hexdigest()


_HUGE_READER = """
import sys
from imgdiff import Manifest
e = Manifest.read(sys.argv[1], use_cache=False).entries["/huge"]
print(e.size, e.digest)
"""


@pytest.mark.parametrize("writer", ["gnu-gnu", "gnu-posix-sparse-1.0"])
def test_sparse_member_with_a_4gib_hole_reads_in_bounded_memory(
    writer: str, huge_sparse: tuple[Path, str], tmp_path: Path
) -> None:
    root, digest = huge_sparse
    archive = write_with(writer, root, tmp_path / "huge.tar")
    assert archive.stat().st_size < 1 << 20  # the hole is not in the archive
    argv = [sys.executable, "-c", _HUGE_READER, str(archive)]
    got = measure(argv, tmp_path, env=_imgdiff_env(), guard_seconds=300)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == [str(HUGE), digest]
    assert got.max_rss < 300 << 20, f"peak RSS {got.max_rss >> 20} MiB for a 4 GiB hole"


def _cut_inside_sparse_data(archive: Path, dest: Path) -> Path:
    data = archive.read_bytes()
    at = data.find(pattern(4096, 1)[:512])  # the first data island of sparse/islands
    assert at > 0
    return write_bytes(dest, data[: at + 100])


@pytest.mark.parametrize("writer", list(SPARSE_WRITERS))
def test_sparse_member_problem_names_the_real_file(writer: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src", {"sparse"})
    tree.require("sparse")
    archive = write_with(writer, tree.root, tmp_path / "img.tar")
    cut = _cut_inside_sparse_data(archive, tmp_path / "cut.tar")
    with pytest.raises(BadInput) as exc:
        _read(cut)
    message = str(exc.value)
    assert "GNUSparseFile" not in message
    assert "sparse/islands" in message, message


# Hard links to things that are not regular files. Who writes which (checked below):
# GNU tar writes a hard link to a symlink as '1', but stores hard links to FIFOs and
# devices as separate nodes; bsdtar writes '1' for symlinks and FIFOs (not for character
# devices); tarfile only for regular files. A hard link to a device is crafted.
def _hardlink_archive(writer: str, kind: bytes, tmp_path: Path) -> Path:
    if writer == "crafted-chardev":
        data = tar_bytes(
            header("dev/zero", b"3", mode=0o666, devmajor=1, devminor=5),
            header("dev/zero-link", b"1", mode=0o666, linkname="dev/zero"),
        )
        return write_bytes(tmp_path / "img.tar", data)
    feature = "symlink_hardlinks" if kind == tarfile.SYMTYPE else "node_hardlinks"
    tree = make_tree(tmp_path / "src", {"files", feature})
    tree.require(feature)
    return write_with(writer, tree.root, tmp_path / "img.tar")


@pytest.mark.parametrize(
    ("writer", "kind"),
    [
        ("gnu-gnu", tarfile.SYMTYPE),
        ("gnu-posix", tarfile.SYMTYPE),
        ("bsdtar-default", tarfile.SYMTYPE),
        ("bsdtar-default", tarfile.FIFOTYPE),
        ("bsdtar-ustar", tarfile.FIFOTYPE),
        ("crafted-chardev", tarfile.CHRTYPE),
    ],
    ids=["gnu-symlink", "gnu-posix-symlink", "bsdtar-symlink", "bsdtar-fifo", "ustar-fifo", "chr"],
)
def test_hard_link_to_a_non_file_reads_as_that_node(
    writer: str, kind: bytes, tmp_path: Path
) -> None:
    archive = _hardlink_archive(writer, kind, tmp_path)
    with tarfile.open(archive) as tf:
        members = {image_path(m.name): m for m in tf}
    links = [
        (p, image_path(m.linkname))
        for p, m in members.items()
        if m.islnk() and members[image_path(m.linkname)].type == kind
    ]
    assert links, f"{writer} wrote no hard link to a {kind!r} member"
    entries = _read(archive).entries
    for link, target in links:
        a, b = entries[link], entries[target]
        assert (a.type, a.target, a.rdev, a.mode) == (b.type, b.target, b.rdev, b.mode)
    dest = tmp_path / "x"
    extract_gnu(archive, dest)
    assert_same_as_extraction(archive, dest)


@pytest.mark.parametrize("writer", ["gnu-gnu", "gnu-oldgnu", "tarfile-gnu"])
def test_pre1970_mtime_in_gnu_base256_reads(writer: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src", {"files", "pre1970"})
    tree.require("pre1970")
    archive = write_with(writer, tree.root, tmp_path / "img.tar")
    raw = archive.read_bytes()
    at = raw.find(b"./old/1960\0")
    assert at >= 0
    assert raw[at + 136] == 0xFF  # base-256, negative
    entry = _read(archive).entries["/old/1960"]
    assert entry.mtime_ns == -PRE1970_NS
    dest = tmp_path / "x"
    extract_gnu(archive, dest)
    assert_same_as_extraction(archive, dest)


def _empty_archive(tmp_path: Path, compressor: str | None) -> Path:
    plain = tmp_path / "empty.tar"
    run(["tar", "-cf", str(plain), "-T", "/dev/null"])
    assert plain.read_bytes() == b"\0" * 10240  # a whole record of zeros, no member
    return compress(plain, compressor) if compressor else plain


@pytest.mark.parametrize("compressor", [None, "gzip"], ids=["plain", "gzip"])
def test_empty_archive_reads_as_an_empty_image(compressor: str | None, tmp_path: Path) -> None:
    archive = _empty_archive(tmp_path, compressor)
    assert _read(archive).entries == {}
    dest = tmp_path / "x"
    extract_gnu(archive, dest)
    assert_same_as_extraction(archive, dest)


def test_solaris_x_extended_header_is_read_as_pax(tmp_path: Path) -> None:
    long = "solaris/" + "n" * 150
    data = tar_bytes(
        pax_header([("path", long), ("uid", "4242"), ("mtime", "1234567890.5")], b"X"),
        file_member("short-name", b"solaris", uid=1),
    )
    archive = write_bytes(tmp_path / "x.tar", data)
    assert gnu_names(archive) == [long]
    entry = _read(archive).entries["/" + long]
    assert (entry.uid, entry.size) == (4242, 7)
    dest = tmp_path / "x"
    extract_gnu(archive, dest)
    assert_same_as_extraction(archive, dest)


def test_volume_label_is_not_an_entry(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src", {"files"})
    archive = gnu_archive(tree.root, tmp_path / "v.tar", "-V", "Backup volume 1")
    assert archive.read_bytes()[156:157] == b"V"
    entries = _read(archive).entries
    assert not any("Backup" in p for p in entries)
    dest = tmp_path / "x"
    extract_gnu(archive, dest)
    assert_same_as_extraction(archive, dest)


def test_gnu_dumpdir_is_a_directory(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src", {"files", "odd_modes"})
    archive = gnu_archive(
        tree.root, tmp_path / "inc.tar", f"--listed-incremental={tmp_path / 'snar'}"
    )
    with tarfile.open(archive) as tf:  # dumpdirs carry their listing as content
        dumpdirs = [m for m in tf if m.type == b"D"]
    assert any(m.size > 0 for m in dumpdirs)
    entries = _read(archive).entries
    assert entries["/modes/tmp"].type is EntryType.DIR
    assert entries["/modes/tmp"].mode == 0o1777
    dest = tmp_path / "x"
    extract_gnu(archive, dest)
    assert_same_as_extraction(archive, dest)


def test_unknown_typeflag_reads_as_a_regular_file(tmp_path: Path) -> None:
    # GNU tar: "Unknown file type 'Z', extracted as normal file" (exit status 0)
    archive = write_bytes(tmp_path / "z.tar", tar_bytes(file_member("z", b"zzz", b"Z")))
    entry = _read(archive).entries["/z"]
    assert (entry.type, entry.size) == (EntryType.FILE, 3)
    dest = tmp_path / "x"
    proc = extract_gnu(archive, dest)
    assert "Unknown file type 'Z'" in proc.stderr
    assert_same_as_extraction(archive, dest)


def test_contiguous_file_reads_as_a_regular_file(tmp_path: Path) -> None:
    archive = write_bytes(tmp_path / "c.tar", tar_bytes(file_member("c", b"contiguous", b"7")))
    dest = tmp_path / "x"
    extract_gnu(archive, dest)
    assert_same_as_extraction(archive, dest)


# -- messages -----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["uid", "gid", "mtime", "mode", "size"])
def test_bad_numeric_field_is_named_in_the_error(field: str, tmp_path: Path) -> None:
    width = {"uid": 8, "gid": 8, "mtime": 12, "mode": 8, "size": 12}[field]
    garbage = b"zz9?x!"[: width - 1].ljust(width - 1, b"q") + b"\0"
    block = header("etc/passwd", fields={field: garbage})
    archive = write_bytes(tmp_path / "bad.tar", tar_bytes(block))
    with pytest.raises(BadInput) as exc:
        _read(archive)
    message = str(exc.value)
    assert field in message
    assert "PAX" not in message
    assert "etc/passwd" in message


def _bad_sparse_map(name: bytes) -> bytes:
    # an old GNU sparse member whose first map offset is garbage
    block = bytearray(header(name, b"S", size=512, magic=b"ustar  \0"))
    block[386:398] = b"zzzzzzzzzzz\0"  # sp[0].offset
    block[398:410] = b"00000001000\0"  # sp[0].numbytes
    block[483:495] = b"00000002000\0"  # realsize
    return seal(bytes(block)) + b"\0" * 512


@pytest.mark.parametrize(
    ("case", "archive_name"),
    [
        ("bad-uid", "bad.tar"),
        ("bad-mode", "bad.tar"),
        ("bad-sparse-map", "bad.tar"),
        ("bad-uid", "two\nlines.tar"),
    ],
    ids=["bad-uid", "bad-mode", "bad-sparse-map", "archive-name-with-newline"],
)
def test_cli_error_for_a_name_with_a_newline_is_one_line(
    case: str, archive_name: str, tmp_path: Path
) -> None:
    name = b"evil\nname"
    if case == "bad-uid":
        data = tar_bytes(header(name, fields={"uid": b"notanum\0"}))
    elif case == "bad-mode":
        data = tar_bytes(header(name, fields={"mode": b"notanum\0"}))
    else:
        data = tar_bytes(_bad_sparse_map(name))
    archive = write_bytes(tmp_path / archive_name, data)
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _cli("diff", str(archive), str(empty))
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("\n") == 1, repr(proc.stderr)
    assert proc.stderr.startswith("imgdiff: ")
    assert "evil" in proc.stderr


# -- agree with extraction ----------------------------------------------------------------


def test_parent_directories_the_archive_does_not_list_exist_as_on_extraction(
    tmp_path: Path,
) -> None:
    root = tmp_path / "src"
    (root / "a/b").mkdir(parents=True)
    (root / "a/b/c").write_bytes(b"c")
    os.chmod(root / "a", 0o700)  # not in the archive: extraction makes it 0755 root:root
    archive = gnu_archive(root, tmp_path / "x.tar", "--no-recursion", members=["a/b/c"])
    assert gnu_names(archive) == ["a/b/c"]
    dest = tmp_path / "x"
    extract_gnu(archive, dest)
    delta = imgdiff.diff(str(archive), str(dest), use_cache=False, classify=False)
    assert not delta.by_status("added"), show(delta)
    assert_same_as_extraction(archive, dest)


def test_symlink_mode_in_the_archive_is_ignored_like_extraction(tmp_path: Path) -> None:
    info = tarfile.TarInfo("link")
    info.type = tarfile.SYMTYPE
    info.linkname = "target"
    info.mode = 0o755
    archive = write_bytes(tmp_path / "s.tar", _tarfile_bytes([(info, None)]))
    assert _read(archive).entries["/link"].mode == 0o777
    dest = tmp_path / "x"
    extract_gnu(archive, dest)
    assert_same_as_extraction(archive, dest)


def _tarfile_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for k, v in kw.items():
        setattr(info, k, v)
    return info


def test_hard_link_has_the_mode_and_owner_of_its_target(tmp_path: Path) -> None:
    data = _tarfile_bytes(
        [
            (_info("base", mode=0o600, uid=1, gid=1), b"data"),
            (_info("link", tarfile.LNKTYPE, linkname="base", mode=0o755, uid=2, gid=2), None),
        ]
    )
    archive = write_bytes(tmp_path / "h.tar", data)
    dest = tmp_path / "x"
    extract_gnu(archive, dest)
    st = os.lstat(dest / "link")
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o600, 1, 1)
    link = _read(archive).entries["/link"]
    assert (link.mode, link.uid, link.gid) == (0o600, 1, 1)
    assert_same_as_extraction(archive, dest)


def test_hard_link_keeps_the_content_its_target_had_when_it_was_linked(tmp_path: Path) -> None:
    data = _tarfile_bytes(
        [
            (_info("A"), b"x"),
            (_info("B", tarfile.LNKTYPE, linkname="A"), None),
            (_info("A"), b"y"),
            (_info("C", tarfile.LNKTYPE, linkname="A"), None),
        ]
    )
    archive = write_bytes(tmp_path / "r.tar", data)
    dest = tmp_path / "x"
    extract_gnu(archive, dest)
    assert [(dest / n).read_bytes() for n in "ABC"] == [b"y", b"x", b"y"]
    ino = walk_inodes(dest)
    assert ino["/A"] == ino["/C"] != ino["/B"]
    entries = _read(archive).entries
    a, b, c = entries["/A"], entries["/B"], entries["/C"]
    assert a.digest == c.digest != b.digest
    assert a.hardlink == c.hardlink is not None
    assert b.hardlink != a.hardlink
    assert_same_as_extraction(archive, dest)


@pytest.mark.parametrize("target", ["/etc", "../x/b"], ids=["absolute", "dotdot"])
def test_member_under_a_symlink_is_dropped_with_a_warning(target: str, tmp_path: Path) -> None:
    # GNU tar makes such links last (a placeholder file first), so "a/x" cannot be
    # created: "a/x: Cannot open: Not a directory"
    data = _tarfile_bytes(
        [
            (_info("b", tarfile.DIRTYPE, mode=0o755), None),
            (_info("a", tarfile.SYMTYPE, linkname=target), None),
            (_info("a/x"), b"x"),
        ]
    )
    archive = write_bytes(tmp_path / "s.tar", data)
    dest = tmp_path / "x"
    proc = extract_gnu(archive, dest, check=False)
    assert "a/x: Cannot open: Not a directory" in proc.stderr
    m = _read(archive)
    assert "/a/x" not in m.entries
    assert any(w.path == "/a/x" for w in m.warnings), m.warnings
    assert_same_as_extraction(archive, dest)


def test_member_under_a_relative_symlink_is_not_an_entry_of_its_own(tmp_path: Path) -> None:
    # GNU tar creates "a -> b" at once and so writes "a/x" through it, to b/x; imgdiff
    # never follows a symlink while reading: the member is dropped, with a warning
    data = _tarfile_bytes(
        [
            (_info("b", tarfile.DIRTYPE, mode=0o755), None),
            (_info("a", tarfile.SYMTYPE, linkname="b"), None),
            (_info("a/x"), b"x"),
        ]
    )
    archive = write_bytes(tmp_path / "s.tar", data)
    dest = tmp_path / "x"
    extract_gnu(archive, dest)
    assert (dest / "b/x").read_bytes() == b"x"
    m = _read(archive)
    assert "/a/x" not in m.entries
    assert any(w.path == "/a/x" for w in m.warnings), m.warnings


def test_a_hard_link_whose_target_lies_under_a_symlink_is_dropped_as_bsdtar_does(
    tmp_path: Path,
) -> None:
    """l -> s/t with s -> d: bsdtar will not resolve it ("Cannot extract through symlink")
    and goes on; imgdiff refused the whole archive (hard link to missing target)."""
    data = _tarfile_bytes(
        [
            (_info("d", tarfile.DIRTYPE, mode=0o755), None),
            (_info("d/t"), b"x\n"),
            (_info("s", tarfile.SYMTYPE, linkname="d"), None),
            (_info("l", tarfile.LNKTYPE, linkname="s/t"), None),
        ]
    )
    archive = write_bytes(tmp_path / "h.tar", data)
    dest = tmp_path / "x"
    proc = extract_bsdtar(archive, dest)
    assert "Cannot extract through symlink" in proc.stderr
    m = _read(archive)
    assert "/l" not in m.entries
    assert any(w.path == "/l" and "under /s, a symlink" in w.message for w in m.warnings)
    assert_same_as_extraction(archive, dest)


@pytest.mark.parametrize("children", [True, False], ids=["non-empty", "empty"])
def test_file_member_over_a_directory_agrees_with_extraction(
    children: bool, tmp_path: Path
) -> None:
    # GNU tar replaces an empty directory; over one with children: "d: Cannot open:
    # File exists" and the directory stays
    members: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (_info("d", tarfile.DIRTYPE, mode=0o755), None)
    ]
    if children:
        members.append((_info("d/c"), b"child"))
    members.append((_info("d"), b"file"))
    archive = write_bytes(tmp_path / "d.tar", _tarfile_bytes(members))
    dest = tmp_path / "x"
    proc = extract_gnu(archive, dest, check=False)
    assert (dest / "d").is_dir() == children, proc.stderr
    m = _read(archive)
    if children:
        assert any(w.path == "/d" for w in m.warnings), m.warnings
    assert_same_as_extraction(archive, dest)


@pytest.mark.parametrize(
    "records",
    [
        [("uid", "-1")],
        [("gid", str(2**32))],
        [("path", b"a\0b")],
        [("linkpath", b"t\0arget")],
        [("size", "-5")],
        [("mtime", "soon")],
    ],
    ids=["uid=-1", "gid=2**32", "path-with-NUL", "linkpath-with-NUL", "size=-5", "mtime=soon"],
)
def test_pax_value_out_of_range_is_bad_input(
    records: list[tuple[str, bytes | str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GNU tar: "Extended header uid=-1 is out of range 0..4294967295" (and cuts a path
    # at its NUL); an image reader must refuse rather than guess
    symlink = any(k == "linkpath" for k, _ in records)
    target = header("link", b"2", linkname="t") if symlink else file_member("plain", b"x")
    data = tar_bytes(pax_header(records), target)
    archive = write_bytes(tmp_path / "pax.tar", data)
    with pytest.raises(BadInput):
        _read(archive)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["diff", str(archive), str(empty)]) == 3
    assert capsys.readouterr().err.count("\n") == 1


# -- F. bounds ----------------------------------------------------------------------------

# The children below cap their address space: a reader that does not bound memory
# fails with MemoryError there instead of pushing the machine into swap or the OOM killer.
CHILD_ADDRESS_SPACE = 3 << 30

_BOUNDED_READER = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
import imgdiff
try:
    if len(sys.argv) > 3:  # what `imgdiff diff ARCHIVE EMPTY-DIR` does, less the rendering
        n = len(imgdiff.diff(sys.argv[2], sys.argv[3], use_cache=False).changes)
    else:
        n = len(imgdiff.Manifest.read(sys.argv[2], use_cache=False).entries)
except imgdiff.LimitExceeded as exc:
    print("limit", exc)
else:
    print("read", n)
"""


def _bounded_read(tmp_path: Path, archive: Path, *, diff: bool = False) -> tuple[str, Measured]:
    """Read `archive` in a capped child: ("limit" | "read", measurements)."""
    argv = [sys.executable, "-c", _BOUNDED_READER, str(CHILD_ADDRESS_SPACE), str(archive)]
    if diff:
        empty = tmp_path / "empty"
        empty.mkdir(exist_ok=True)
        argv.append(str(empty))
    got = measure(argv, tmp_path, env=_imgdiff_env())
    assert got.returncode == 0, f"peak RSS {got.max_rss >> 20} MiB, then: {got.stderr[-2000:]}"
    verdict = got.stdout.split()[0]
    assert verdict in ("limit", "read"), got.stdout
    return got.stdout.strip(), got


def _long_names_tar_zst(path: Path, members: int, name_bytes: int) -> tuple[int, int]:
    """PAX members with `name_bytes`-byte paths, zstd-compressed; (plain, compressed) size.

    Names are drawn from a pool of random components so zstd cannot shrink them more
    than ~100x: the archive stays far below the decompression-ratio limit, and only a
    bound on the path bytes themselves can refuse it.
    """
    import random

    import zstandard

    rng = random.Random(20_000)
    pool = [rng.randbytes(128).hex()[:255] for _ in range(256)]
    plain = 0
    with (
        open(path, "wb") as fh,
        zstandard.ZstdCompressor(level=3).stream_writer(fh, closefd=False) as out,
    ):
        for i in range(members):
            parts = [f"m{i:06d}"]
            size = len(parts[0])
            while size < name_bytes - 256:
                c = rng.choice(pool)
                parts.append(c)
                size += len(c) + 1
            name = "/".join(parts)
            chunk = pax_header([("path", name)]) + header(f"m{i:06d}", b"0")
            out.write(chunk)
            plain += len(chunk)
        out.write(b"\0" * 1024)
        plain += 1024
    return plain, path.stat().st_size


@pytest.mark.slow
def test_archive_of_huge_total_path_bytes_is_refused_or_diffed_in_bounded_memory(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "names.tar.zst"
    plain, packed = _long_names_tar_zst(archive, 20_000, 16_000)
    assert plain > 300 << 20
    assert plain / packed < 1000  # the decompression-bomb ratio cannot be what stops it
    # refused (LimitExceeded, exit 3) or read, memory must follow the input either way:
    # a limit that trips only after the damage is done bounds nothing
    verdict, got = _bounded_read(tmp_path, archive, diff=True)
    assert got.max_rss < 500 << 20, f"peak RSS {got.max_rss >> 20} MiB; {verdict[:200]}"


def _deep_names_tar_zst(path: Path, members: int, depth: int) -> int:
    """`members` files each `depth` directories down a tree of their own; plain size."""
    import zstandard

    plain = 0
    with (
        open(path, "wb") as fh,
        zstandard.ZstdCompressor(level=3).stream_writer(fh, closefd=False) as out,
    ):
        for i in range(members):
            chunk = pax_header([("path", f"m{i:05d}/" + "x/" * depth + "leaf")])
            chunk += header(f"m{i:05d}", b"0")
            out.write(chunk)
            plain += len(chunk)
        out.write(b"\0" * 1024)
    return plain + 1024


@pytest.mark.slow
def test_implicit_parents_of_deep_names_cost_memory_in_proportion_to_the_input(
    tmp_path: Path,
) -> None:
    # 400 members of 4 KB names, 2000 levels deep, each down its own tree: 2 MB of tar
    # (a few KB compressed) whose implicit parent directories are 800,000 paths of 4 KB
    # on average. Names alone are far under any names-per-input bound.
    archive = tmp_path / "deep.tar.zst"
    plain = _deep_names_tar_zst(archive, 400, 2000)
    assert plain < 3 << 20
    verdict, got = _bounded_read(tmp_path, archive)
    assert got.max_rss < 500 << 20, f"peak RSS {got.max_rss >> 20} MiB; {verdict[:200]}"


def _empty_members_tar_zst(path: Path, members: int) -> None:
    """`members` empty regular files in 200 directories, as one zstd-compressed tar."""
    import zstandard

    template = bytearray(header(b"", b"0", mode=0o644))
    template[148:156] = b" " * 8
    base = sum(template)
    with (
        open(path, "wb") as fh,
        zstandard.ZstdCompressor(level=3).stream_writer(fh, closefd=False) as out,
    ):
        for i in range(members):
            name = b"d%03d/file-%07d" % (i % 200, i)
            block = bytearray(template)
            block[0 : len(name)] = name
            block[148:156] = b"%06o\0 " % (base + sum(name))
            out.write(block)
        out.write(b"\0" * 1024)


def _rss_reading(tmp_path: Path, members: int) -> tuple[int, str]:
    archive = tmp_path / f"empty-{members}.tar.zst"
    _empty_members_tar_zst(archive, members)
    verdict, got = _bounded_read(tmp_path, archive)
    archive.unlink()
    return got.max_rss, verdict


@pytest.mark.slow
def test_many_empty_members_cost_little_memory_each(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    small_rss, small = _rss_reading(tmp_path, 2_000)
    big_rss, big = _rss_reading(tmp_path, 200_000)
    # 200 directories are implicit parents: they may be listed too
    assert small.split()[0] == big.split()[0] == "read"
    assert int(big.split()[1]) in (200_000, 200_200)
    per_member = (big_rss - small_rss) / 198_000
    record_property("peak_rss_bytes_per_member", round(per_member))  # ~380 when written
    assert per_member < 2000, f"{per_member:.0f} bytes of peak RSS per member"


# -- helpers used above -------------------------------------------------------------------


def test_header_factory_writes_what_tarfile_and_gnu_tar_read(tmp_path: Path) -> None:
    # the crafted archives above are only as good as `header`: check it against both
    data = tar_bytes(
        header("dir/", b"5", mode=0o750, uid=7, gid=8, mtime=1_000_000),
        file_member("dir/file", b"content", uid=7, gid=8, mode=0o640),
        header("dir/link", b"2", linkname="file"),
        header("dev", b"3", devmajor=1, devminor=3),
    )
    archive = write_bytes(tmp_path / "h.tar", data)
    with tarfile.open(archive) as tf:
        got = {m.name: (m.type, m.mode, m.uid, m.gid, m.size, m.linkname) for m in tf}
    assert got == {
        "dir": (tarfile.DIRTYPE, 0o750, 7, 8, 0, ""),
        "dir/file": (tarfile.REGTYPE, 0o640, 7, 8, 7, ""),
        "dir/link": (tarfile.SYMTYPE, 0o644, 0, 0, 0, "file"),
        "dev": (tarfile.CHRTYPE, 0o644, 0, 0, 0, ""),
    }
    assert gnu_names(archive) == ["dir/", "dir/file", "dir/link", "dev"]
    with pytest.raises(ValueError, match="does not fit"):
        header("x" * 101)

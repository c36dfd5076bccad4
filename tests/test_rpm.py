"""The rpm reader on real rpmdbs made by rpmbuild and rpm, and rpm version ordering."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
import struct
import subprocess
from pathlib import Path

import attrs
import pytest

import imgdiff
from imgdiff import BadInput, Manifest
from imgdiff.packages import _rpm_header
from imgdiff.packages.base import Package, PackageDB, PathResolver
from imgdiff.packages.rpm import (
    DB_DIRS,
    compare_versions,
    package_requires,
    read_rpm,
    rpmvercmp,
    wants,
)

from .conftest import gnu_tar, write_tree
from .rpm_fixtures import Spec, build, dump, have_rpm_tools, install, subpackage

try:
    import rpm as rpm_bindings
except ImportError:  # the fallback is still tested; parity tests skip
    rpm_bindings = None

needs_bindings = pytest.mark.skipif(rpm_bindings is None, reason="rpm bindings not installed")

ALPHA_FILES = (
    ("/usr/bin/alpha", "#!/bin/sh\\necho alpha\\n", ""),
    ("/etc/alpha/alpha.conf", "colour = blue\\n", "%config(noreplace)"),
    ("/usr/lib/alpha/data.txt", "alpha data\\n", ""),
)
ALPHA_REQUIRES = ("beta", "(gamma or beta >= 2:3.0)", "/bin/sh", "libc.so.6()(64bit)",
                  "perl(Foo::Bar)", "webserver")  # fmt: skip
ALPHA_1 = Spec("alpha", "1.0", requires=ALPHA_REQUIRES, files=ALPHA_FILES)
ALPHA_2 = attrs.evolve(ALPHA_1, version="1.1")
BETA = Spec(
    "beta",
    "3.0",
    epoch=2,
    files=(
        ("/lib/beta/libbeta.data", "beta\\n", ""),  # /lib is a symlink in the image
        ("/etc/beta.conf", "b = 1\\n", "%config"),
        ("/var/log/beta.log", "", "%ghost"),
    ),
    dirs=("/var/lib/beta",),
)
GAMMA = Spec("gamma", "0.1", files=(("/usr/share/gamma/readme", "gamma\\n", ""),))


@attrs.frozen
class Root:
    """An image tree with an rpm database, as rpm itself installed it."""

    path: Path
    dbpath: str  # where rpm was told the database is (inside the tree)


@attrs.frozen
class Fixtures:
    old: Root  # alpha 1.0, beta; /var/lib/rpm; /lib -> usr/lib
    new: Root  # alpha 1.1, beta; /usr/lib/sysimage/rpm, /var/lib/rpm -> it
    decoy: Root  # gamma only: stands for a host database
    tmp: Path


@pytest.fixture(scope="session")
def rpms(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    if not have_rpm_tools():
        pytest.skip("rpmbuild/rpm not installed (scripts/dev.sh installs them for CI)")
    tmp = tmp_path_factory.mktemp("rpm")
    built = {s: build(s, tmp / "build") for s in (ALPHA_1, ALPHA_2, BETA, GAMMA)}

    old = tmp / "old"
    (old / "usr/lib").mkdir(parents=True)
    (old / "lib").symlink_to("usr/lib")
    install(old, "/var/lib/rpm", [built[ALPHA_1], built[BETA]])

    new = tmp / "new"
    (new / "usr/lib/sysimage/rpm").mkdir(parents=True)
    (new / "lib").symlink_to("usr/lib")
    (new / "var/lib").mkdir(parents=True)
    (new / "var/lib/rpm").symlink_to("../../usr/lib/sysimage/rpm")
    install(new, "/usr/lib/sysimage/rpm", [built[ALPHA_2], built[BETA]])

    decoy = tmp / "decoy"
    install(decoy, "/var/lib/rpm", [built[GAMMA]])
    return Fixtures(
        Root(old, "/var/lib/rpm"),
        Root(new, "/usr/lib/sysimage/rpm"),
        Root(decoy, "/var/lib/rpm"),
        tmp,
    )


def read(image: str | Path, use_bindings: bool | None = None) -> PackageDB | None:
    m = Manifest.read(str(image), use_cache=False, capture=wants)
    return read_rpm(m, PathResolver(m), use_bindings=use_bindings)


def read_db(image: str | Path, use_bindings: bool | None = None) -> PackageDB:
    db = read(image, use_bindings)
    assert db is not None
    return db


def by_name(db: PackageDB) -> dict[str, Package]:
    return {p.name: p for p in db.packages}


BOTH_READERS = [
    pytest.param(True, marks=needs_bindings, id="bindings"),
    pytest.param(False, id="fallback"),
]


# -- what is read ---------------------------------------------------------------------------
@pytest.mark.parametrize("use_bindings", BOTH_READERS)
def test_installed_packages_have_epoch_version_release_and_arch(
    rpms: Fixtures, use_bindings: bool
) -> None:
    db = read_db(rpms.old.path, use_bindings)
    assert [(p.manager, p.name, p.version, p.arch) for p in db.packages] == [
        ("rpm", "alpha", "1.0-1", "noarch"),
        ("rpm", "beta", "2:3.0-1", "noarch"),
    ]
    assert db.source == "/var/lib/rpm/rpmdb.sqlite"
    assert db.warnings == ()
    assert by_name(db)["beta"].key == "beta:noarch"


@pytest.mark.parametrize("use_bindings", BOTH_READERS)
def test_owned_files_are_normalised_through_the_images_symlinks(
    rpms: Fixtures, use_bindings: bool
) -> None:
    pkgs = by_name(read_db(rpms.old.path, use_bindings))
    assert pkgs["alpha"].files == (
        "/etc/alpha/alpha.conf",
        "/usr/bin/alpha",
        "/usr/lib/alpha/data.txt",
    )
    # rpm lists /lib/beta/...; the image's /lib is a symlink to usr/lib
    assert pkgs["beta"].files == (
        "/etc/beta.conf",
        "/usr/lib/beta/libbeta.data",
        "/var/lib/beta",
        "/var/log/beta.log",
    )


@pytest.mark.parametrize("use_bindings", BOTH_READERS)
def test_config_files_are_those_rpm_flags_as_config(rpms: Fixtures, use_bindings: bool) -> None:
    db = read_db(rpms.old.path, use_bindings)
    config = {p.name: p.config_files for p in db.packages}
    assert config == {"alpha": ("/etc/alpha/alpha.conf",), "beta": ("/etc/beta.conf",)}
    dumped = {row[0] for row in dump(rpms.old.path, rpms.old.dbpath) if row[7] == "1"}
    assert dumped == {"/etc/alpha/alpha.conf", "/etc/beta.conf"}


WEBTOOL = Spec(
    "webtool",
    "1.0",
    files=(("/usr/sbin/webtool", "#!/bin/sh\\n", ""),),
    subpackages=(("common", (("/etc/webtool/webtool.conf", "w = 1\\n", "%config(noreplace)"),)),),
)


@pytest.mark.parametrize("use_bindings", BOTH_READERS)
def test_source_is_the_name_of_the_source_rpm(
    rpms: Fixtures, tmp_path: Path, use_bindings: bool
) -> None:
    main = build(WEBTOOL, tmp_path / "build")
    install(
        tmp_path / "root", "/var/lib/rpm", [main, subpackage(WEBTOOL, "common", tmp_path / "build")]
    )
    db = read_db(tmp_path / "root", use_bindings)
    assert {p.name: p.source for p in db.packages} == {
        "webtool": "webtool",
        "webtool-common": "webtool",
    }


@pytest.mark.parametrize("use_bindings", BOTH_READERS)
def test_requires_keep_package_names_and_drop_capabilities(
    rpms: Fixtures, use_bindings: bool
) -> None:
    pkgs = by_name(read_db(rpms.old.path, use_bindings))
    # dropped: /bin/sh, libc.so.6()(64bit), perl(Foo::Bar), rpmlib(...), config(alpha)
    assert pkgs["alpha"].depends == ("beta", "gamma", "webserver")
    assert pkgs["beta"].depends == ()


@pytest.mark.parametrize("use_bindings", BOTH_READERS)
def test_file_digests_are_the_ones_rpm_dumps(rpms: Fixtures, use_bindings: bool) -> None:
    m = Manifest.read(str(rpms.old.path), use_cache=False)
    resolver = PathResolver(m)
    db = read_rpm(m, resolver, use_bindings=use_bindings)
    assert db is not None
    recorded = {path: d for p in db.packages for path, d in p.file_digests}
    dumped = {
        resolver.normalise(row[0]): f"sha256:{row[3]}"
        for row in dump(rpms.old.path, rpms.old.dbpath)
        if row[3].strip("0")  # directories and ghosts dump an all-zero digest
    }
    assert recorded == dumped
    assert set(recorded) == {
        "/usr/bin/alpha",
        "/etc/alpha/alpha.conf",
        "/usr/lib/alpha/data.txt",
        "/usr/lib/beta/libbeta.data",
        "/etc/beta.conf",
    }
    on_disk = rpms.old.path / "usr/bin/alpha"
    if on_disk.exists():  # full install (as root): the file rpm wrote has that digest
        sha = hashlib.sha256(on_disk.read_bytes()).hexdigest()
        assert recorded["/usr/bin/alpha"] == f"sha256:{sha}"


@needs_bindings
@pytest.mark.parametrize("which", ["old", "new"])
def test_bindings_and_fallback_parser_give_identical_package_dbs(
    rpms: Fixtures, which: str
) -> None:
    root: Root = getattr(rpms, which)
    assert read_db(root.path, True) == read_db(root.path, False)


@pytest.mark.parametrize("use_bindings", BOTH_READERS)
def test_sysimage_database_is_found_behind_var_lib_rpm_symlink(
    rpms: Fixtures, use_bindings: bool
) -> None:
    db = read_db(rpms.new.path, use_bindings)
    assert db.source == "/usr/lib/sysimage/rpm/rpmdb.sqlite"
    assert [(p.name, p.version) for p in db.packages] == [("alpha", "1.1-1"), ("beta", "2:3.0-1")]
    old = by_name(read_db(rpms.old.path, use_bindings))["alpha"].version
    assert compare_versions(old, by_name(db)["alpha"].version) == -1


@pytest.mark.parametrize("use_bindings", BOTH_READERS)
@pytest.mark.parametrize("which", ["old", "new"])
def test_tar_image_gives_the_same_packages_from_the_first_pass_capture(
    rpms: Fixtures, use_bindings: bool, which: str
) -> None:
    root: Root = getattr(rpms, which)
    archive = gnu_tar(root.path, rpms.tmp / f"{which}-{use_bindings}.tar")
    m = Manifest.read(str(archive), capture=wants)
    assert m._image is not None
    assert f"{root.dbpath}/rpmdb.sqlite" in m._read.captured
    db = read_rpm(m, PathResolver(m), use_bindings=use_bindings)
    assert db == read_db(root.path, use_bindings)


@pytest.mark.parametrize("use_bindings", BOTH_READERS)
@pytest.mark.parametrize("which", ["old", "new"])
def test_saved_manifest_gives_the_same_packages(
    rpms: Fixtures, use_bindings: bool, which: str, tmp_path: Path
) -> None:
    root: Root = getattr(rpms, which)
    Manifest.read(str(root.path), use_cache=False).save(tmp_path / "m")
    m = Manifest.load(tmp_path / "m")
    assert not m.has_contents
    db = read_rpm(m, PathResolver(m), use_bindings=use_bindings)
    assert db is not None
    assert db.packages
    assert db == read_db(root.path, use_bindings)


def test_wants_selects_files_directly_inside_rpm_database_dirs() -> None:
    assert wants("/var/lib/rpm/rpmdb.sqlite")
    assert wants("/usr/lib/sysimage/rpm/Packages")
    assert not wants("/var/lib/rpm")
    assert not wants("/var/lib/rpm/sub/rpmdb.sqlite")
    assert not wants("/root/.rpmdb/rpmdb.sqlite")  # Debian's rpm default: not a system db
    assert DB_DIRS == ("/usr/lib/sysimage/rpm", "/var/lib/rpm")


@pytest.mark.parametrize("use_bindings", BOTH_READERS)
def test_image_without_rpm_database_has_no_rpm_view(tmp_path: Path, use_bindings: bool) -> None:
    write_tree(tmp_path / "img", {"etc/os-release": "ID=debian\n", "var/lib/rpm/.keep": ""})
    assert read(tmp_path / "img", use_bindings) is None


# -- never the host's database, never rpm's global state ---------------------------------
@needs_bindings
def test_host_database_is_never_read_and_rpm_macros_are_restored(rpms: Fixtures) -> None:
    decoy = str(rpms.decoy.path) + rpms.decoy.dbpath
    assert rpm_bindings is not None
    rpm_bindings.addMacro("_dbpath", decoy)  # as if the host's own database were here
    try:
        db = read_db(rpms.old.path, True)
        assert [p.name for p in db.packages] == ["alpha", "beta"]
        assert rpm_bindings.expandMacro("%{_dbpath}") == decoy
        assert rpm_bindings.expandMacro("%{_db_backend}") == "sqlite"
        ts = rpm_bindings.TransactionSet()
        assert [h[rpm_bindings.RPMTAG_NAME] for h in ts.dbMatch()] == ["gamma"]
        ts.closeDB()
    finally:
        rpm_bindings.delMacro("_dbpath")


@pytest.mark.parametrize("use_bindings", BOTH_READERS)
def test_reading_leaves_the_image_untouched(rpms: Fixtures, use_bindings: bool) -> None:
    dbdir = rpms.old.path / rpms.old.dbpath.lstrip("/")
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in dbdir.iterdir()}
    read_db(rpms.old.path, use_bindings)
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in dbdir.iterdir()}
    assert after == before


# -- awkward and bad databases ----------------------------------------------------------------
def copy_db(root: Root, image: Path, dbpath: str = "/var/lib/rpm") -> Path:
    """The fixture's sqlite database alone, copied into a fresh image tree; its path."""
    dest = image / dbpath.lstrip("/")
    dest.mkdir(parents=True)
    src = root.path / root.dbpath.lstrip("/") / "rpmdb.sqlite"
    shutil.copyfile(src, dest / "rpmdb.sqlite")
    return dest / "rpmdb.sqlite"


def hnum_of(db: Path, name: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        for hnum, blob in con.execute("SELECT hnum, blob FROM Packages"):
            if _rpm_header.Header(blob).first_string(_rpm_header.NAME) == name:
                return int(hnum)
    con.close()
    raise AssertionError(name)


@pytest.mark.parametrize("use_bindings", BOTH_READERS)
def test_committed_changes_still_in_the_wal_are_read(
    rpms: Fixtures, tmp_path: Path, use_bindings: bool
) -> None:
    live = copy_db(rpms.old, tmp_path / "live")
    image = tmp_path / "img" / "var/lib/rpm"
    image.mkdir(parents=True)
    con = sqlite3.connect(live)
    try:
        assert con.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
        con.execute("PRAGMA wal_autocheckpoint=0")
        con.execute("DELETE FROM Packages WHERE hnum = ?", (hnum_of(live, "alpha"),))
        con.commit()
        for name in ("rpmdb.sqlite", "rpmdb.sqlite-wal"):  # a snapshot taken mid-flight
            shutil.copyfile(live.parent / name, image / name)
    finally:
        con.close()
    assert (image / "rpmdb.sqlite-wal").stat().st_size > 0
    assert [p.name for p in read_db(tmp_path / "img", use_bindings).packages] == ["beta"]


@pytest.mark.parametrize("use_bindings", BOTH_READERS)
def test_damaged_header_is_skipped_with_a_warning_naming_it(
    rpms: Fixtures, tmp_path: Path, use_bindings: bool
) -> None:
    db = copy_db(rpms.old, tmp_path / "img")
    hnum = hnum_of(db, "alpha")
    with sqlite3.connect(db) as con:
        con.execute("UPDATE Packages SET blob = substr(blob, 1, 100) WHERE hnum = ?", (hnum,))
    con.close()
    got = read_db(tmp_path / "img", use_bindings)
    assert [p.name for p in got.packages] == ["beta"]
    assert [w.path for w in got.warnings] == ["/var/lib/rpm/rpmdb.sqlite"]
    assert f"package #{hnum}:" in got.warnings[0].message
    assert "skipped" in got.warnings[0].message


@pytest.mark.parametrize("use_bindings", BOTH_READERS)
def test_random_bytes_named_rpmdb_sqlite_are_bad_input_naming_the_file(
    tmp_path: Path, use_bindings: bool
) -> None:
    noise = random.Random(7).randbytes(8192)
    write_tree(tmp_path / "img", {"var/lib/rpm/rpmdb.sqlite": noise})
    with pytest.raises(BadInput, match=r"/var/lib/rpm/rpmdb\.sqlite: not a readable sqlite"):
        read(tmp_path / "img", use_bindings)


@pytest.mark.parametrize("use_bindings", BOTH_READERS)
def test_sqlite_database_without_packages_table_is_bad_input(
    tmp_path: Path, use_bindings: bool
) -> None:
    dbdir = tmp_path / "img/usr/lib/sysimage/rpm"
    dbdir.mkdir(parents=True)
    with sqlite3.connect(dbdir / "rpmdb.sqlite") as con:
        con.execute("CREATE TABLE Name (key TEXT, hnum INTEGER)")
    con.close()
    with pytest.raises(BadInput, match=r"rpmdb\.sqlite: sqlite rpm database without a Packages"):
        read(tmp_path / "img", use_bindings)


def test_ndb_database_without_bindings_is_an_empty_view_with_a_warning(tmp_path: Path) -> None:
    write_tree(tmp_path / "img", {"usr/lib/sysimage/rpm/Packages.db": b"RpmP" + bytes(60)})
    db = read_db(tmp_path / "img", use_bindings=False)
    assert db.packages == ()
    assert db.source == "/usr/lib/sysimage/rpm/Packages.db"
    assert "no fallback reader" in db.warnings[0].message


def rpm_backends() -> set[str]:
    """The database backends of the local rpm build (`rpm --showrc`)."""
    if shutil.which("rpm") is None:
        return set()
    out = subprocess.run(["rpm", "--showrc"], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("available backends"):
            return set(line.partition(":")[2].split())
    return set()


@needs_bindings
def test_backend_missing_from_the_rpm_build_is_reported_not_taken_as_empty(
    tmp_path: Path,
) -> None:
    # Debian's rpm 4.18 has sqlite, bdb_ro and dummy: rpm reads an ndb database as nothing
    if "ndb" in rpm_backends() or "dummy" not in rpm_backends():
        pytest.skip("this rpm build has the ndb backend (or no dummy backend to fall to)")
    write_tree(tmp_path / "img", {"usr/lib/sysimage/rpm/Packages.db": b"RpmP" + bytes(60)})
    db = read_db(tmp_path / "img", use_bindings=True)
    assert db.packages == ()
    assert "may lack the ndb backend" in db.warnings[0].message


def db_load() -> str | None:
    return shutil.which("db_load") or shutil.which("db5.3_load")


@needs_bindings
@pytest.mark.skipif(db_load() is None, reason="db_load (Debian: db-util) not installed")
def test_berkeley_db_packages_file_is_read_by_rpms_bdb_ro_backend(
    rpms: Fixtures, tmp_path: Path
) -> None:
    # an old-style (CentOS 7, RHEL 8) database: a Berkeley DB hash `Packages` keyed by
    # the native-endian header number, made from the fixture's headers by db_load
    src = rpms.old.path / rpms.old.dbpath.lstrip("/") / "rpmdb.sqlite"
    with sqlite3.connect(f"file:{src}?mode=ro&immutable=1", uri=True) as con:
        rows = con.execute("SELECT hnum, blob FROM Packages").fetchall()
    con.close()
    records = [(0, struct.pack("=I", max(h for h, _ in rows) + 1)), *rows]
    lines = ["VERSION=3", "format=bytevalue", "type=hash", "HEADER=END"]
    for hnum, data in records:
        lines += [" " + struct.pack("=I", hnum).hex(), " " + bytes(data).hex()]
    (tmp_path / "dump").write_text("\n".join([*lines, "DATA=END", ""]))
    image = tmp_path / "img"
    (image / "var/lib/rpm").mkdir(parents=True)
    (image / "lib").symlink_to("usr/lib")
    tool = db_load()
    assert tool is not None
    subprocess.run(
        [tool, "-f", str(tmp_path / "dump"), str(image / "var/lib/rpm/Packages")], check=True
    )
    db = read_db(image, use_bindings=True)
    assert db.source == "/var/lib/rpm/Packages"
    assert db.packages == read_db(rpms.old.path, use_bindings=True).packages
    without = read_db(image, use_bindings=False)
    assert without.packages == ()
    assert "no fallback reader" in without.warnings[0].message


def test_newer_of_two_databases_is_read_and_the_other_reported(
    rpms: Fixtures, tmp_path: Path
) -> None:
    image = tmp_path / "img"
    older = copy_db(rpms.old, image, "/var/lib/rpm")
    newer = copy_db(rpms.new, image, "/usr/lib/sysimage/rpm")
    stamp = older.stat().st_mtime_ns
    os.utime(newer, ns=(stamp + 10**9, stamp + 10**9))
    db = read_db(image, use_bindings=False)
    assert db.source == "/usr/lib/sysimage/rpm/rpmdb.sqlite"
    assert by_name(db)["alpha"].version == "1.1-1"
    assert [(w.path, "ignored" in w.message) for w in db.warnings] == [
        ("/var/lib/rpm/rpmdb.sqlite", True)
    ]


# -- the header parser on hostile blobs -----------------------------------------------------
def real_blob(rpms: Fixtures) -> bytes:
    """alpha's header blob, as the fixture's sqlite database stores it."""
    db = rpms.old.path / rpms.old.dbpath.lstrip("/") / "rpmdb.sqlite"
    hnum = hnum_of(db, "alpha")
    with sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True) as con:
        blob = con.execute("SELECT blob FROM Packages WHERE hnum = ?", (hnum,)).fetchone()[0]
    con.close()
    assert isinstance(blob, bytes)
    return blob


def blob_of(entries: list[tuple[int, int, int, int]], data: bytes, il: int | None = None) -> bytes:
    index = b"".join(struct.pack(">IIII", *e) for e in entries)
    return struct.pack(">II", len(entries) if il is None else il, len(data)) + index + data


def test_real_header_parses_with_its_files_and_requires(rpms: Fixtures) -> None:
    h = _rpm_header.Header(real_blob(rpms))
    assert h.first_string(_rpm_header.NAME) == "alpha"
    assert "/usr/bin/alpha" in h.file_names()
    assert "rpmlib(CompressedFileNames)" in h.strings(_rpm_header.REQUIRENAME)
    assert h.first_int(_rpm_header.FILEDIGESTALGO) == 8


def test_every_truncation_of_a_real_header_is_a_header_error(rpms: Fixtures) -> None:
    blob = real_blob(rpms)
    for size in range(len(blob)):
        with pytest.raises(_rpm_header.HeaderError):
            _rpm_header.Header(blob[:size])


def test_corrupted_real_headers_raise_only_header_errors(rpms: Fixtures) -> None:
    blob = real_blob(rpms)
    rng = random.Random(1)
    for _ in range(2000):
        mutated = bytearray(blob)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(8, len(blob))] = rng.randrange(256)
        try:
            h = _rpm_header.Header(bytes(mutated))
            h.file_names()
            for tag in (_rpm_header.NAME, _rpm_header.REQUIRENAME, _rpm_header.FILEDIGESTS):
                h.strings(tag)
            h.ints(_rpm_header.FILEFLAGS)
        except _rpm_header.HeaderError:
            pass


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\x00\x00\x00", "shorter than"),
        (b"\x8e\xad\xe8\x01\x00\x00\x00\x00" + bytes(16), "header intro"),
        (blob_of([], b"", il=0), "index count 0"),
        (struct.pack(">II", 100_001, 0), "index count 100001"),
        (struct.pack(">II", 1, (256 << 20) + 1), "data length"),
        (blob_of([(1000, 6, 0, 1)], b"abc\0") + b"x", "trailing bytes"),
    ],
)
def test_malformed_header_frames_are_refused(blob: bytes, message: str) -> None:
    with pytest.raises(_rpm_header.HeaderError, match=message):
        _rpm_header.Header(blob)


@pytest.mark.parametrize(
    ("entries", "data", "read", "message"),
    [
        ([(1000, 6, 9, 1)], b"abc\0", "strings", "offset 9 outside"),
        ([(1000, 6, 0, 1)], b"abcd", "strings", "past the end"),
        ([(1000, 6, 0, 2)], b"a\0b\0", "strings", "STRING with count 2"),
        ([(1000, 8, 0, 0xFFFFFFFF)], b"a\0b\0", "strings", "cannot fit"),
        ([(1000, 4, 0, 1)], b"abcd", "strings", "where a string"),
        ([(1037, 4, 0, 2)], b"abcd", "ints", "overrun"),
        ([(1037, 6, 0, 1)], b"ab\0", "ints", "where an integer"),
        ([(1037, 4, 0, 0)], b"abcd", "ints", "zero count"),
    ],
)
def test_hostile_index_entries_are_refused(
    entries: list[tuple[int, int, int, int]], data: bytes, read: str, message: str
) -> None:
    h = _rpm_header.Header(blob_of(entries, data))
    tag = entries[0][0]
    with pytest.raises(_rpm_header.HeaderError, match=message):
        getattr(h, read)(tag)


def test_dir_index_outside_the_dir_names_is_refused() -> None:
    data = struct.pack(">I", 5) + b"x\0" + b"/d/\0"
    entries = [(1116, 4, 0, 1), (1117, 8, 4, 1), (1118, 8, 6, 1)]
    with pytest.raises(_rpm_header.HeaderError, match="dir index outside"):
        _rpm_header.Header(blob_of(entries, data)).file_names()


def test_later_index_entry_overrides_an_earlier_one() -> None:
    h = _rpm_header.Header(blob_of([(1000, 6, 0, 1), (1000, 6, 4, 1)], b"old\0new\0"))
    assert h.first_string(1000) == "new"


# -- requires and version ordering --------------------------------------------------------------
def test_package_requires_flattens_rich_dependencies() -> None:
    got = package_requires(
        [
            "(python3dist(foo) >= 1.0 with python3dist(foo) < 2)",
            "((a or b) and (c if d else e))",
            "(f >= 1:2.0-3)",
            "rpmlib(RichDependencies)",
            "libz.so.1",
            "libm.so.6(GLIBC_2.2.5)(64bit)",
            "libsolv-tools",
            "/usr/bin/python3",
        ]
    )
    assert got == ("a", "b", "c", "d", "e", "f", "libsolv-tools")


VERSION_ORDER = [
    ("1.0~rc1-1", "1.0-1", -1),
    ("1.0^post1-1", "1.0-1", 1),
    ("1.0^post1-1", "1.0.1-1", -1),
    ("1.0~rc1-1", "1.0~rc2-1", -1),
    ("1.0~~-1", "1.0~-1", -1),
    ("1.0a-1", "1.0-1", 1),
    ("2:1.0-1", "1:9.9-1", 1),
    ("1:1.0-1", "1.0-1", 1),
    ("0:1.0-1", "1.0-1", 0),
    ("1.01-1", "1.1-1", 0),
    ("1.0-1", "1.0-1.fc39", -1),
    ("1.0-1", "1.0", 1),
    ("1.0", "1.0", 0),
    ("1.10-1", "1.9-1", 1),
    ("1.0.a-1", "1.0.1-1", -1),
    ("1.0_1-1", "1.0.1-1", 0),
    ("2.0-1", "10-1", -1),
    ("1.0-2.el9", "1.0-10.el9", -1),
    ("1.0-1.el9_2", "1.0-1.el9", 1),
    ("a-1", "b-1", -1),
    ("1.0-1", "1.0-1^x", -1),
    ("000-1", "0-1", 0),
]


@pytest.mark.parametrize(("a", "b", "expected"), VERSION_ORDER)
def test_pure_python_ordering_is_rpms(a: str, b: str, expected: int) -> None:
    assert compare_versions(a, b, use_bindings=False) == expected
    assert compare_versions(b, a, use_bindings=False) == -expected


@needs_bindings
@pytest.mark.parametrize(("a", "b", "expected"), VERSION_ORDER)
def test_bindings_ordering_agrees_with_pure_python(a: str, b: str, expected: int) -> None:
    assert compare_versions(a, b, use_bindings=True) == expected
    assert compare_versions(b, a, use_bindings=True) == -expected


@needs_bindings
def test_rpmvercmp_agrees_with_rpm_on_random_strings() -> None:
    assert rpm_bindings is not None
    rng = random.Random(3)
    alphabet = "0012a9bz.~^_-+"
    for _ in range(3000):
        a = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))).replace("-", "")
        b = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))).replace("-", "")
        try:
            expected = rpm_bindings.labelCompare(("0", a, "1"), ("0", b, "1"))
        except ValueError:
            continue  # rpm refuses the string (e.g. empty): nothing to agree with
        assert rpmvercmp(a, b) == expected, (a, b)


def test_package_delta_between_rpm_roots_names_the_upgrade(rpms: Fixtures) -> None:
    from imgdiff.pipeline import package_diff

    delta, pdelta = package_diff(str(rpms.old.path), str(rpms.new.path), use_cache=False)
    rpm_changes = {c.name: c for c in pdelta.changes if c.manager == "rpm"}
    assert set(rpm_changes) == {"alpha"}  # beta is the same package in both roots
    alpha = rpm_changes["alpha"]
    assert (alpha.change, alpha.old_version, alpha.new_version) == ("upgraded", "1.0-1", "1.1-1")
    assert alpha.paths == ()  # 1.1 ships the same bytes as 1.0
    by_path = {c.path: c for c in delta.changes}
    assert by_path["/usr/lib/sysimage/rpm/rpmdb.sqlite"].packages == ()
    assert "/usr/lib/sysimage/rpm/rpmdb.sqlite" in pdelta.unowned


def test_an_arch_change_is_an_upgrade_as_rpm_makes_it(rpms: Fixtures) -> None:
    """rpm -U replaces arc-1.0-1.x86_64 by arc-1.1-1.noarch: one package, upgraded (it was
    a removal and an addition)."""
    from imgdiff.pipeline import package_diff

    files = (("/usr/share/arc/data", "arc\\n", ""),)
    before = build(Spec("arc", "1.0", files=files, arch="x86_64"), rpms.tmp / "arc")
    after = build(Spec("arc", "1.1", files=files), rpms.tmp / "arc")
    old, new = rpms.tmp / "arc-old", rpms.tmp / "arc-new"
    install(old, "/var/lib/rpm", [before])
    install(new, "/var/lib/rpm", [after])
    query = subprocess.run(
        ["rpm", "--root", str(new), "--dbpath", "/var/lib/rpm", "-q", "arc"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert query == "arc-1.1-1.noarch"
    _, pdelta = package_diff(str(old), str(new), use_cache=False)
    (change,) = [c for c in pdelta.changes if c.manager == "rpm"]
    assert (change.name, change.change, change.old_version, change.new_version) == (
        "arc", "upgraded", "1.0-1", "1.1-1",
    )  # fmt: skip


def test_an_unreadable_rpm_database_costs_diff_its_owners_not_its_answer(tmp_path: Path) -> None:
    trees = []
    for name, conf in (("old", "1\n"), ("new", "2\n")):
        trees.append(
            write_tree(
                tmp_path / name,
                {"var/lib/rpm/rpmdb.sqlite": "garbage\n", "etc/x": conf},
            )
        )
    delta = imgdiff.diff(str(trees[0]), str(trees[1]), use_cache=False, owners=True)
    assert [(c.path, c.packages) for c in delta.changes] == [("/etc/x", ())]
    assert [w.path for w in delta.warnings] == ["/var/lib/rpm/rpmdb.sqlite"] * 2
    assert "owners it names are not known" in delta.warnings[0].message
    with pytest.raises(BadInput, match=r"rpmdb\.sqlite"):
        imgdiff.package_diff(str(trees[0]), str(trees[1]), use_cache=False)

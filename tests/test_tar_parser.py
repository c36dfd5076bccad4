"""The tar parser's parts on their own (header fields, PAX records, sparse maps) and its bounds."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from imgdiff import BadInput, LimitExceeded, Limits, Manifest
from imgdiff.image import _tarext, _tarheader
from imgdiff.image._tarheader import BLOCK

from .conftest import crafted_tar, member


def _write(tmp_path: Path, data: bytes, name: str = "t.tar") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _header(**fields: object) -> bytes:
    """One ustar header block written by tarfile, with fields patched and the checksum redone."""
    info = tarfile.TarInfo(str(fields.pop("name", "f")))
    for key, value in fields.items():
        setattr(info, key, value)
    return info.tobuf(tarfile.USTAR_FORMAT)[:BLOCK]


def _rechecksum(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


# -- header fields ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (b"0000644\0", 0o644),
        (b"   644 \0", 0o644),  # leading spaces, as some old tars pad
        (b"\0\0\0\0\0\0\0\0", 0),
        (b"\x80\0\0\0\0\0\x01\x00", 256),  # GNU base-256, positive
        (b"\xff" * 7 + b"\xfe", -2),  # GNU base-256, two's complement negative
    ],
)
def test_numeric_fields_read_octal_and_base256(field: bytes, expected: int) -> None:
    assert _tarheader.number(field, "a.tar", "mtime", "f", signed=True) == expected


@pytest.mark.parametrize("field", [b"00_644\0", b"+644\0\0\0", b"-1\0\0\0\0\0\0", b"12x\0"])
def test_numeric_field_junk_names_the_field(field: bytes) -> None:
    with pytest.raises(BadInput, match="bad uid field"):
        _tarheader.number(field, "a.tar", "uid", "f")


def test_negative_base256_is_refused_where_only_mtime_may_be_negative() -> None:
    with pytest.raises(BadInput, match="negative size"):
        _tarheader.number(b"\xff" * 12, "a.tar", "size", "f")


def test_checksum_accepts_signed_sums_and_rejects_a_flipped_byte() -> None:
    block = bytearray(_header(name="caf\u00e9", uname="\u00e9"))
    assert _tarheader.checksum_ok(bytes(block))
    unsigned = sum(block[:148]) + 256 + sum(block[156:])
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b > 127)
    assert signed != unsigned  # the name's UTF-8 bytes are over 127
    block[148:156] = b"%06o\0 " % signed
    assert _tarheader.checksum_ok(bytes(block))
    block[0] ^= 1
    assert not _tarheader.checksum_ok(bytes(block))


def test_bad_uid_in_a_ustar_header_is_named_in_the_cli_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from imgdiff.cli import main

    block = bytearray(_header(name="etc/line\nbreak", size=0))
    block[108:116] = b"12z4567\0"
    path = _write(tmp_path, _rechecksum(block) + bytes(2 * BLOCK))
    assert main(["diff", path, path]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # the newline in the member name is escaped
    assert "bad uid field" in err
    assert "line\\x0abreak" in err


# -- PAX records ------------------------------------------------------------------------
def _record(text: str) -> bytes:
    """One PAX record, its length prefix counting itself."""
    body = f" {text}\n".encode()
    size = len(body) + len(str(len(body)))
    size += len(str(size)) - len(str(len(body)))
    return str(size).encode() + body


def test_pax_records_keep_order_and_repeats() -> None:
    data = b"".join(
        _record(t) for t in ("GNU.sparse.offset=0", "GNU.sparse.numbytes=5", "GNU.sparse.offset=9")
    )
    keys = [k for k, _ in _tarext.pax_records(data, "a.tar", "f")]
    assert keys == ["GNU.sparse.offset", "GNU.sparse.numbytes", "GNU.sparse.offset"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"99 path=x\n", "malformed PAX record"),  # length runs past the data
        (b"x path=x\n", "malformed PAX record length"),
        (b"1" * 30 + b" path=x\n", "malformed PAX header"),  # no length within 24 bytes
        (b"12 pathx\nabc", "malformed PAX record"),
        (b"8 pathx\n", "without '='"),
    ],
)
def test_malformed_pax_records_are_bad_input(data: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        _tarext.pax_records(data, "a.tar", "f")


@pytest.mark.parametrize(
    ("pax", "message"),
    [
        ({"uid": "-1"}, "bad uid"),
        ({"gid": str(1 << 32)}, "gid 4294967296 out of range"),
        ({"mtime": "12.x"}, "bad mtime"),
        # GNU tar: "Extended header mtime=... is out of range" of a 64-bit time_t
        ({"mtime": "100000000000000000000000"}, "mtime '1000.* is out of range"),
        ({"mtime": str(-(1 << 63) - 1)}, "mtime '-9223372036854775809' .*out of range"),
        ({"size": "1e3"}, "bad size"),
        ({"path": "etc/pass\0wd"}, "NUL"),
        ({"linkpath": "a\0b"}, "NUL"),
    ],
)
def test_pax_values_out_of_range_are_refused(
    tmp_path: Path, pax: dict[str, str], message: str
) -> None:
    info, data = member("f", b"x", pax_headers=pax)
    if "linkpath" in pax:
        info.type, info.size, data = tarfile.SYMTYPE, 0, None
    path = _write(tmp_path, crafted_tar([(info, data)], fmt=tarfile.PAX_FORMAT))
    with pytest.raises(BadInput, match=message):
        Manifest.read(path, use_cache=False)


def test_pax_mtime_before_1970_with_fraction() -> None:
    assert _tarext.pax_time(b"-1.5", "a.tar", "f") == -1_500_000_000


def test_pax_mtimes_at_the_ends_of_time_t_are_read() -> None:
    for seconds in ((1 << 63) - 1, -(1 << 63)):
        assert _tarext.pax_time(str(seconds).encode(), "a.tar", "f") == seconds * 10**9


def test_xattrs_from_bsdtar_and_gnu_records_are_one_each() -> None:
    records = {
        "LIBARCHIVE.xattr.user.a%3Db": b"dmFsdWU",  # "value", base64 unpadded
        "SCHILY.xattr.user.a=b": b"value",
        "LIBARCHIVE.xattr.user.only": b"AAE",
        "RHT.security.selinux": b"system_u:object_r:etc_t:s0",
    }
    assert _tarext.xattrs_of(records, "a.tar", "f") == (
        ("security.selinux", b"system_u:object_r:etc_t:s0\0"),  # as setfilecon sets it
        ("user.a=b", b"value"),
        ("user.only", b"\x00\x01"),
    )


# -- sparse maps --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flat", "real", "stored", "message"),
    [
        ([0, 10, 5, 10], 100, 20, "overlap"),
        ([90, 20], 100, 20, "overrun"),
        ([0, 10], 100, 11, "covers 10 bytes but the archive stores 11"),
        ([0, 10, 20], 100, 10, "odd number"),
    ],
)
def test_malformed_sparse_maps_are_refused(
    flat: list[int], real: int, stored: int, message: str
) -> None:
    with pytest.raises(BadInput, match=message):
        _tarext.SparseMap.checked(flat, real, stored, "a.tar", "f")


def test_sparse_map_drops_empty_segments() -> None:
    smap = _tarext.SparseMap.checked([0, 0, 4096, 10, 8192, 0], 8192, 10, "a.tar", "f")
    assert smap.segments == [(4096, 10)]
    assert smap.real_size == 8192


def _sparse_archive(tmp_path: Path, logical: int, islands: list[int]) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "disk", "wb") as fh:
        fh.truncate(logical)
        for offset in islands:
            fh.seek(offset)
            fh.write(b"data" * 1024)
    archive = tmp_path / "sparse.tar"
    subprocess.run(
        ["tar", "--sparse", "--format=posix", "-cf", str(archive), "-C", str(src), "disk"],
        check=True,
    )
    return archive


def test_sparse_holes_past_the_floor_need_a_large_enough_archive(tmp_path: Path) -> None:
    archive = _sparse_archive(tmp_path, 256 << 20, [0, 200 << 20])
    tight = Limits(hole_floor=64 << 20, max_ratio=1000)
    with pytest.raises(LimitExceeded, match="sparse holes add up to more than") as info:
        Manifest.read(str(archive), use_cache=False, limits=tight)
    assert info.value.entry == "disk"  # the real name, not GNU's placeholder
    roomy = Limits(hole_floor=64 << 20, max_ratio=100_000)
    entry = Manifest.read(str(archive), use_cache=False, limits=roomy).entries["/disk"]
    assert entry.size == 256 << 20


# -- bounds -------------------------------------------------------------------------------
def test_many_long_names_in_a_small_compressed_archive_are_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(400):
            tf.addfile(tarfile.TarInfo(f"{i:06d}" + "n" * 8000))
    small = zstandard.ZstdCompressor(level=19).compress(buf.getvalue())
    path = _write(tmp_path, small, "names.tar.zst")
    # the stream's own expansion limit is raised so that the names limit is what trips
    limits = Limits(ratio_floor=1 << 20, max_names_ratio=64, max_ratio=1 << 30)
    with pytest.raises(LimitExceeded, match="path names add up to more than"):
        Manifest.read(path, use_cache=False, limits=limits)
    # the same names uncompressed are what the archive honestly holds
    plain = _write(tmp_path, buf.getvalue(), "names.tar")
    assert len(Manifest.read(plain, use_cache=False, limits=limits)) == 400


# -- container layers ---------------------------------------------------------------------
def test_a_layer_file_over_a_lower_directory_replaces_its_subtree(tmp_path: Path) -> None:
    from .test_oci import _handmade_layout

    lower = crafted_tar(
        [member("srv", type=tarfile.DIRTYPE), member("srv/a", b"1"), member("srv/b/c", b"2")]
    )
    upper = crafted_tar([member("srv", b"now a file")])
    m = Manifest.read(str(_handmade_layout(tmp_path, [lower, upper])), use_cache=False)
    assert sorted(m.entries) == ["/srv"]
    assert m.entries["/srv"].size == len(b"now a file")


def test_a_hard_link_to_a_dropped_member_is_dropped_too(tmp_path: Path) -> None:
    data = crafted_tar(
        [
            member("lnk", type=tarfile.SYMTYPE, linkname="elsewhere"),
            member("lnk/f", b"under a symlink"),
            member("again", type=tarfile.LNKTYPE, linkname="lnk/f"),
            member("kept", b"k"),
        ]
    )
    m = Manifest.read(_write(tmp_path, data), use_cache=False)
    assert sorted(m.entries) == ["/kept", "/lnk"]
    dropped = [w.path for w in m.warnings if "dropped" in w.message]
    assert dropped == ["/lnk/f", "/again"]

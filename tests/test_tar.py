"""Tar inputs: equality with the tree they came from, and hostile archives."""

from __future__ import annotations

import gzip
import itertools
import os
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest

import imgdiff
from imgdiff import BadInput, LimitExceeded, Limits, Manifest
from imgdiff import _digest as imgdiff_digest
from imgdiff.cli import main
from imgdiff.image import TarImage, open_image
from imgdiff.image._stream import decompressed
from imgdiff.image.base import HEAD_BYTES

from .conftest import COMPRESSORS, crafted_tar, gnu_tar, member, write_tree
from .tarzoo import compress

FILES: dict[str, str | bytes] = {
    "usr/bin/tool": b"\x7fELF" + b"\0" * 100,
    "usr/lib/python3.11/wsgiref/__init__.py": "# wsgiref\n",
    "etc/app.conf": "workers = 4\n",
    "usr/share/doc/big": os.urandom(300_000),
}


@pytest.fixture
def rich_tree(tmp_path: Path) -> Path:
    root = write_tree(tmp_path / "root", FILES)
    os.symlink("tool", root / "usr/bin/tool-link")
    os.link(root / "etc/app.conf", root / "etc/app.conf.hard")
    os.mkfifo(root / "etc/fifo")
    os.mknod(root / "etc/null", 0o666 | 0o020000, os.makedev(1, 3))
    os.setxattr(
        root / "usr/bin/tool",
        "security.capability",
        bytes.fromhex("0100000200200000000000000000000000000000"),
    )
    os.setxattr(root / "etc/app.conf", "user.comment", b"\xff\x00binary")
    os.chown(root / "etc/app.conf", 101, 102)
    os.chmod(root / "usr/bin/tool", 0o4755)
    raw = os.path.join(os.fsencode(root / "etc"), b"bad\xffname\n")
    with open(raw, "wb") as fh:
        fh.write(b"control and non-utf8")
    deep = root / "d"
    for i in range(40):
        deep = deep / f"level{i:02d}-{'x' * 20}"
    deep.mkdir(parents=True)
    (deep / "leaf").write_text("deep\n")  # a name longer than ustar's 255 bytes
    return root


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_tar_of_a_tree_equals_the_tree(rich_tree: Path, tmp_path: Path, suffix: str) -> None:
    archive = gnu_tar(rich_tree, tmp_path / f"img.tar{suffix}", COMPRESSORS[suffix])
    delta = imgdiff.diff(str(rich_tree), str(archive), use_cache=False)
    assert delta.changes == ()
    compressor = COMPRESSORS[suffix]
    assert delta.new.format == (f"tar+{compressor}" if compressor else "tar")
    assert delta.stats.unchanged == delta.new.entries


def test_format_is_detected_from_content_not_name(rich_tree: Path, tmp_path: Path) -> None:
    archive = gnu_tar(rich_tree, tmp_path / "img.zst", "zstd")
    misnamed = tmp_path / "image.txt"
    archive.rename(misnamed)
    image = open_image(str(misnamed))
    assert isinstance(image, TarImage)
    assert Manifest.read(image).info.format == "tar+zstd"


def test_pax_archive_with_long_names_and_xattrs(rich_tree: Path, tmp_path: Path) -> None:
    archive = tmp_path / "pax.tar"
    subprocess.run(
        [
            "tar",
            "--format=pax",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-C",
            str(rich_tree),
            "-cf",
            str(archive),
            ".",
        ],
        check=True,
    )
    assert imgdiff.diff(str(rich_tree), str(archive), use_cache=False).changes == ()


def _write(tmp_path: Path, data: bytes, name: str = "bad.tar") -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def _entries(path: str, limits: Limits | None = None) -> dict[str, imgdiff.Entry]:
    return dict(Manifest.read(path, use_cache=False, limits=limits).entries)


def test_dotdot_member_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, crafted_tar([member("etc/../../evil", b"x")]))
    with pytest.raises(BadInput, match=r"escapes the image.*|\.\."):
        _entries(path)


def test_absolute_member_is_read_inside_with_warning(tmp_path: Path) -> None:
    path = _write(tmp_path, crafted_tar([member("/etc/passwd", b"root:x:0:0\n")]))
    m = Manifest.read(path, use_cache=False)
    assert sorted(m.entries) == ["/etc", "/etc/passwd"]
    assert m.entries["/etc"].implicit  # implied by the member, created as extraction does
    assert any("absolute member name" in w.message for w in m.warnings)


def test_hardlink_to_missing_or_outside_target_is_refused(tmp_path: Path) -> None:
    missing = _write(
        tmp_path, crafted_tar([member("a", type=tarfile.LNKTYPE, linkname="nothere")]), "m.tar"
    )
    with pytest.raises(BadInput, match="hard link to missing"):
        _entries(missing)
    outside = _write(
        tmp_path,
        crafted_tar([member("a", type=tarfile.LNKTYPE, linkname="../../etc/passwd")]),
        "o.tar",
    )
    with pytest.raises(BadInput, match="escapes"):
        _entries(outside)


def test_symlink_chain_escape_is_recorded_and_members_under_it_dropped(tmp_path: Path) -> None:
    # the CVE-2025-4517 shape: links that resolve outside once followed; imgdiff never follows
    data = crafted_tar(
        [
            member("a", type=tarfile.SYMTYPE, linkname="."),
            member("b", type=tarfile.SYMTYPE, linkname="a/a/a/../../../../../.."),
            member("b/etc/owned", b"x"),
        ]
    )
    m = Manifest.read(_write(tmp_path, data), use_cache=False)
    assert m.entries["/b"].target == "a/a/a/../../../../../.."
    # bsdtar refuses to write through a symlink (GNU tar follows relative in-tree ones):
    # imgdiff never resolves through one, so the member is dropped with a warning
    assert "/b/etc/owned" not in m.entries
    assert [w.path for w in m.warnings if "dropped" in w.message] == ["/b/etc/owned"]
    assert not Path("/etc/owned").exists()


def test_truncated_archive_is_bad_input(rich_tree: Path, tmp_path: Path) -> None:
    archive = gnu_tar(rich_tree, tmp_path / "img.tar")
    data = archive.read_bytes()
    for cut in (100, 512 * 3 + 7, len(data) // 2):
        with pytest.raises(BadInput, match=r"truncated|partial|not a tar|corrupt"):
            _entries(_write(tmp_path, data[:cut], f"cut{cut}.tar"))


def test_corrupt_gzip_crc_trailing_garbage_and_flipped_byte(
    rich_tree: Path, tmp_path: Path
) -> None:
    good = gnu_tar(rich_tree, tmp_path / "img.tar.gz", "gzip").read_bytes()
    bad_crc = good[:-8] + bytes([good[-8] ^ 0xFF]) + good[-7:]
    with pytest.raises(BadInput, match="corrupt gzip"):
        _entries(_write(tmp_path, bad_crc, "crc.tgz"))
    with pytest.raises(BadInput, match="trailing garbage"):
        _entries(_write(tmp_path, good + b"garbage!", "trail.tgz"))
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x55
    with pytest.raises(BadInput):
        _entries(_write(tmp_path, bytes(flipped), "flip.tgz"))
    with pytest.raises(BadInput, match="truncated gzip"):
        _entries(_write(tmp_path, good[: len(good) - 20], "short.tgz"))


def test_multi_member_gzip_is_read_whole(rich_tree: Path, tmp_path: Path) -> None:
    plain = gnu_tar(rich_tree, tmp_path / "img.tar").read_bytes()
    half = len(plain) // 2
    two = gzip.compress(plain[:half]) + gzip.compress(plain[half:])
    delta = imgdiff.diff(str(rich_tree), _write(tmp_path, two, "two.tgz"), use_cache=False)
    assert delta.changes == ()


@pytest.mark.parametrize("tool", ["gzip", "bzip2", "xz", "zstd"])
def test_concatenated_members_read_whole_when_the_last_starts_near_the_end(
    rich_tree: Path, tmp_path: Path, tool: str
) -> None:
    # `tool -c part >> img` for a small last part: its member begins inside the last
    # piece of input the reader takes, right where the one before ends
    plain = gnu_tar(rich_tree, tmp_path / "img.tar").read_bytes()
    cut = len(plain) - 5000
    parts = []
    for i, piece in enumerate((plain[:cut], plain[cut:])):
        part = compress(Path(_write(tmp_path, piece, f"part{i}")), tool)
        parts.append(part.read_bytes())
    joined = _write(tmp_path, b"".join(parts), f"joined.tar.{tool}")
    subprocess.run([tool, "-t", joined], check=True)  # the tool reads both members
    assert imgdiff.diff(str(rich_tree), joined, use_cache=False).changes == ()
    with pytest.raises(BadInput, match=f"trailing garbage after {tool} data"):
        _entries(_write(tmp_path, b"".join(parts) + b"garbage!", f"trail.tar.{tool}"))


def test_pzstd_output_with_skippable_frames_reads_as_the_archive(
    rich_tree: Path, tmp_path: Path
) -> None:
    # pzstd writes a skippable frame (magic 0x184D2A50) before each frame it compresses
    archive = gnu_tar(rich_tree, tmp_path / "img.tar")
    packed = tmp_path / "img.tar.zst"
    subprocess.run(["pzstd", "-q", "-p", "2", str(archive), "-o", str(packed)], check=True)
    assert packed.read_bytes()[:4] == b"\x50\x2a\x4d\x18"
    assert imgdiff.diff(str(rich_tree), str(packed), use_cache=False).changes == ()
    skippable = b"\x5f\x2a\x4d\x18" + (3).to_bytes(4, "little") + b"abc"
    tail = _write(tmp_path, packed.read_bytes() + skippable, "tail.tar.zst")
    assert imgdiff.diff(str(rich_tree), tail, use_cache=False).changes == ()
    with pytest.raises(BadInput, match="truncated zstd"):  # a skippable frame cut short
        _entries(_write(tmp_path, packed.read_bytes() + skippable[:-1], "cut.tar.zst"))


def test_bad_zstd_data_is_bad_input(rich_tree: Path, tmp_path: Path) -> None:
    good = gnu_tar(rich_tree, tmp_path / "img.tar.zst", "zstd").read_bytes()
    with pytest.raises(BadInput, match=r"truncated zstd|corrupt zstd"):
        _entries(_write(tmp_path, good[:-30], "short.tzst"))
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    with pytest.raises(BadInput):
        _entries(_write(tmp_path, bytes(flipped), "flip.tzst"))


def test_negative_base256_size_is_refused_not_looped(tmp_path: Path) -> None:
    info, _ = member("x", b"")
    block = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    block[124:136] = b"\xff" * 11 + b"\x00"  # base-256 -512 style: negative
    block[148:156] = b" " * 8
    chk = sum(block[:512])
    block[148:156] = f"{chk:06o}\0 ".encode()
    with pytest.raises(BadInput, match="negative size"):
        _entries(_write(tmp_path, bytes(block) + b"\0" * 1024))


def test_absurd_member_size_is_refused(tmp_path: Path) -> None:
    info, _ = member("x", b"")
    info.size = 1 << 50
    data = info.tobuf(tarfile.GNU_FORMAT) + b"\0" * 1024
    with pytest.raises(LimitExceeded, match="claims"):
        _entries(_write(tmp_path, data))


def test_decompression_bomb_stops_at_the_ratio_limit(tmp_path: Path) -> None:
    zeros = zlib.compressobj(9, zlib.DEFLATED, 31)
    info, _ = member("bomb", b"")
    info.size = 200 << 20
    parts = [zeros.compress(info.tobuf(tarfile.GNU_FORMAT))]
    chunk = b"\0" * (1 << 20)
    parts += [zeros.compress(chunk) for _ in range(200)]
    parts.append(zeros.flush())
    path = _write(tmp_path, b"".join(parts), "bomb.tgz")
    with pytest.raises(LimitExceeded, match="decompression bomb"):
        _entries(path, Limits(ratio_floor=8 << 20, max_ratio=100))


def test_very_deep_path_is_read_without_recursion_error(tmp_path: Path) -> None:
    name = "/".join(["d"] * 1200) + "/leaf"
    entries = _entries(_write(tmp_path, crafted_tar([member(name, b"x")], fmt=tarfile.PAX_FORMAT)))
    assert "/" + name in entries
    with pytest.raises(LimitExceeded, match="deeper"):
        _entries(
            _write(tmp_path, crafted_tar([member(name, b"x")], fmt=tarfile.PAX_FORMAT), "d2.tar"),
            Limits(max_depth=100),
        )


def test_bad_input_exits_3_with_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _write(tmp_path, b"this is not an image at all\n" * 40, "junk.bin")
    good = tmp_path / "dir"
    good.mkdir()
    assert main(["diff", str(good), bad]) == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "junk.bin" in err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["diff", "only-one"])
    assert exc.value.code == 2


def test_corrupt_header_checksum_mid_archive(rich_tree: Path, tmp_path: Path) -> None:
    data = bytearray(gnu_tar(rich_tree, tmp_path / "img.tar").read_bytes())
    at = data.find(b"./etc/app.conf\0")
    assert at > 0
    assert at % 512 == 0  # the name field starts the header block
    data[at + 2] ^= 0x20  # "./Etc/app.conf": the stored checksum no longer matches
    with pytest.raises(BadInput, match=f"corrupt tar header at byte {at}"):
        _entries(_write(tmp_path, bytes(data), "hdr.tar"))


def _elfs_near_boundaries(path: Path, step: int, fill: str) -> bytes:
    """A tar of ten copies of /usr/bin/true, the data of the j-th starting 512*j bytes
    before the (j+1)-th multiple of `step`, each after a pad of `fill` ("x" or random)."""
    elf = Path("/usr/bin/true").read_bytes()
    members = []
    at = 0
    for j in range(10):
        pad = (j + 1) * step - 512 * j - at - 1024  # two headers before the ELF's data
        members.append(member(f"pad{j}", b"x" * pad if fill == "x" else os.urandom(pad)))
        members.append(member(f"elf{j}", elf))
        at += 1024 + pad + len(elf) + (-len(elf) % 512)
    path.write_bytes(crafted_tar(members))
    return elf


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_heads_are_whole_wherever_decompressed_pieces_end(tmp_path: Path, suffix: str) -> None:
    # Compressible pads put the decompressors' piece ends on 1 MiB multiples, random ones
    # on zstd's 128 KiB blocks and elsewhere for the others: ELF data starts 0..4.5 KiB
    # before them. A head cut at a piece's end made ELF files "elf-unparseable".
    straddled = 0
    for step, fill in ((1 << 20, "x"), (1 << 17, "random")):
        plain = tmp_path / f"{fill}.tar"
        elf = _elfs_near_boundaries(plain, step, fill)
        tool = COMPRESSORS[suffix]
        archive = compress(plain, tool) if tool else plain
        with open(archive, "rb") as fh:  # where the pieces end, to know the sweep hits
            ends = list(itertools.accumulate(len(p) for p in decompressed(fh, tool)))
        read = TarImage(str(archive)).read()
        entries = {e.path: e for e in read.all_entries()}
        for j in range(10):
            path = f"/elf{j}"
            assert read.heads[path] == elf[:HEAD_BYTES], path
            start = (j + 1) * step - 512 * j
            straddled += any(start < end < start + HEAD_BYTES for end in ends)
            assert entries[path].digest == imgdiff_digest.of_bytes(elf)
        archive.unlink()
    assert straddled, "no head crossed the end of a decompressed piece: the sweep missed"


def test_sparse_head_includes_the_hole_after_a_short_first_segment(tmp_path: Path) -> None:
    # GNU tar's raw hole detection maps 512-byte zero blocks of a file with holes: the
    # first data segment is one block, and the rest of the head is hole
    root = tmp_path / "root"
    root.mkdir()
    script = b"#!/bin/sh\necho sparse\n".ljust(512, b"#")
    with open(root / "run", "wb") as fh:
        fh.write(script)
        fh.seek(1 << 20)
        fh.write(b"tail\n")
    archive = tmp_path / "sparse.tar"
    subprocess.run(
        ["tar", "--sparse", "--hole-detection=raw", "-C", str(root), "-cf", str(archive), "."],
        check=True,
    )
    read = TarImage(str(archive)).read()
    assert read.heads["/run"] == script + bytes(HEAD_BYTES - len(script))
    assert imgdiff.diff(str(root), str(archive), use_cache=False).changes == ()

"""Loading saved manifests: untrusted input, checked field by field and bounded in size.

Every malformed file is made from a real manifest (saved from a real tree), decompressed,
changed in one place and compressed again.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import zstandard

from imgdiff import Manifest
from imgdiff.cli import main
from imgdiff.errors import BadInput, LimitExceeded
from imgdiff.image.base import Limits
from imgdiff.model import Entry

from .conftest import write_tree

APP = "/etc/app.conf"
TOOL = "/usr/bin/tool"
LINK = "/usr/bin/link"
HARD = "/usr/lib/b"
ODD = "/etc/caf\udce9"  # a name that is not UTF-8 (b"caf\xe9"), as os.fsdecode gives it

Doc = dict[str, Any]
Mutation = Callable[[Doc], None]


@attrs.frozen
class Saved:
    tree: Path
    file: Path
    manifest: Manifest  # as read from the tree, every digest computed
    doc: Doc  # the saved JSON document


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Saved:
    base = tmp_path_factory.mktemp("manifest")
    tree = write_tree(
        base / "tree",
        {
            "etc/app.conf": "workers = 4\n",
            ODD[1:]: "odd name\n",
            "usr/bin/tool": Path("/bin/true").read_bytes(),  # ELF: its head is saved
            "usr/lib/a": "shared\n",
        },
    )
    os.link(tree / "usr/lib/a", tree / "usr/lib/b")
    (tree / "usr/bin/link").symlink_to("tool")
    (tree / "var/empty").mkdir(parents=True)
    os.mkfifo(tree / "etc/fifo")
    os.utime(tree / "etc/fifo", ns=(0, -(10**18)), follow_symlinks=False)  # before 1970
    os.setxattr(tree / "etc/app.conf", "user.note", b"\0hi")
    manifest = Manifest.read(str(tree), use_cache=False)
    file = base / "tree.manifest"
    manifest.save(file)
    doc = _decode(file)
    assert TOOL in doc["heads"]
    assert _row(doc, APP)[10] == [["user.note", "006869"]]
    return Saved(tree, file, manifest, doc)


def _decode(path: Path) -> Doc:
    with open(path, "rb") as fh:
        doc: Doc = json.loads(zstandard.ZstdDecompressor().stream_reader(fh).read())
    return doc


def _encode(doc: Doc, path: Path) -> Path:
    path.write_bytes(
        zstandard.ZstdCompressor().compress(json.dumps(doc, separators=(",", ":")).encode())
    )
    return path


def _row(doc: Doc, path: str) -> list[Any]:
    (row,) = (r for r in doc["entries"] if r[0] == path)
    assert isinstance(row, list)
    return row


def col(i: int, value: Any, path: str = APP) -> Mutation:
    def mutate(doc: Doc) -> None:
        _row(doc, path)[i] = value

    return mutate


def setkey(value: Any, *keys: str) -> Mutation:
    def mutate(doc: Doc) -> None:
        for key in keys[:-1]:
            doc = doc[key]
        doc[keys[-1]] = value

    return mutate


def delkey(*keys: str) -> Mutation:
    def mutate(doc: Doc) -> None:
        for key in keys[:-1]:
            doc = doc[key]
        del doc[keys[-1]]

    return mutate


def extend(*values: Any) -> Mutation:
    return lambda doc: _row(doc, APP).extend(values)


def shorten(doc: Doc) -> None:
    _row(doc, APP).pop()


def row_not_list(doc: Doc) -> None:
    doc["entries"][0] = "/etc/app.conf"


APP_ROW = r"entries\[\d+\] \(/etc/app\.conf\): "
RANGE = "is out of range"
DIGEST = r"digest is neither null nor blake3:<64 hex digits>"
XPAIR = r"xattrs\[0\] is not a \[name, hex value\] pair"
XHEX = r"xattrs\[0\] value is not a hex string"
WPAIR = r"warnings\[0\] is not a \[path, message\] pair"

MALFORMED: list[tuple[str, Mutation, str]] = [
    # entry rows, column by column
    ("path-number", col(0, 5), r"entries\[\d+\]: path is an integer, not a string"),
    ("path-relative", col(0, "etc/x"), r"entries\[\d+\] \(etc/x\): path is not absolute"),
    ("path-nul", col(0, "/etc/a\0b"), r"\(/etc/a\\x00b\): path holds a NUL"),
    ("path-dotdot", col(0, "/a/../../x"), r"\(/a/\.\./\.\./x\): path is not a plain absolute"),
    ("path-dot", col(0, "/etc/./x"), "path is not a plain absolute path"),
    ("path-empty-part", col(0, "/etc//x"), "path is not a plain absolute path"),
    ("path-trailing-slash", col(0, "/etc/x/"), "path is not a plain absolute path"),
    ("path-root", col(0, "/"), "path is not a plain absolute path"),
    ("path-surrogate", col(0, "/etc/\ud800"), "path holds a lone surrogate"),
    ("path-duplicate", col(0, APP, path=TOOL), APP_ROW + "duplicate path"),
    ("type-unknown", col(1, "door"), APP_ROW + "type is not one of file, dir, symlink"),
    ("type-number", col(1, 1), APP_ROW + "type is not one of"),
    ("mode-negative", col(2, -1), APP_ROW + r"mode -1 is out of range \(0\.\.4095\)"),
    ("mode-type-bits", col(2, 0o100644), f"mode 33188 {RANGE}"),
    ("mode-bool", col(2, True), APP_ROW + "mode is a bool, not an integer"),
    ("mode-float", col(2, 420.0), "mode is a number, not an integer"),
    ("mode-string", col(2, "0644"), "mode is a string, not an integer"),
    ("uid-2**32", col(3, 2**32), f"uid 4294967296 {RANGE}"),
    ("uid-negative", col(3, -1), f"uid -1 {RANGE}"),
    ("gid-bool", col(4, False), "gid is a bool, not an integer"),
    ("gid-null", col(4, None), "gid is null, not an integer"),
    ("size-negative", col(5, -1), f"size -1 {RANGE}"),
    ("size-2**63", col(5, 2**63), f"size 9223372036854775808 {RANGE}"),
    ("size-huge", col(5, 10**40), rf"size \(huge\) {RANGE}"),
    ("mtime-string", col(6, "1700000000"), "mtime is a string, not an integer"),
    ("mtime-bool", col(6, True), "mtime is a bool, not an integer"),
    ("mtime-float", col(6, 1.5), "mtime is a number, not an integer"),
    ("target-number", col(7, 7, path=LINK), "target is an integer, not a string"),
    ("target-list", col(7, ["tool"], path=LINK), "target is a list, not a string"),
    ("hardlink-list", col(8, [], path=HARD), "hardlink is a list, not a string"),
    ("hardlink-surrogate", col(8, "/usr/lib/\udbff", path=HARD), "hardlink holds a lone"),
    ("rdev-one-number", col(9, [1]), APP_ROW + r"rdev is neither null nor a \[major, minor\]"),
    ("rdev-three-numbers", col(9, [1, 2, 3]), r"rdev is neither null nor a \[major, minor\]"),
    ("rdev-object", col(9, {"major": 8}), r"rdev is neither null nor a \[major, minor\]"),
    ("rdev-number", col(9, 2049), r"rdev is neither null nor a \[major, minor\]"),
    ("rdev-negative", col(9, [8, -1]), r"rdev minor -1 is out of range \(>= 0\)"),
    ("rdev-string", col(9, ["8", 1]), "rdev major is a string, not an integer"),
    ("rdev-bool", col(9, [True, 1]), "rdev major is a bool, not an integer"),
    ("xattrs-object", col(10, {}), "xattrs is an object, not a list"),
    ("xattrs-null", col(10, None), "xattrs is null, not a list"),
    ("xattrs-single", col(10, [["user.a"]]), XPAIR),
    ("xattrs-triple", col(10, [["user.a", "00", "01"]]), XPAIR),
    ("xattrs-flat", col(10, ["user.a", "00"]), XPAIR),
    ("xattrs-name-number", col(10, [[1, "00"]]), r"xattrs\[0\] name is an integer"),
    ("xattrs-value-number", col(10, [["user.a", 0]]), XHEX),
    ("xattrs-not-hex", col(10, [["user.a", "zz"]]), XHEX),
    ("xattrs-odd-hex", col(10, [["user.a", "abc"]]), XHEX),
    ("xattrs-spaced-hex", col(10, [["user.a", "00 01"]]), XHEX),  # bytes.fromhex takes it
    ("digest-sha256", col(11, "sha256:" + "0" * 64), APP_ROW + DIGEST),
    ("digest-upper-case", col(11, "blake3:" + "A" * 64), DIGEST),
    ("digest-short", col(11, "blake3:abc"), DIGEST),
    ("digest-number", col(11, 5), DIGEST),
    ("digest-list", col(11, ["blake3:" + "0" * 64]), DIGEST),
    # whole rows
    ("row-11-columns", shorten, APP_ROW + r"a row of 11 columns \(12 or 13 expected\)"),
    ("row-14-columns", extend(False, 0), APP_ROW + r"a row of 14 columns \(12 or 13 expected\)"),
    ("row-13th-string", extend("yes"), r"implicit \(column 13\) is a string, not a bool"),
    ("row-13th-integer", extend(1), r"implicit \(column 13\) is an integer, not a bool"),
    ("row-13th-null", extend(None), r"implicit \(column 13\) is null, not a bool"),
    ("row-string", row_not_list, r"entries\[0\]: a row is a string, not a list"),
    # the document
    ("top-level-unknown-key", setkey(1, "extra"), "unknown top-level key 'extra'"),
    ("entries-object", setkey({}, "entries"), "top-level key 'entries' has a dict"),
    ("entries-missing", delkey("entries"), "top-level key 'entries' is missing"),
    ("info-missing", delkey("info"), "top-level key 'info' is missing"),
    ("info-list", setkey([], "info"), "top-level key 'info' has a list"),
    ("info-missing-key", delkey("info", "bytes"), "info key 'bytes' is missing"),
    ("info-unknown-key", setkey(1, "info", "x"), "unknown info key 'x'"),
    ("info-string-count", setkey("3", "info", "entries"), "info key 'entries' has a str"),
    ("info-bool", setkey(True, "info", "bytes"), "info key 'bytes' has a bool"),
    ("info-float", setkey(1.0, "info", "files"), "info key 'files' has a float"),
    ("info-negative", setkey(-1, "info", "files"), "info key 'files' is negative"),
    ("info-path-number", setkey(1, "info", "path"), "info key 'path' has a int"),
    ("info-format-null", setkey(None, "info", "format"), "info key 'format' has a NoneType"),
    ("warnings-object", setkey({}, "warnings"), "top-level key 'warnings' has a dict"),
    ("warnings-single", setkey([["/a"]], "warnings"), WPAIR),
    ("warnings-string", setkey(["/a"], "warnings"), WPAIR),
    ("warnings-message", setkey([["/a", 3]], "warnings"), r"message is an integer, not a str"),
    ("warnings-path", setkey([[None, "m"]], "warnings"), r"warnings\[0\] path is null"),
    ("heads-list", setkey([], "heads"), "top-level key 'heads' has a list"),
    ("heads-no-entry", setkey("AAAA", "heads", "/nope"), r"heads\[/nope\] names no entry"),
    ("heads-not-base64", setkey("!!!!", "heads", TOOL), rf"heads\[{TOOL}\] is not base64"),
    ("heads-unpadded", setkey("AAA", "heads", TOOL), rf"heads\[{TOOL}\] is not base64"),
    ("heads-non-ascii", setkey("é", "heads", TOOL), rf"heads\[{TOOL}\] is not base64"),
    ("heads-number", setkey(5, "heads", TOOL), rf"heads\[{TOOL}\] is an integer, not a string"),
    (
        "heads-too-long",
        setkey(base64.b64encode(bytes(1025)).decode(), "heads", TOOL),
        rf"heads\[{TOOL}\] holds more than 1024 bytes",
    ),
    ("identity-number", setkey(5, "identity"), "top-level key 'identity' has a int"),
    ("identity-null", setkey(None, "identity"), "top-level key 'identity' has a NoneType"),
    ("identity-other", setkey("blake3:xyz", "identity"), "identity is not a blake3 digest"),
]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [pytest.param(m, msg, id=name) for name, m, msg in MALFORMED],
)
def test_malformed_manifest_is_bad_input_naming_the_problem(
    saved: Saved,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mutate: Mutation,
    message: str,
) -> None:
    doc = copy.deepcopy(saved.doc)
    mutate(doc)
    bad = _encode(doc, tmp_path / "bad.manifest")
    with pytest.raises(BadInput, match=message) as exc:
        Manifest.load(bad)
    assert type(exc.value) is BadInput
    assert str(exc.value).startswith(f"{bad}: malformed manifest: ")
    # the command line: exit 3, one line naming the file and the problem
    assert main(["diff", "--no-cache", str(bad), str(saved.tree)]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"imgdiff: {bad}: malformed manifest: ")


NOT_A_MANIFEST: list[tuple[str, bytes, str]] = [
    ("other-schema", b'{"schema":"imgdiff.snapshot/1","entries":[]}', "not an imgdiff.manifest/1"),
    ("array", b'[{"schema":"imgdiff.manifest/1"}]', "not an imgdiff.manifest/1"),
    ("truncated-json", b'{"schema":"imgdiff.manifest/1","entries":[', "not a readable manifest"),
    ("not-utf-8", b'{"schema":"imgdiff.manifest/1","info":"\xff"}', "not a readable manifest"),
    (
        "deep-nesting",  # json raises RecursionError, not ValueError
        b'{"schema":"imgdiff.manifest/1","entries":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "not a readable manifest",
    ),
    ("big-integer", b'{"schema":"imgdiff.manifest/1","n":' + b"9" * 5000 + b"}", "not a readable"),
]


@pytest.mark.parametrize(
    ("raw", "message"), [pytest.param(raw, msg, id=name) for name, raw, msg in NOT_A_MANIFEST]
)
def test_undecodable_document_is_bad_input(tmp_path: Path, raw: bytes, message: str) -> None:
    bad = tmp_path / "bad.manifest"
    bad.write_bytes(zstandard.ZstdCompressor().compress(raw))
    with pytest.raises(BadInput, match=message):
        Manifest.load(bad)


def test_truncated_file_is_bad_input(saved: Saved, tmp_path: Path) -> None:
    bad = tmp_path / "cut.manifest"
    bad.write_bytes(saved.file.read_bytes()[:-100])
    with pytest.raises(BadInput, match="not a readable manifest"):
        Manifest.load(bad)


def test_saved_manifest_loads_identically(saved: Saved) -> None:
    loaded = Manifest.load(saved.file)
    assert loaded.entries == saved.manifest.entries
    assert loaded.entries[ODD].digest is not None
    assert loaded.entries["/etc/fifo"].mtime_ns == -(10**18)
    assert loaded.entries[APP].xattrs == (("user.note", b"\0hi"),)
    assert loaded.entries[HARD].hardlink == "/usr/lib/a"
    assert loaded.warnings == saved.manifest.warnings
    assert attrs.evolve(loaded.info, format="dir") == saved.manifest.info
    assert loaded.info.format == f"manifest({saved.manifest.info.format})"
    head = saved.manifest.head(TOOL)
    assert head is not None
    assert loaded.head(TOOL) == head[:1024]
    assert loaded.identity == saved.manifest.identity == saved.doc["identity"]


def test_the_streamed_file_holds_the_document(saved: Saved) -> None:
    """save writes a row at a time (the identity after the entries, hashed as they go):
    the same document `document` builds whole, and the identity identity_of gives."""
    from imgdiff.manifest import identity_of, saved_files

    whole = saved.manifest.document(files=saved_files())
    assert saved.doc == whole
    assert list(saved.doc) == [
        "schema",
        "info",
        "warnings",
        "entries",
        "identity",
        "heads",
        "files",
    ]
    assert saved.doc["identity"] == identity_of(whole["entries"])


ACCEPTED: list[tuple[str, Mutation, Callable[[Entry], bool]]] = [
    ("negative-mtime", col(6, -(2**70)), lambda e: e.mtime_ns == -(2**70)),
    ("far-future-mtime", col(6, 2**64), lambda e: e.mtime_ns == 2**64),
    ("rdev-pair", col(9, [8, 1]), lambda e: e.rdev == (8, 1)),
    ("xattrs-upper-hex", col(10, [["user.a", "FF"]]), lambda e: e.xattrs == (("user.a", b"\xff"),)),
    ("no-digest", col(11, None), lambda e: e.digest is None),
    ("13th-column-true", extend(True), lambda e: e.implicit is True),
    ("13th-column-false", extend(False), lambda e: e.implicit is False),
    ("no-heads", delkey("heads"), lambda e: True),  # written before heads existed
    ("no-warnings", delkey("warnings"), lambda e: True),
    ("no-identity", delkey("identity"), lambda e: True),
]


@pytest.mark.parametrize(
    ("mutate", "check"), [pytest.param(m, c, id=name) for name, m, c in ACCEPTED]
)
def test_unusual_but_valid_values_load(
    saved: Saved, tmp_path: Path, mutate: Mutation, check: Callable[[Entry], bool]
) -> None:
    doc = copy.deepcopy(saved.doc)
    mutate(doc)
    loaded = Manifest.load(_encode(doc, tmp_path / "ok.manifest"))
    assert check(loaded.entries[APP])
    assert len(loaded) == len(saved.manifest)


def test_too_long_path_is_limit_exceeded(
    saved: Saved, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = copy.deepcopy(saved.doc)
    _row(doc, APP)[0] = "/" + "a" * 16_384  # one byte past Limits().max_path_bytes
    bad = _encode(doc, tmp_path / "long.manifest")
    with pytest.raises(LimitExceeded, match=r"entries\[\d+\] \(/a+\.\.\.\): path is longer"):
        Manifest.load(bad)
    assert main(["diff", "--no-cache", str(bad), str(saved.tree)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{bad}: entries[" in err
    assert "path is longer than 16384 bytes" in err


def test_limits_bound_entries_and_path_bytes(saved: Saved) -> None:
    with pytest.raises(LimitExceeded, match="more than 3 entries"):
        Manifest.load(saved.file, Limits(max_entries=3))
    with pytest.raises(LimitExceeded, match=r"\(/etc/app\.conf\): path is longer than 12 bytes"):
        Manifest.load(saved.file, Limits(max_path_bytes=12))
    Manifest.load(saved.file, Limits(max_entries=len(saved.doc["entries"]), max_path_bytes=14))


def test_decompressed_size_is_bounded_by_the_file_size(saved: Saved) -> None:
    size = saved.file.stat().st_size
    raw = len(json.dumps(saved.doc, separators=(",", ":")))
    assert raw > 2 * size  # a real manifest: several times its compressed size
    with pytest.raises(LimitExceeded) as exc:
        Manifest.load(saved.file, Limits(manifest_ratio_floor=1000, max_manifest_ratio=2))
    assert str(exc.value) == (
        f"{saved.file}: manifest decompresses to more than {2 * size} bytes (the larger of "
        f"1000 bytes and 2 times its {size} compressed bytes: a likely decompression bomb)"
    )
    with pytest.raises(LimitExceeded, match=r"more than 1000 bytes \(the limit for any manifest"):
        Manifest.load(saved.file, Limits(max_manifest_bytes=1000))
    # exactly at the bound is fine: the floor, then the ratio
    Manifest.load(saved.file, Limits(manifest_ratio_floor=raw, max_manifest_ratio=1))
    Manifest.load(saved.file, Limits(manifest_ratio_floor=0, max_manifest_ratio=-(-raw // size)))


# peak RSS from /proc: getrusage's ru_maxrss survives exec, so a child would start from
# its parent's (pytest's) peak and hide its own growth
_MEASURE = """
import sys
from imgdiff.errors import LimitExceeded
from imgdiff.manifest import Manifest
def peak_kib():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
before = peak_kib()
try:
    Manifest.load(sys.argv[1])
except LimitExceeded as exc:
    print((peak_kib() - before) // 1024, exc)
"""


ROW = b'["/etc/x","file",420,0,0,0,0,null,null,null,[],null],'


@pytest.mark.parametrize("filler", [b" " * 4096, ROW * 64], ids=["whitespace", "rows"])
def test_decompression_bomb_is_refused_in_bounded_memory(tmp_path: Path, filler: bytes) -> None:
    bomb = tmp_path / "bomb.manifest"
    with open(bomb, "wb") as fh, zstandard.ZstdCompressor(level=1).stream_writer(fh) as out:
        out.write(b'{"schema":"imgdiff.manifest/1","entries":[')
        piece = filler * ((1 << 20) // len(filler))
        for _ in range(256):  # 256 MiB decompressed
            out.write(piece)
    assert bomb.stat().st_size < 256 << 10  # more than 1000x
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(bomb)], capture_output=True, text=True, check=True
    )
    grew_mib, message = done.stdout.split(" ", 1)
    # the 64 MiB floor and a piece more, not 256 MiB: reading stops at the bound
    assert int(grew_mib) < 100
    assert "manifest decompresses to more than 67108864 bytes" in message
    assert "a likely decompression bomb" in message


def test_bomb_through_the_command_line_exits_3(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.manifest"
    body = b'{"schema":"imgdiff.manifest/1","entries":[' + b" " * (65 << 20)
    bomb.write_bytes(zstandard.ZstdCompressor().compress(body))
    done = subprocess.run(
        [str(Path(sys.executable).with_name("imgdiff")), "diff", str(bomb), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"imgdiff: {bomb}: manifest decompresses to more than")


def test_uncompressed_json_is_not_a_manifest(tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    plain.write_bytes(b'{"schema":"imgdiff.manifest/1","entries":[]}')
    with pytest.raises(BadInput, match="not a readable manifest"):
        Manifest.load(plain)


KEPT = ("/var/lib/dpkg/status", "/etc/systemd/system/app.service")


def _pair_tree(root: Path, version: str) -> Path:
    many = {f"usr/share/doc/p{i:04d}/copyright": f"text {i}\n" for i in range(600)}
    tree = write_tree(
        root,
        {
            **many,
            "etc/app.conf": f"version = {version}\n",
            ODD[1:]: f"odd {version}\n",
            "usr/bin/tool": Path("/bin/true").read_bytes(),
            "var/lib/dpkg/status": f"Package: app\nStatus: install ok installed\nVersion: {version}\n",  # noqa: E501
            "etc/systemd/system/app.service": "[Service]\nExecStart=/usr/bin/tool\n",
        },
    )
    os.link(tree / "etc/app.conf", tree / "etc/app.hard")
    (tree / "usr/bin/link").symlink_to("tool")
    os.setxattr(tree / "etc/app.conf", "user.note", version.encode())
    os.mkfifo(tree / "etc/fifo")
    return tree


@pytest.fixture(scope="module")
def saved_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("pair")
    files = []
    for side, version in (("old", "1"), ("new", "2")):
        file = base / f"{side}.manifest"
        Manifest.read(str(_pair_tree(base / side, version)), use_cache=False).save(file)
        files.append(file)
    return files[0], files[1]


@pytest.mark.parametrize("workers", [1, 2])
def test_two_saved_manifests_read_as_a_pair_load_as_each_alone(
    saved_pair: tuple[Path, Path], workers: int
) -> None:
    pair = Manifest.read_pair(str(saved_pair[0]), str(saved_pair[1]), workers=workers)
    for got, file in zip(pair, saved_pair, strict=True):
        alone = Manifest.load(file)
        assert got.entries == alone.entries
        assert got.info == alone.info
        assert got.warnings == alone.warnings
        assert got.identity == alone.identity
        assert got.head(TOOL) == alone.head(TOOL) is not None
        assert got.read_files(KEPT) == alone.read_files(KEPT)
        assert set(got.read_files(KEPT)) == set(KEPT)
        assert got.workers == workers
    assert pair[0].read_files(["/var/lib/dpkg/status"]) != pair[1].read_files(
        ["/var/lib/dpkg/status"]
    )


@pytest.mark.parametrize("bad", [("old",), ("new",), ("old", "new")])
def test_a_bad_file_of_a_pair_is_named_as_when_read_one_after_the_other(
    saved_pair: tuple[Path, Path], tmp_path: Path, bad: tuple[str, ...]
) -> None:
    files = []
    for side, file in zip(("old", "new"), saved_pair, strict=True):
        data = file.read_bytes()
        target = tmp_path / f"{side}.manifest"
        target.write_bytes(data[:-100] if side in bad else data)
        files.append(str(target))
    with pytest.raises(BadInput, match="not a readable manifest") as err:
        Manifest.read_pair(files[0], files[1], workers=2)
    assert err.value.source == files[("old", "new").index(bad[0])]

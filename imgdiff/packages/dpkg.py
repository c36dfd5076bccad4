"""The dpkg database of an image: status, file lists, md5sums, conffiles, diversions.

Everything is read from inside the image (`/var/lib/dpkg`) through the manifest, never
from the host, and parsed, never executed. The status file is split into stanzas here
when it is in the plain form dpkg writes (`_plain_stanzas`), and by python-debian
otherwise (the text is decoded here first, because python-debian raises on bytes that
are not UTF-8); both give the same fields. The per-package `.list` and `.md5sums` files
are plain line formats read directly. Paths go through `PathResolver`, so the ~400
usr-merged paths of a Debian image (`/lib/...` listed, `/usr/lib/...` on disk) belong to
their package.
"""

from __future__ import annotations

import io
import posixpath
import re
from collections.abc import Collection, Iterable, Iterator
from typing import Any

from imgdiff.manifest import Manifest
from imgdiff.model import EntryType, ImageWarning
from imgdiff.packages.base import Package, PackageDB, PathResolver

MANAGER = "dpkg"
ADMINDIR = "/var/lib/dpkg"
STATUS = f"{ADMINDIR}/status"
INFO = f"{ADMINDIR}/info"
DIVERSIONS = f"{ADMINDIR}/diversions"
_SUFFIXES = (".list", ".md5sums", ".conffiles")
# states in which a package's files are on disk ("config-files": only its conffiles)
_WITH_FILES = {"installed", "half-configured", "unpacked", "half-installed",
               "triggers-awaited", "triggers-pending"}  # fmt: skip
_MAX_STANZAS = 200_000


def wants(path: str) -> bool:
    """The files a streaming reader should keep for `read_dpkg`."""
    if not path.startswith(ADMINDIR):
        return False
    return path in (STATUS, DIVERSIONS) or (
        path.startswith(INFO + "/") and path.endswith(_SUFFIXES)
    )


def _version(text: str) -> Any:
    """The python-debian `Version` of `text`, or None when it is not a Debian version."""
    from debian.debian_support import Version

    try:
        return Version(text)
    except ValueError:
        return None


def compare_versions(a: str, b: str) -> int:
    """Debian ordering (epochs, `~`, revisions): negative, zero or positive.

    Never raises: a version Debian's grammar refuses (a damaged database; `read_dpkg`
    warns of it) sorts below every valid one, and two such compare as plain strings."""
    va, vb = _version(a), _version(b)
    if va is None or vb is None:
        if va is not None or vb is not None:
            return 1 if va is not None else -1
        return (a > b) - (a < b)
    return -1 if va < vb else (1 if va > vb else 0)


def _decode_status(data: bytes, warnings: list[ImageWarning]) -> str:
    """UTF-8 line by line; a line that is not becomes Latin-1 (python-debian raises on
    undecodable bytes and re-encodes whatever it is given as UTF-8)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    out = []
    for n, line in enumerate(data.split(b"\n"), 1):
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(line.decode("latin-1"))
            warnings.append(ImageWarning(STATUS, f"line {n} is not UTF-8: read as Latin-1"))
    return "\n".join(out)


def _lines(data: bytes) -> list[str]:
    """The lines of a `.list`, `.md5sums` or `diversions` file: split at "\\n" only, as
    dpkg does (`splitlines` also splits at \\x0c, \\x1c, U+0085, U+2028..., which a
    file name may hold)."""
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def _depends(value: str) -> tuple[str, ...]:
    """Package names in a Depends/Pre-Depends field, alternatives flattened."""
    names = []
    for clause in value.split(","):
        for alt in clause.split("|"):
            name = alt.strip().split(" ", 1)[0].split("(", 1)[0].split(":", 1)[0]
            if name:
                names.append(name)
    return tuple(dict.fromkeys(names))


def _source(value: str, name: str) -> str:
    """The source package name of a `Source` field (`foo` or `foo (1.2-3)`, the version
    given when it differs from the binary's); absent, the source has the package's name."""
    return value.split("(", 1)[0].strip() or name


def _diversions(data: bytes | None) -> dict[str, tuple[str, str]]:
    """{diverted path: (where it went, diverting package or ':' for local)}."""
    out: dict[str, tuple[str, str]] = {}
    if not data:
        return out
    lines = _lines(data)
    for i in range(0, len(lines) - 2, 3):
        out[lines[i]] = (lines[i + 1], lines[i + 2])
    return out


_FIELD = re.compile(r"([!-9;-~]+):(.*)")  # a key of printable ASCII, its colon, the value
# whitespace other than space, tab and newline: where python-debian's byte-wise and
# str-wise tests of "blank" disagree, or where it splits lines differently
_ODD_SPACE = re.compile(r"[^\S \t\n]")

Stanza = dict[str, str]
"""One status stanza: field names lower-cased (they are case-insensitive), values as
python-debian gives them (a folded value keeps its newlines and leading blanks)."""


def _stanzas(text: str, warnings: list[ImageWarning], source: str = STATUS) -> Iterator[Stanza]:
    """The stanzas of a status file, in order, as python-debian reads them; where it
    raises (a folded line holding a character it takes for a line break: `\\r`, `\\x0c`,
    U+0085, U+2028), split as dpkg does instead (`_dpkg_stanzas`)."""
    plain = _plain_stanzas(text)
    if plain is not None:
        yield from plain
        return
    from debian import deb822  # the general parser costs 35 ms to import: only when needed

    try:
        paras = [
            {key.lower(): value for key, value in para.items()}
            for para in deb822.Deb822.iter_paragraphs(io.StringIO(text), use_apt_pkg=False)
        ]
    except ValueError:
        yield from _dpkg_stanzas(text, warnings, source)
        return
    yield from paras


def _fields(lines: list[str]) -> Stanza | None:
    """One stanza's `Key: value` lines and their folded continuations as fields, or None
    when a line is neither (or the stanza opens with a continuation)."""
    fields: dict[str, list[str]] = {}
    value: list[str] | None = None
    for line in lines:
        if line[0] in " \t":  # (lines are never empty here)
            if value is None:
                return None
            value.append(line)  # joined once below: `+=` on the value was quadratic
            continue
        m = _FIELD.fullmatch(line)
        if m is None:
            return None
        value = fields[m.group(1).lower()] = [m.group(2).strip()]
    return {key: "\n".join(parts) for key, parts in fields.items()}


def _runs(text: str) -> Iterator[list[str]]:
    """Runs of non-blank lines, split at "\\n" only (as dpkg reads the file)."""
    run: list[str] = []
    for line in text.split("\n"):
        if not line or line.isspace():
            if run:
                yield run
            run = []
        else:
            run.append(line)
    if run:
        yield run


def _plain_stanzas(text: str) -> list[Stanza] | None:
    """The stanzas of a status file in the plain form dpkg writes, or None for anything
    else (comments, PGP armour, odd whitespace, a line that is neither a field nor a
    folded continuation, a stanza opening with a continuation): python-debian reads
    those, with its own rules for each.

    On plain text the two agree: stanzas are runs of non-blank lines; `Key: value`
    sets a field (value stripped; a later duplicate wins); a line opening with a space
    or tab folds onto the field before it, after a newline.
    """
    if "\r" in text or _ODD_SPACE.search(text) is not None:
        return None
    out: list[Stanza] = []
    for run in _runs(text):
        if any(line.startswith(("#", "-----")) for line in run):
            return None
        fields = _fields(run)
        if fields is None:
            return None
        out.append(fields)
    return out


def _dpkg_stanzas(text: str, warnings: list[ImageWarning], source: str) -> Iterator[Stanza]:
    """The stanzas of a status file python-debian refuses, split at "\\n" only as dpkg
    does (a `\\r` or U+2028 stays in its value); a stanza that is not fields and folded
    lines is skipped, with a warning."""
    for n, run in enumerate(_runs(text), 1):
        fields = _fields(run)
        if fields is None:
            warnings.append(ImageWarning(source, f"stanza {n} is not fields: skipped"))
        else:
            yield fields


def read_dpkg(
    manifest: Manifest, resolver: PathResolver, *, only: Collection[str] | None = None
) -> PackageDB | None:
    """The dpkg database of the image, or None when it has no `/var/lib/dpkg/status`.

    `only`: the (normalised) paths the caller will ask owners of. Packages then list
    only those of their files and config files, with no digests: the `.md5sums` are not
    read and only listed paths with one of their names are normalised.
    """
    # /var/lib/dpkg may be a symlink inside the image (dpkg --root follows it)
    admin = posixpath.dirname(resolver.normalise(STATUS))
    status_path, info_dir = f"{admin}/status", f"{admin}/info"
    status_entry = manifest.entries.get(status_path)
    if status_entry is None or status_entry.type is not EntryType.FILE:
        return None
    warnings: list[ImageWarning] = []
    suffixes = _SUFFIXES if only is None else (".list",)
    prefix, depth = info_dir + "/", info_dir.count("/") + 1
    entries = manifest.entries
    info_files = [
        p
        for p in entries  # paths first: a large image's entries are made only when asked for
        if p.startswith(prefix) and p.endswith(suffixes) and p.count("/") == depth
        and entries[p].type is EntryType.FILE
    ]  # fmt: skip
    contents = manifest.read_files([status_path, f"{admin}/diversions", *info_files])
    if admin != ADMINDIR:  # read under the link's target, looked up under the usual names
        contents = {ADMINDIR + p[len(admin) :]: data for p, data in contents.items()}
    status = contents.get(STATUS)
    if status is None:
        warnings.append(ImageWarning(STATUS, "unreadable"))
        return PackageDB(MANAGER, (), STATUS, tuple(warnings))
    owned = _Owned(_diversions(contents.get(DIVERSIONS)), resolver, only)
    packages: list[Package] = []
    seen: set[str] = set()
    for n, para in enumerate(_stanzas(_decode_status(status, warnings), warnings)):
        if n >= _MAX_STANZAS:
            warnings.append(ImageWarning(STATUS, f"more than {_MAX_STANZAS} stanzas: rest ignored"))
            break
        name = para.get("package", "").strip()
        version = para.get("version", "").strip()
        arch = para.get("architecture", "").strip()
        state = para.get("status", "").split()
        if not name:
            warnings.append(ImageWarning(STATUS, f"stanza {n + 1} has no Package field"))
            continue
        if len(state) != 3 or state[2] == "not-installed":
            continue
        if not version:
            warnings.append(ImageWarning(STATUS, f"{name}: no Version field: skipped"))
            continue
        if only is None and _version(version) is None:  # (owners alone order nothing)
            warnings.append(
                ImageWarning(STATUS, f"{name}: {version!r} is not a Debian version: "
                             "ordered below every valid one")
            )  # fmt: skip
        key = f"{name}:{arch}"
        if key in seen:
            warnings.append(ImageWarning(STATUS, f"{name}: duplicate stanza: the first is used"))
            continue
        seen.add(key)
        conffiles = _conffiles(para.get("conffiles", ""))
        files: Iterable[str] = ()
        md5s: list[tuple[str, str]] = []
        if state[2] in _WITH_FILES:
            listed = _info(contents, name, arch, ".list")
            if listed is None:
                warnings.append(
                    ImageWarning(f"{INFO}/{name}.list", "missing: package owns no files")
                )
            else:
                files = [line for line in _lines(listed) if line.startswith("/") and line != "/."]
            sums = _info(contents, name, arch, ".md5sums") if only is None else None
            if sums is not None:
                for line in _lines(sums):
                    digest, _, rel = line.partition("  ")
                    if len(digest) == 32 and rel:
                        md5s.append(("/" + rel.lstrip("/"), f"md5:{digest.lower()}"))
        else:
            files = [path for path, _ in conffiles]
        if only is None:
            md5s.extend((path, f"md5:{digest}") for path, digest in conffiles if len(digest) == 32)
        packages.append(
            Package(
                manager=MANAGER,
                name=name,
                version=version,
                arch=arch,
                files=owned(files, name),
                config_files=owned((p for p, _ in conffiles), name),
                depends=_depends(para.get("pre-depends", "") + "," + para.get("depends", "")),
                # (dpkg records a conffile in the .md5sums too when the .deb ships none)
                file_digests=tuple(dict.fromkeys((owned.one(p, name), d) for p, d in md5s)),
                installed=state[2] != "config-files",
                source=_source(para.get("source", ""), name),
            )
        )
    return PackageDB(MANAGER, tuple(packages), STATUS, tuple(warnings))


class _Owned:
    """Listed paths as image paths: diverted, then normalised (see `PathResolver`); with
    `only`, just those among `only`."""

    def __init__(
        self,
        diversions: dict[str, tuple[str, str]],
        resolver: PathResolver,
        only: Collection[str] | None,
    ) -> None:
        self.diversions = diversions
        self.resolver = resolver
        self.only = only
        # normalising keeps a path's last component: a listed path whose name no wanted
        # path has cannot become one of them (odd names, `.`/`..`/empty, are normalised)
        self.names = None if only is None else {p.rpartition("/")[2] for p in only}

    def one(self, path: str, package: str) -> str:
        """`path` as listed by `package`, diverted and normalised."""
        return self.resolver.normalise(_divert(path, self.diversions, package))

    def __call__(self, paths: Iterable[str], package: str) -> tuple[str, ...]:
        if self.only is None:
            return tuple(dict.fromkeys(self.one(p, package) for p in paths))
        names, only, diversions = self.names, self.only, self.diversions
        assert names is not None
        out: dict[str, None] = {}
        for path in paths:
            diverted = _divert(path, diversions, package) if path in diversions else path
            name = diverted.rpartition("/")[2]
            if name in names or name in ("", ".", ".."):
                found = self.resolver.normalise(diverted)
                if found in only:
                    out[found] = None
        return tuple(out)


_CONFFILE_FLAGS = ("remove-on-upgrade", "obsolete")  # after the hash, in this order from the end


def _conffiles(value: str) -> list[tuple[str, str]]:
    """(path, hash) of each `Conffiles` line. As dpkg's `f_conffiles` reads it: the hash
    is the last space-separated word, after an optional `obsolete` then
    `remove-on-upgrade` flag; the name is everything before it, spaces and all."""
    out = []
    for line in value.split("\n"):  # the status was split at "\\n" only: so is this
        name, _, word = line[1:].rstrip().rpartition(" ")  # line[0]: the folding blank
        for flag in _CONFFILE_FLAGS:
            if word == flag:
                name, _, word = name.rpartition(" ")
        if name.startswith("/") and word:
            out.append((name, word))
    return out


def _info(contents: dict[str, bytes], name: str, arch: str, suffix: str) -> bytes | None:
    # Multi-Arch: same packages name their files "pkg:arch.list"
    return contents.get(f"{INFO}/{name}:{arch}{suffix}", contents.get(f"{INFO}/{name}{suffix}"))


def _divert(path: str, diversions: dict[str, tuple[str, str]], package: str) -> str:
    hit = diversions.get(path)
    if hit is not None and hit[1] != package:
        return hit[0]  # another package's file, installed under the diverted name
    return path

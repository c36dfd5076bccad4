"""The pip reader: Python distributions installed in an image, from their own metadata.

This module owns finding every `*.dist-info` and `*.egg-info` in an image (any site
directory: distribution, `/usr/local`, virtual environments, `--target` directories),
parsing their METADATA/PKG-INFO headers, RECORD and installed-files.txt as untrusted text,
and turning them into `Package` records whose files are normalised paths inside the image.
It must never import, execute or unpickle anything from the image, never read the host's
own site-packages, never produce a path outside the image and never fail on malformed
metadata: every problem becomes an `ImageWarning` naming the file it was found in.

Decisions a caller can rely on:

* `location` holds the site directory (the directory containing the .dist-info),
  normalised; `arch` holds it too, as `imgdiff.packages/1` has always said. Two installs
  of one distribution in different site directories are two packages (`Package.key` is
  `name:site`); across images a site directory's Python version is left out
  (`Package.lineage`), so moving to a new interpreter reads as an upgrade. Within one
  site directory a distribution is read once: a .dist-info wins over an .egg-info, then
  the first path in sorted order; the others are reported as warnings.
* `depends` lists the PEP 503 names of `Requires-Dist` (and egg-info `requires.txt`)
  requirements, skipping optional ones: a requirement whose marker mentions `extra` (and
  `requires.txt` sections named after an extra). Other markers (python_version, platform)
  are not evaluated: such requirements are kept.
* A .dist-info without RECORD (as some distribution packages ship) is a package without
  files and without a warning: the system package manager owns those files.
* RECORD paths are resolved lexically against the site directory, then through the image's
  own symlinks. When a `../../X` path does not exist but `SITE/X` does, the latter is used:
  `pip install --target` writes RECORD relative to a scratch `lib/python` directory, then
  moves `bin/`, `share/`, … into the target.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import posixpath
import re
from collections.abc import Collection, Iterable, Iterator

import attrs
from packaging.version import InvalidVersion, Version

from imgdiff.manifest import Manifest
from imgdiff.model import EntryType, ImageWarning
from imgdiff.packages.base import Package, PackageDB, PathResolver

MANAGER = "pip"

MAX_RECORD_LINES = 1_000_000  # lines read from one RECORD / installed-files.txt
MAX_RECORD_BYTES = 256 << 20  # a larger RECORD is not read at all
MAX_METADATA_BYTES = 32 << 20  # METADATA / PKG-INFO / requires.txt
_MAX_VERSION_CHARS = 256

_DIST_INFO = ".dist-info"
_EGG_INFO = ".egg-info"
_DIST_FILES = frozenset({"METADATA", "RECORD"})
_EGG_FILES = frozenset({"PKG-INFO", "installed-files.txt", "requires.txt"})
_WANTED_SUFFIXES = (*_DIST_FILES, *_EGG_FILES, _EGG_INFO)

_VALID_NAME = re.compile(r"[A-Z0-9]([A-Z0-9._-]*[A-Z0-9])?", re.IGNORECASE)
_REQUIREMENT_NAME = re.compile(r"\s*([A-Z0-9]([A-Z0-9._-]*[A-Z0-9])?)", re.IGNORECASE)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_EXTRA_WORD = re.compile(r"\bextra\b")
_EGG_PY_SUFFIX = re.compile(r"-py\d+(\.\d+)*$")
_BAD_VERSION_CHARS = re.compile(r"[^\x21-\x7e]")  # PEP 440 and legacy versions are ASCII
_HEX = re.compile(r"[0-9a-fA-F]+")
_DIGIT_RUNS = re.compile(r"(\d+)")
_HASH_SIZES = {name: hashlib.new(name).digest_size for name in ("sha256", "sha384", "sha512")}


def wants(path: str) -> bool:
    """True for the files `read_pip` reads, so streaming readers capture them on the way.

    Called for every member of an archive, so the common "no" costs one `endswith`.
    """
    if not path.endswith(_WANTED_SUFFIXES):
        return False
    head, _, name = path.rpartition("/")
    if name in _DIST_FILES:
        return head.endswith(_DIST_INFO)
    if name in _EGG_FILES:
        return head.endswith(_EGG_INFO)
    return name.endswith(_EGG_INFO)  # a single-file .egg-info is PKG-INFO itself


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as version `a` is older than, equal to or newer than `b` (PEP 440).

    Never raises: a version PEP 440 cannot parse sorts below every valid one (as pip's
    former LegacyVersion did); two invalid versions compare by runs of digits as numbers
    and other runs as text, then as plain strings. "1.0" and "1.0.0" compare equal.
    """
    va, vb = _pep440(a), _pep440(b)
    if va is not None and vb is not None:
        return (va > vb) - (va < vb)
    if va is not None or vb is not None:
        return 1 if va is not None else -1
    ka, kb = (_natural_key(a), a), (_natural_key(b), b)
    return (ka > kb) - (ka < kb)


def read_pip(
    manifest: Manifest, resolver: PathResolver, *, only: Collection[str] | None = None
) -> PackageDB | None:
    """The Python distributions of an image, or None if it has no .dist-info/.egg-info.

    Contents come from `manifest.read_files` (a saved manifest, which holds none, raises
    `Unsupported`). Malformed metadata never raises: it becomes warnings. `only`: see
    `base.Reader` (every distribution is read all the same).
    """
    reader = _Reader(manifest, resolver)
    if not reader.find():
        return None
    dists = reader.read()
    packages = reader.dedupe(dists)
    sites = sorted({p.arch for p in packages})
    return PackageDB(
        manager=MANAGER,
        packages=tuple(sorted(packages, key=lambda p: (p.name, p.arch))),
        source=", ".join(sites),
        warnings=tuple(reader.warnings),
    ).restricted(only)


# -- internals ---------------------------------------------------------------------------


@attrs.frozen
class _Found:
    """One metadata directory (or single-file .egg-info) found in the image."""

    path: str  # as in the manifest
    egg: bool
    is_file: bool = False  # a single-file .egg-info: the file is PKG-INFO


@attrs.frozen
class _Dist:
    path: str
    egg: bool
    package: Package


class _Issues:
    """Problems of one file, summarised as one warning per kind (a hostile RECORD may
    have a million bad lines; the report gets one line for them)."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, int]] = {}  # reason -> (count, first line)

    def add(self, reason: str, line: int) -> None:
        count, first = self.seen.get(reason, (0, line))
        self.seen[reason] = (count + 1, first)

    def warnings(self, path: str) -> Iterator[ImageWarning]:
        for reason, (count, first) in self.seen.items():
            where = f"line {first}" if count == 1 else f"{count} lines, first at line {first}"
            yield ImageWarning(path, f"{reason} ({where})")


class _Reader:
    def __init__(self, manifest: Manifest, resolver: PathResolver) -> None:
        self.manifest = manifest
        self.entries = manifest.entries
        self.resolver = resolver
        self.warnings: list[ImageWarning] = []
        self.found: list[_Found] = []
        self.contents: dict[str, bytes] = {}

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(ImageWarning(path, message))

    # -- discovery ---------------------------------------------------------------------
    def find(self) -> bool:
        """Collect metadata directories; False if the image has nothing pip-like at all."""
        any_named = False
        for path in self.entries:  # paths first: a large image makes entries on demand
            if not path.endswith((_DIST_INFO, _EGG_INFO)):
                continue
            entry = self.entries[path]
            any_named = True
            egg = path.endswith(_EGG_INFO)
            if entry.type is EntryType.DIR:
                self.found.append(_Found(path, egg))
            elif egg and entry.type is EntryType.FILE:
                self.found.append(_Found(path, egg, is_file=True))
            else:
                self.warn(path, f"not a directory ({entry.type}); not read as a distribution")
        self.found.sort(key=lambda f: f.path)
        return any_named

    def _readable(self, path: str, limit: int) -> bool:
        """True if `path` is a regular file of at most `limit` bytes (else a warning,
        unless it is simply absent)."""
        entry = self.entries.get(path)
        if entry is None:
            return False
        if entry.type is not EntryType.FILE:
            self.warn(path, f"not a regular file ({entry.type}); ignored")
            return False
        if entry.size > limit:
            self.warn(path, f"{entry.size} bytes, more than the {limit} read; ignored")
            return False
        return True

    def read(self) -> list[_Dist]:
        wanted: list[str] = []
        for f in self.found:
            if f.is_file:
                names: tuple[str, ...] = ("",)
            elif f.egg:
                names = ("PKG-INFO", "installed-files.txt", "requires.txt")
            else:
                names = ("METADATA", "RECORD")
            for name in names:
                path = f"{f.path}/{name}" if name else f.path
                is_list = name in ("RECORD", "installed-files.txt")
                if self._readable(path, MAX_RECORD_BYTES if is_list else MAX_METADATA_BYTES):
                    wanted.append(path)
        self.contents = self.manifest.read_files(wanted) if wanted else {}
        out = []
        for f in self.found:
            dist = self._egg(f) if f.egg else self._dist_info(f)
            if dist is not None:
                out.append(dist)
        return out

    # -- one distribution --------------------------------------------------------------
    def _text(self, path: str) -> str | None:
        data = self.contents.get(path)
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.warn(path, f"not valid UTF-8 (byte {exc.start}); undecodable bytes kept as-is")
            # surrogateescape: RECORD paths then match the image's os.fsdecode'd names
            return data.decode("utf-8", "surrogateescape")

    def _dist_info(self, f: _Found) -> _Dist | None:
        meta_path = f"{f.path}/METADATA"
        headers = self._headers(meta_path, f)
        if headers is None:
            return None
        name, version, requires = headers
        site = self.resolver.normalise(posixpath.dirname(f.path))
        record_path = f"{f.path}/RECORD"
        text = self._text(record_path)
        files: list[str] = []
        digests: list[tuple[str, str]] = []
        if text is not None:
            self._record(record_path, text, site, files, digests)
        return self._make(f, name, version, site, files, digests, requires)

    def _egg(self, f: _Found) -> _Dist | None:
        meta_path = f.path if f.is_file else f"{f.path}/PKG-INFO"
        headers = self._headers(meta_path, f)
        if headers is None:
            return None
        name, version, requires = headers
        site = self.resolver.normalise(posixpath.dirname(f.path))
        files: list[str] = []
        if not f.is_file:
            listed = f"{f.path}/installed-files.txt"
            text = self._text(listed)
            if text is not None:
                base = self.resolver.normalise(f.path)
                self._installed_files(listed, text, base, site, files)
            req_text = self._text(f"{f.path}/requires.txt")
            if req_text is not None:
                requires = [*requires, *_requires_txt(req_text)]
        return self._make(f, name, version, site, files, [], requires)

    def _make(
        self,
        f: _Found,
        name: str,
        version: str,
        site: str,
        files: list[str],
        digests: list[tuple[str, str]],
        requires: Iterable[str],
    ) -> _Dist:
        depends: dict[str, None] = {}
        for dep in requires:
            if dep != name:
                depends.setdefault(dep)
        package = Package(
            manager=MANAGER,
            name=name,
            version=version,
            arch=site,
            location=site,
            files=tuple(sorted(set(files))),
            depends=tuple(depends),
            file_digests=tuple(sorted(set(digests))),
        )
        return _Dist(f.path, f.egg, package)

    def _headers(self, meta_path: str, f: _Found) -> tuple[str, str, list[str]] | None:
        """(normalised name, version, dependency names) from METADATA/PKG-INFO, falling back
        to the directory's name for a missing or unusable Name/Version; None to skip."""
        text = self._text(meta_path)
        fields: dict[str, list[str]] = {}
        if text is None:
            self.warn(f.path, "no readable METADATA" if not f.egg else "no readable PKG-INFO")
        else:
            fields = _parse_headers(text)
        dir_name, dir_version = _name_from_dir(f.path)
        raw_name = (fields.get("name") or [""])[0].strip()
        raw_version = (fields.get("version") or [""])[0].strip()
        problems = []
        if not _VALID_NAME.fullmatch(raw_name):
            problems.append("no valid Name" if raw_name else "no Name")
            raw_name = dir_name if dir_name and _VALID_NAME.fullmatch(dir_name) else ""
        if not _usable_version(raw_version):
            problems.append("no valid Version" if raw_version else "no Version")
            raw_version = dir_version if _usable_version(dir_version) else ""
        if problems and text is not None:
            self.warn(meta_path, ", ".join(problems))
        if not raw_name or not raw_version:
            self.warn(f.path, "name or version unknown (not in metadata nor directory name)")
            return None
        if problems:
            self.warn(f.path, f"using {raw_name} {raw_version} from the directory name")
        requires = []
        for req in fields.get("requires-dist", ()):
            dep = _requirement_name(req)
            if dep is None:
                self.warn(meta_path, f"unparsable Requires-Dist {req[:80]!r}; ignored")
            elif dep:
                requires.append(dep)
        return normalise_name(raw_name), raw_version, requires

    # -- file lists --------------------------------------------------------------------
    def _record(
        self,
        record_path: str,
        text: str,
        site: str,
        files: list[str],
        digests: list[tuple[str, str]],
    ) -> None:
        issues = _Issues()
        rows = csv.reader(_bounded_lines(text, record_path, self))
        lineno = 0
        while True:
            lineno += 1
            try:
                row = next(rows)
            except StopIteration:
                break
            except csv.Error as exc:
                issues.add(f"line skipped: not CSV ({exc})", lineno)
                continue
            if not row:
                continue
            if len(row) != 3:
                issues.add(
                    "line skipped: wrong number of columns (expected path,hash,size)", lineno
                )
                continue
            path = self._resolve(row[0], site, site, issues, lineno)
            if path is None:
                continue
            files.append(path)
            if row[1]:
                digest = _digest(row[1])
                if digest is None:
                    issues.add("malformed hash: file kept without a digest", lineno)
                else:
                    digests.append((path, digest))
        self.warnings.extend(issues.warnings(record_path))

    def _installed_files(
        self, listed: str, text: str, base: str, site: str, files: list[str]
    ) -> None:
        issues = _Issues()
        for lineno, line in enumerate(_bounded_lines(text, listed, self), 1):
            rel = line.rstrip("\r\n")
            if rel.strip():
                path = self._resolve(rel, base, site, issues, lineno)
                if path is not None:
                    files.append(path)
        self.warnings.extend(issues.warnings(listed))

    def _resolve(self, rel: str, base: str, site: str, issues: _Issues, lineno: int) -> str | None:
        """The normalised image path of a listed file, or None (counted in `issues`)."""
        if not rel or "\x00" in rel:
            issues.add("line skipped: " + ("empty path" if not rel else "NUL in path"), lineno)
            return None
        if rel.startswith("/"):
            if "/../" in rel + "/":
                issues.add("line skipped: absolute path with '..'", lineno)
                return None
            return self.resolver.normalise(rel)
        joined = _join_inside(base, rel)
        if joined is None:
            issues.add("line skipped: path leaves the image root", lineno)
            return None
        path = self.resolver.normalise(joined)
        if base == site and path not in self.entries and rel.startswith("../../"):
            moved = _join_inside(site, rel[6:])  # pip --target: see the module docstring
            if moved is not None:
                alt = self.resolver.normalise(moved)
                if alt in self.entries:
                    return alt
        return path

    # -- duplicates --------------------------------------------------------------------
    def dedupe(self, dists: list[_Dist]) -> list[Package]:
        chosen: dict[str, _Dist] = {}
        for d in sorted(dists, key=lambda d: (d.egg, d.path)):
            key = d.package.key
            kept = chosen.get(key)
            if kept is None:
                chosen[key] = d
            else:
                self.warn(
                    d.path,
                    f"{d.package.name} {d.package.version} is also installed in the same "
                    f"directory by {kept.path}; this one is ignored",
                )
        return [d.package for d in chosen.values()]


def normalise_name(name: str) -> str:
    """A distribution name as PEP 503 compares them: `Foo.Bar_baz` -> `foo-bar-baz`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _usable_version(version: str) -> bool:
    return 0 < len(version) <= _MAX_VERSION_CHARS and not _BAD_VERSION_CHARS.search(version)


def _pep440(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


def _natural_key(version: str) -> tuple[tuple[int, int, str], ...]:
    return tuple(
        (0, int(run), "") if run.isdigit() else (1, 0, run)
        for run in _DIGIT_RUNS.split(version)
        if run
    )


def _bounded_lines(text: str, path: str, reader: _Reader) -> Iterator[str]:
    """The lines of `text`, at most `MAX_RECORD_LINES` (a warning says when cut)."""
    for count, line in enumerate(text.split("\n")):  # "\n" only: CSV decides the rest
        if count >= MAX_RECORD_LINES:
            reader.warn(path, f"more than {MAX_RECORD_LINES} lines; the rest ignored")
            return
        yield line


def _parse_headers(text: str) -> dict[str, list[str]]:
    """RFC 822-style headers (keys lower-cased), up to the first blank line.

    A hand-written parser: `email`'s compat32 policy turns values with undecodable bytes
    into `Header` objects, and only three fields are needed.
    """
    end = text.find("\n\n")
    head = text if end < 0 else text[:end]
    fields: dict[str, list[str]] = {}
    key: str | None = None
    for line in head.splitlines():
        if not line.strip():
            break
        if line[0] in " \t":
            if key is not None:  # a continuation of the previous value
                fields[key][-1] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            key = None
            continue
        key = name.strip().lower()
        fields.setdefault(key, []).append(value.strip())
    return fields


def _name_from_dir(path: str) -> tuple[str, str]:
    """(name, version) from `name-version.dist-info` / `name-version[-pyX.Y].egg-info`."""
    base = posixpath.basename(path)
    stem = base.removesuffix(_DIST_INFO).removesuffix(_EGG_INFO)
    if base.endswith(_EGG_INFO):
        stem = _EGG_PY_SUFFIX.sub("", stem)
    name, sep, version = stem.rpartition("-")
    return (name, version) if sep else (stem, "")


def _requirement_name(req: str) -> str | None:
    """The PEP 503 name a requirement needs, "" if it is optional (an extra), None if
    unparsable. Markers other than `extra` are not evaluated (the requirement counts)."""
    m = _REQUIREMENT_NAME.match(req)
    if m is None:
        return None
    _, sep, marker = req.partition(";")
    if sep and _EXTRA_WORD.search(_QUOTED.sub("", marker)):
        return ""
    return normalise_name(m.group(1))


def _requires_txt(text: str) -> Iterator[str]:
    """Names from setuptools' requires.txt: unconditional lines and `[:marker]` sections;
    `[extra]` and `[extra:marker]` sections are optional and skipped."""
    optional = False
    for raw in text.splitlines()[:MAX_RECORD_LINES]:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            optional = not line.startswith("[:")
            continue
        if not optional:
            name = _requirement_name(line)
            if name:
                yield name


def _join_inside(base: str, rel: str) -> str | None:
    """`base`/`rel` with `.` and `..` applied lexically; None if it climbs above `/`."""
    parts = [p for p in base.split("/") if p]
    for part in rel.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/" + "/".join(parts)


def _digest(field: str) -> str | None:
    """RECORD's `sha256=<urlsafe base64, unpadded>` as `"sha256:<hex>"`; None if malformed.

    Hex digests (some distribution builds write them) are accepted too: a hex string is
    twice the digest size, a base64 one 4/3 of it, so the two never collide.
    """
    algo, sep, value = field.partition("=")
    size = _HASH_SIZES.get(algo)
    if not sep or size is None:
        return None
    if len(value) == 2 * size and _HEX.fullmatch(value):
        return f"{algo}:{value.lower()}"
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != size:
        return None
    return f"{algo}:{raw.hex()}"


__all__ = ["MANAGER", "compare_versions", "normalise_name", "read_pip", "wants"]

"""The rpm reader: an image's installed rpm packages from its own rpmdb, and rpm ordering.

This module owns finding the rpmdb inside an image (`/usr/lib/sysimage/rpm` or
`/var/lib/rpm`, through the image's own symlinks), turning each header into a `Package`,
and `compare_versions`. It must never read the host's database (the files come from
`Manifest.read_files` and are opened from a private temporary copy), never write into the
image, and must leave rpm's process-global macros as it found them.

Which reader runs: the rpm bindings (`import rpm`) whenever they import, for any backend
the local rpm build has (sqlite `rpmdb.sqlite`; bdb_ro `Packages`; ndb `Packages.db` where
built in, which Debian's rpm is not). Without them, or with `use_bindings=False`, an
sqlite database is read by `_rpm_sqlite` (stdlib `sqlite3`, `_rpm_header`); an ndb or bdb
database then gives a `PackageDB` with no packages and a warning (not an error: the rest
of the image is still compared, and the warning says the view is missing, not empty). A
file that is not a database (not SQLite, no `Packages` table) raises `BadInput`; one
unreadable header is skipped with a warning naming its package number, and the others are
read.
"""

from __future__ import annotations

import functools
import os
import posixpath
import threading
from collections.abc import Callable, Collection, Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import attrs

from imgdiff.errors import BadInput, Unsupported
from imgdiff.manifest import Manifest
from imgdiff.model import EntryType, ImageWarning
from imgdiff.packages import _rpm_header as hdr
from imgdiff.packages.base import Package, PackageDB, PathResolver

if TYPE_CHECKING:
    from imgdiff.packages._rpm_sqlite import Raw

MANAGER = "rpm"
DB_DIRS = ("/usr/lib/sysimage/rpm", "/var/lib/rpm")
RPMFILE_CONFIG = 1  # rpm's rpmfileAttrs_e: the file is %config

# (main file, rpm backend), in the order rpm's own backend detection prefers them
_BACKENDS = (("rpmdb.sqlite", "sqlite"), ("Packages.db", "ndb"), ("Packages", "bdb_ro"))
_SQLITE_WAL = "rpmdb.sqlite-wal"
_NDB_INDEX = "Index.db"
# never copied for bdb: other backends' files (rpm would switch to them), Berkeley DB
# environment regions and lock files (state of the machine that wrote them)
_OTHER_FILES = frozenset({"rpmdb.sqlite", _SQLITE_WAL, "rpmdb.sqlite-shm", "Packages.db",
                          _NDB_INDEX, ".rpm.lock", ".dbenv.lock"})  # fmt: skip

_DIGEST_ALGOS = {1: "md5", 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}
_RICH_WORDS = frozenset({"and", "or", "if", "else", "unless", "with", "without"})
_RICH_OPERATORS = frozenset({"<", "<=", "=", "==", ">=", ">"})

_RPM_LOCK = threading.Lock()  # macros are process-global: one database open at a time


def wants(path: str) -> bool:
    """True for files directly inside an rpm database directory (capture them on pass one)."""
    return path[: path.rfind("/")] in DB_DIRS  # dirname, without its per-call overhead


@attrs.frozen
class _Found:
    """The database chosen in an image."""

    main: str  # image path of the backend's main file, e.g. /var/lib/rpm/rpmdb.sqlite
    backend: str  # rpm's name for it: sqlite, ndb, bdb_ro
    mtime_ns: int


def read_rpm(
    manifest: Manifest,
    resolver: PathResolver,
    *,
    use_bindings: bool | None = None,
    only: Collection[str] | None = None,
) -> PackageDB | None:
    """The image's rpm packages, or None when it has no rpm database.

    `use_bindings`: None uses the rpm bindings when they import; False forces the sqlite
    fallback; True requires the bindings (`Unsupported` without them). `only`: see
    `base.Reader` (the whole database is read all the same).
    """
    found, warnings = _locate(manifest, resolver)
    if found is None:
        return None
    rpm = _bindings() if use_bindings is not False else None
    if use_bindings and rpm is None:
        raise Unsupported("rpm bindings unavailable (install python3-rpm)")
    if rpm is None and found.backend != "sqlite":
        why = f"rpm bindings unavailable: a {found.backend} database has no fallback reader"
        warnings.append(ImageWarning(found.main, why))
        return PackageDB(MANAGER, (), found.main, tuple(warnings))
    bad = functools.partial(BadInput, manifest.source, entry=found.main)
    # the database's readers load only for an image that has one (sqlite3 is not small)
    import tempfile

    from imgdiff.packages._rpm_sqlite import read_fallback

    with tempfile.TemporaryDirectory(prefix="imgdiff-rpmdb-") as tmp:
        has_wal = _copy_db(manifest, found, tmp, bad)
        if rpm is None:
            raws = read_fallback(tmp, has_wal, found.main, warnings, bad)
        else:
            raws = _read_bindings(rpm, tmp, has_wal, found, warnings, bad)
    packages = []
    for raw in sorted(raws, key=lambda r: r.hnum):
        if raw.name == "gpg-pubkey" and not raw.arch:
            continue  # an imported signing key, not software: owns nothing
        try:
            packages.append(_package(raw, resolver))
        except hdr.HeaderError as exc:
            warnings.append(ImageWarning(found.main, f"package #{raw.hnum}: {exc}; skipped"))
    packages.sort(key=lambda p: (p.name, p.arch, p.version))
    return PackageDB(MANAGER, tuple(packages), found.main, tuple(warnings)).restricted(only)


# -- finding and copying the database ---------------------------------------------------
def _locate(manifest: Manifest, resolver: PathResolver) -> tuple[_Found | None, list[ImageWarning]]:
    """The image's database; with two distinct ones, the newer (and a warning)."""
    candidates: dict[str, _Found] = {}
    for directory in DB_DIRS:
        for name, backend in _BACKENDS:
            path = resolver.normalise(f"{directory}/{name}")  # /var/lib/rpm may be a symlink
            entry = manifest.entries.get(path)
            if entry is not None and entry.type is EntryType.FILE:
                candidates[path] = _Found(path, backend, entry.mtime_ns)
                break
    if not candidates:
        return None, []
    ordered = sorted(candidates.values(), key=lambda f: f.mtime_ns, reverse=True)
    warnings = [
        ImageWarning(other.main, f"a second rpm database, older than {ordered[0].main}: ignored")
        for other in ordered[1:]
    ]
    return ordered[0], warnings


def _copy_db(manifest: Manifest, found: _Found, tmp: str, bad: Callable[[str], BadInput]) -> bool:
    """Write the database's files into `tmp`; True when an sqlite WAL came along."""
    directory = posixpath.dirname(found.main)
    paths = [found.main]
    if found.backend == "sqlite":
        paths.append(f"{directory}/{_SQLITE_WAL}")  # committed changes not yet checkpointed
    elif found.backend == "ndb":
        paths.append(f"{directory}/{_NDB_INDEX}")
    else:
        paths += [
            path
            for path, entry in manifest.entries.items()
            if entry.type is EntryType.FILE
            and posixpath.dirname(path) == directory
            and path != found.main
            and (name := posixpath.basename(path)) not in _OTHER_FILES
            and not name.startswith("__db.")
        ]
    contents = manifest.read_files(paths)
    if found.main not in contents:
        raise bad("the rpm database could not be read from the image")
    for path, data in contents.items():
        with open(os.path.join(tmp, posixpath.basename(path)), "xb") as fh:
            fh.write(data)
    return bool(contents.get(f"{directory}/{_SQLITE_WAL}"))


# -- the two readers ------------------------------------------------------------------------
@functools.cache
def _bindings() -> ModuleType | None:
    """The rpm module, or None; cached (the PyPI shim probes interpreters on each try)."""
    try:
        import rpm
    except ImportError:
        return None
    module: ModuleType = rpm
    return module


def _read_bindings(
    rpm: ModuleType,
    tmp: str,
    has_wal: bool,
    found: _Found,
    warnings: list[ImageWarning],
    bad: Callable[[str], BadInput],
) -> list[Raw]:
    # rpm skips a damaged header with a message on stderr; the table says which ones
    expected = None
    if found.backend == "sqlite":
        from imgdiff.packages._rpm_sqlite import sqlite_rows

        expected = [row[0] for row in sqlite_rows(tmp, has_wal, "hnum", bad)]
    with _RPM_LOCK:
        rpm.addMacro("_dbpath", tmp)
        rpm.addMacro("_db_backend", found.backend)
        try:
            ts = rpm.TransactionSet()
            ts.setVSFlags(rpm._RPMVSF_NOSIGNATURES | rpm._RPMVSF_NODIGESTS)
            try:
                raws = [_raw_from_rpm(rpm, h) for h in ts.dbMatch()]
            finally:
                ts.closeDB()
        except rpm.error as exc:
            raise bad(f"rpm could not open the {found.backend} database ({exc})") from None
        finally:
            rpm.delMacro("_db_backend")  # pops our definition: the caller's comes back
            rpm.delMacro("_dbpath")
    if expected is not None:
        seen = {r.hnum for r in raws}
        warnings += [
            ImageWarning(found.main, f"package #{n}: rpm could not read this header; skipped")
            for n in expected
            if n not in seen
        ]
    elif not raws and os.path.getsize(os.path.join(tmp, posixpath.basename(found.main))):
        why = f"rpm read no packages: this rpm build may lack the {found.backend} backend"
        warnings.append(ImageWarning(found.main, why))
    return raws


def _raw_from_rpm(rpm: ModuleType, h: Any) -> Raw:
    from imgdiff.packages._rpm_sqlite import Raw

    return Raw(
        int(h[rpm.RPMTAG_DBINSTANCE]),
        h[rpm.RPMTAG_NAME],
        h[rpm.RPMTAG_VERSION],
        h[rpm.RPMTAG_RELEASE],
        h[rpm.RPMTAG_EPOCH],
        h[rpm.RPMTAG_ARCH],
        tuple(h[rpm.RPMTAG_FILENAMES]),
        tuple(h[rpm.RPMTAG_FILEFLAGS]),
        tuple(h[rpm.RPMTAG_FILEDIGESTS]),
        h[rpm.RPMTAG_FILEDIGESTALGO],
        tuple(h[rpm.RPMTAG_REQUIRENAME]),
        h[rpm.RPMTAG_SOURCERPM] or None,
    )


# -- one header to one Package ------------------------------------------------------------
def _package(raw: Raw, resolver: PathResolver) -> Package:
    count = len(raw.files)
    for what, values in (("file flags", raw.flags), ("file digests", raw.digests)):
        if values and len(values) != count:
            raise hdr.HeaderError(f"{len(values)} {what} for {count} files")
    algo = 1 if raw.digest_algo is None else raw.digest_algo  # rpm: absent means md5
    algo_name = _DIGEST_ALGOS.get(algo, f"rpm-digest-algo-{algo}")
    files = [resolver.normalise(f) for f in raw.files]
    config = [p for p, flag in zip(files, raw.flags, strict=False) if flag & RPMFILE_CONFIG]
    digests: dict[str, str] = {}
    for path, digest in zip(files, raw.digests, strict=False):
        if digest:  # directories, symlinks and ghosts have none
            digests.setdefault(path, f"{algo_name}:{digest.lower()}")
    return Package(
        manager=MANAGER,
        name=raw.name,
        version=_evr(raw.epoch, raw.version, raw.release),
        arch=raw.arch or "",
        files=tuple(dict.fromkeys(files)),
        config_files=tuple(dict.fromkeys(config)),
        depends=package_requires(raw.requires),
        file_digests=tuple(digests.items()),
        source=source_name(raw.sourcerpm),
    )


def source_name(sourcerpm: str | None) -> str:
    """The source package's name in a SOURCERPM file name: `nginx-1:1.24.0-1.fc39.src.rpm`
    less `-VERSION-RELEASE.src.rpm` (`.nosrc.rpm` too); "" when there is none (a source
    rpm itself, gpg-pubkey) or it is not of that form."""
    if not sourcerpm:
        return ""
    for suffix in (".src.rpm", ".nosrc.rpm"):
        if sourcerpm.endswith(suffix):
            parts = sourcerpm[: -len(suffix)].rsplit("-", 2)
            return parts[0] if len(parts) == 3 and all(parts) else ""
    return ""


def _evr(epoch: int | None, version: str, release: str) -> str:
    """`[epoch:]version-release`; epoch 0 is left out (rpm orders it as no epoch)."""
    return f"{epoch}:{version}-{release}" if epoch else f"{version}-{release}"


def package_requires(names: Iterable[str]) -> tuple[str, ...]:
    """The package-ish names among rpm requirements, sorted and unique.

    Kept: plain names, i.e. packages and plain virtual provides (`webserver`), including
    those inside rich dependencies (`(a or b)` gives a and b). Dropped: file paths, the
    `namespace(...)` capabilities (`rpmlib(...)`, `config(...)`, `perl(...)`,
    `pkgconfig(...)`, soname deps such as `libc.so.6()(64bit)`) and bare sonames.
    """
    kept: set[str] = set()
    for name in names:
        words = _rich_words(name) if name.startswith("(") else [name]
        kept.update(w for w in words if _is_package_name(w))
    return tuple(sorted(kept))


def _rich_words(dep: str) -> list[str]:
    """Capability names of a rich dependency, without its operators and versions."""
    out = []
    after_operator = False
    for word in dep.split():
        word = word.lstrip("(")  # noqa: PLW2901 -- peeling the expression's own parentheses
        while word.endswith(")") and word.count(")") > word.count("("):
            word = word[:-1]  # noqa: PLW2901
        if after_operator:  # the version after `>=`
            after_operator = False
        elif word in _RICH_OPERATORS:
            after_operator = True
        elif word and word not in _RICH_WORDS:
            out.append(word)
    return out


def _is_package_name(name: str) -> bool:
    if not name or name.startswith("/") or "(" in name:
        return False
    stem, dot_so, rest = name.partition(".so")
    return not (stem and dot_so and (not rest or rest.startswith(".")))


# -- version ordering -----------------------------------------------------------------------
def compare_versions(a: str, b: str, *, use_bindings: bool | None = None) -> int:
    """-1, 0 or 1 as rpm orders two `[epoch:]version[-release]` strings.

    With the bindings (unless `use_bindings` is False) this is `rpm.labelCompare`; without
    them, or for strings rpm refuses (an empty version), the same algorithm in Python.
    """
    left, right = _split_evr(a), _split_evr(b)
    rpm = _bindings() if use_bindings is not False else None
    if rpm is not None:
        try:
            return int(rpm.labelCompare(left, right))
        except ValueError:
            pass
    (ea, va, ra), (eb, vb, rb) = left, right
    epochs = rpmvercmp("0" if ea is None else ea, "0" if eb is None else eb)
    return epochs or rpmvercmp(va, vb) or rpmvercmp(ra or "", rb or "")


def _split_evr(evr: str) -> tuple[str | None, str, str | None]:
    epoch: str | None
    epoch, colon, rest = evr.partition(":")
    if not colon:
        epoch, rest = None, evr
    version, dash, release = rest.rpartition("-")
    return (epoch, version, release) if dash else (epoch, rest, None)


_DIGITS = frozenset("0123456789")
_ALPHAS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ALNUM = _DIGITS | _ALPHAS


def rpmvercmp(a: str, b: str) -> int:
    """rpm's segment comparison of two version (or release) strings: -1, 0 or 1.

    Runs of ASCII digits compare numerically and beat letters; runs of ASCII letters
    compare as strings; anything else separates. `~` sorts before everything, even the
    end of the string (`1.0~rc1` < `1.0`); `^` sorts after the end but before any other
    segment (`1.0` < `1.0^post` < `1.0.1`).
    """
    if a == b:
        return 0
    i = j = 0
    na, nb = len(a), len(b)
    while i < na or j < nb:
        while i < na and a[i] not in _ALNUM and a[i] not in "~^":
            i += 1
        while j < nb and b[j] not in _ALNUM and b[j] not in "~^":
            j += 1
        ca = a[i] if i < na else ""
        cb = b[j] if j < nb else ""
        if "~" in (ca, cb):
            if ca != "~":
                return 1
            if cb != "~":
                return -1
            i, j = i + 1, j + 1
            continue
        if "^" in (ca, cb):
            if not ca:
                return -1
            if not cb:
                return 1
            if ca != "^":
                return 1
            if cb != "^":
                return -1
            i, j = i + 1, j + 1
            continue
        if not (ca and cb):
            break
        kind = _DIGITS if ca in _DIGITS else _ALPHAS
        si, sj = i, j
        while i < na and a[i] in kind:
            i += 1
        while j < nb and b[j] in kind:
            j += 1
        seg_a, seg_b = a[si:i], b[sj:j]
        if not seg_b:  # segments of different kinds: a number beats letters
            return 1 if kind is _DIGITS else -1
        if kind is _DIGITS:
            seg_a, seg_b = seg_a.lstrip("0"), seg_b.lstrip("0")
            if len(seg_a) != len(seg_b):
                return 1 if len(seg_a) > len(seg_b) else -1
        if seg_a != seg_b:
            return 1 if seg_a > seg_b else -1
    if i >= na and j >= nb:
        return 0
    return -1 if i >= na else 1

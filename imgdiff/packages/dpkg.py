"""The dpkg database of an image: status, file lists, md5sums, conffiles, diversions.

Everything is read from inside the image (`/var/lib/dpkg`) through the manifest, never
from the host, and parsed, never executed. python-debian parses the status file (the
text is decoded here first, with surrogateescape, because python-debian raises on bytes
that are not UTF-8); the per-package `.list`, `.md5sums` and `.conffiles` files are plain
line formats read directly. Paths go through `PathResolver`, so the ~400 usr-merged paths
of a Debian image (`/lib/...` listed, `/usr/lib/...` on disk) belong to their package.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from debian import deb822
from debian.debian_support import Version

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


def compare_versions(a: str, b: str) -> int:
    """Debian ordering (epochs, `~`, revisions): negative, zero or positive."""
    va, vb = Version(a), Version(b)
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
    return data.decode("utf-8", "surrogateescape").splitlines()


def _depends(value: str) -> tuple[str, ...]:
    """Package names in a Depends/Pre-Depends field, alternatives flattened."""
    names = []
    for clause in value.split(","):
        for alt in clause.split("|"):
            name = alt.strip().split(" ", 1)[0].split("(", 1)[0].split(":", 1)[0]
            if name:
                names.append(name)
    return tuple(dict.fromkeys(names))


def _diversions(data: bytes | None) -> dict[str, tuple[str, str]]:
    """{diverted path: (where it went, diverting package or ':' for local)}."""
    out: dict[str, tuple[str, str]] = {}
    if not data:
        return out
    lines = _lines(data)
    for i in range(0, len(lines) - 2, 3):
        out[lines[i]] = (lines[i + 1], lines[i + 2])
    return out


def read_dpkg(manifest: Manifest, resolver: PathResolver) -> PackageDB | None:
    """The dpkg database of the image, or None when it has no `/var/lib/dpkg/status`."""
    status_entry = manifest.entries.get(STATUS)
    if status_entry is None or status_entry.type is not EntryType.FILE:
        return None
    warnings: list[ImageWarning] = []
    entries = manifest.entries
    info_files = [
        p
        for p in entries  # paths first: a large image's entries are made only when asked for
        if p.startswith(INFO + "/") and p.endswith(_SUFFIXES)
        and p.count("/") == INFO.count("/") + 1 and entries[p].type is EntryType.FILE
    ]  # fmt: skip
    contents = manifest.read_files([STATUS, DIVERSIONS, *info_files])
    status = contents.get(STATUS)
    if status is None:
        warnings.append(ImageWarning(STATUS, "unreadable"))
        return PackageDB(MANAGER, (), STATUS, tuple(warnings))
    diversions = _diversions(contents.get(DIVERSIONS))
    packages: list[Package] = []
    seen: set[str] = set()
    text = io.StringIO(_decode_status(status, warnings))
    stanzas = deb822.Deb822.iter_paragraphs(text, use_apt_pkg=False)
    for n, para in enumerate(stanzas):
        if n >= _MAX_STANZAS:
            warnings.append(ImageWarning(STATUS, f"more than {_MAX_STANZAS} stanzas: rest ignored"))
            break
        name = para.get("Package", "").strip()
        version = para.get("Version", "").strip()
        arch = para.get("Architecture", "").strip()
        state = para.get("Status", "").split()
        if not name:
            warnings.append(ImageWarning(STATUS, f"stanza {n + 1} has no Package field"))
            continue
        if len(state) != 3 or state[2] == "not-installed":
            continue
        if not version:
            warnings.append(ImageWarning(STATUS, f"{name}: no Version field: skipped"))
            continue
        key = f"{name}:{arch}"
        if key in seen:
            warnings.append(ImageWarning(STATUS, f"{name}: duplicate stanza: the first is used"))
            continue
        seen.add(key)
        conffiles = _conffiles(para.get("Conffiles", ""))
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
            sums = _info(contents, name, arch, ".md5sums")
            if sums is not None:
                for line in _lines(sums):
                    digest, _, rel = line.partition("  ")
                    if len(digest) == 32 and rel:
                        md5s.append(("/" + rel.lstrip("/"), f"md5:{digest.lower()}"))
        else:
            files = [path for path, _ in conffiles]
        md5s.extend((path, f"md5:{digest}") for path, digest in conffiles if len(digest) == 32)
        packages.append(
            Package(
                manager=MANAGER,
                name=name,
                version=version,
                arch=arch,
                files=_normalised(files, diversions, name, resolver),
                config_files=_normalised((p for p, _ in conffiles), diversions, name, resolver),
                depends=_depends(para.get("Pre-Depends", "") + "," + para.get("Depends", "")),
                file_digests=tuple(
                    (resolver.normalise(_divert(p, diversions, name)), d) for p, d in md5s
                ),
            )
        )
    return PackageDB(MANAGER, tuple(packages), STATUS, tuple(warnings))


def _conffiles(value: str) -> list[tuple[str, str]]:
    out = []
    for line in value.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("/"):
            out.append((parts[0], parts[1]))  # a third word ("obsolete"/"remove-on-upgrade")
    return out


def _info(contents: dict[str, bytes], name: str, arch: str, suffix: str) -> bytes | None:
    # Multi-Arch: same packages name their files "pkg:arch.list"
    return contents.get(f"{INFO}/{name}:{arch}{suffix}", contents.get(f"{INFO}/{name}{suffix}"))


def _divert(path: str, diversions: dict[str, tuple[str, str]], package: str) -> str:
    hit = diversions.get(path)
    if hit is not None and hit[1] != package:
        return hit[0]  # another package's file, installed under the diverted name
    return path


def _normalised(
    paths: Iterable[str],
    diversions: dict[str, tuple[str, str]],
    package: str,
    resolver: PathResolver,
) -> tuple[str, ...]:
    return tuple(dict.fromkeys(resolver.normalise(_divert(p, diversions, package)) for p in paths))

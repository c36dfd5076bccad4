"""Host reports: what one host sends a fleet planner, instead of whole manifests.

This module owns `HostReport` (the `imgdiff.report/1` document): the host's snapshot, its
identity (hostname, machine-id, boot id, each saying where it was read) and, when an
image was named, the state of its tree against that image (matches, or the differing
paths and the packages it is behind on, through `verify` and `drift`). It writes reports
readable by their owner only (they hold every user's command lines and open files), drops
command-line arguments on request (`redact`), and reads reports and plain snapshots back
as untrusted input (`load_host`). It decides nothing: that is `plan`'s.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Sequence
from typing import Any

import attrs

from imgdiff._jsondoc import Types, as_list, check_root, check_types
from imgdiff.errors import BadInput
from imgdiff.fs.inputs import open_regular_file
from imgdiff.results import MISSED_UPDATE
from imgdiff.runtime import _procfs
from imgdiff.runtime.snapshot import SCHEMA as SNAPSHOT_SCHEMA
from imgdiff.runtime.snapshot import Snapshot

SCHEMA = "imgdiff.report/1"
MAX_DIFFERS = 10_000  # differing paths kept in a report (the total is kept beside them)
MAX_REPORT_BYTES = 256 << 20  # a larger file is refused unread


@attrs.frozen
class HostIdentity:
    """Which machine a report is of; `sources` says where each value was read."""

    hostname: str
    machine_id: str | None
    boot_id: str
    sources: tuple[tuple[str, str], ...] = ()

    @classmethod
    def read(cls, root: str = "/", procfs: str = "/proc") -> HostIdentity:
        """The hostname and boot id are the kernel's (a chroot or container root shares
        the host's boot, and its UTS hostname unless it has its own namespace); the
        machine-id is the installed system's, read inside `root`."""
        machine = _read_machine_id(root)
        return cls(
            socket.gethostname(),
            machine,
            _procfs.boot_id(procfs),
            (
                ("hostname", "the kernel (uname)"),
                ("machine_id", f"{os.path.join(root, 'etc/machine-id')} (inside --root)"),
                ("boot_id", f"{procfs}/sys/kernel/random/boot_id (the kernel's)"),
            ),
        )


@attrs.frozen
class TreeState:
    """The host's tree against the image it should be."""

    against: str  # the image as named when the report was made
    identity: str  # that image's manifest identity
    differs: tuple[str, ...]  # paths that differ (at most MAX_DIFFERS)
    differs_total: int
    packages: tuple[str, ...]  # installed packages whose version is not the image's
    ignored: tuple[str, ...]  # patterns left out of the comparison

    @property
    def matches(self) -> bool:
        """True when the tree is the image (ignored paths aside)."""
        return self.differs_total == 0

    @property
    def behind(self) -> tuple[str, ...]:
        """The packages the host is behind the image on (missed updates)."""
        return tuple(p for p in self.packages if p.endswith(MISSED_UPDATE))


@attrs.frozen
class HostReport:
    """One host's report: its snapshot, its identity and its tree's state."""

    snapshot: Snapshot
    identity: HostIdentity
    root: str = "/"
    tree: TreeState | None = None
    redacted: bool = False

    @classmethod
    def capture(
        cls,
        root: str = "/",
        against: str | None = None,
        *,
        redact: bool = False,
        spool: str | None = None,
        ignore: Sequence[str] | None = None,
        use_cache: bool = True,
        exclude_self: bool = False,
    ) -> HostReport:
        """A report of the processes of `root` now, and of the tree against `against` (an
        image or saved manifest) when given; `redact` drops command-line arguments. The
        report's root is `root` as its processes' roots read (absolute, symlinks resolved)."""
        root = _procfs.resolve_root(root)
        snap = Snapshot.capture(root, spool=spool, exclude_self=exclude_self, compare_deleted=True)
        if redact:
            snap = redacted(snap)
        tree = None
        if against is not None:
            tree = tree_state(root, against, ignore=ignore, use_cache=use_cache)
        return cls(snap, HostIdentity.read(root), root, tree, redact)

    def to_json(self) -> dict[str, Any]:
        """The `imgdiff.report/1` document (docs/fleet.md)."""
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "host": {
                "hostname": self.identity.hostname,
                "machine_id": self.identity.machine_id,
                "boot_id": self.identity.boot_id,
                "sources": dict(self.identity.sources),
            },
            "root": self.root,
            "redacted": self.redacted,
            "tree": None,
            "snapshot": self.snapshot.to_json(),
        }
        if self.tree is not None:
            t = self.tree
            doc["tree"] = {
                "against": t.against,
                "identity": t.identity,
                "matches": t.matches,
                "differs": list(t.differs),
                "differs_total": t.differs_total,
                "packages": list(t.packages),
                "behind": list(t.behind),
                "ignored": list(t.ignored),
            }
        return doc

    def save(self, path: str) -> None:
        """Write the report, readable and writable by its owner only (0600), atomically;
        zstd-compressed when `path` ends in ".zst" (about 20 times smaller)."""
        data = json.dumps(self.to_json(), separators=(",", ":")).encode("ascii")
        if path.endswith(".zst"):
            import zstandard

            data = zstandard.ZstdCompressor(level=3).compress(data)
        tmp = f"{path}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask, and over an existing file
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise


def redacted(snap: Snapshot) -> Snapshot:
    """The snapshot with every command line cut to its program (argv[0])."""
    procs = tuple(attrs.evolve(p, cmdline=p.cmdline[:1]) for p in snap.processes)
    return attrs.evolve(snap, processes=procs)


def tree_state(
    root: str,
    against: str,
    *,
    ignore: Sequence[str] | None = None,
    use_cache: bool = True,
) -> TreeState:
    """The tree at `root` against an image: `verify`'s differences (what a running system
    writes for itself ignored) and `drift`'s package comparison."""
    from imgdiff.archive.format import as_manifest
    from imgdiff.drift import _package_drift
    from imgdiff.manifest import Manifest
    from imgdiff.packages.view import PackageView
    from imgdiff.verify import DRIFT_IGNORE, verify

    patterns = tuple(DRIFT_IGNORE if ignore is None else ignore)
    image = as_manifest(against)
    want = image if isinstance(image, Manifest) else Manifest.read(image, use_cache=use_cache)
    result = verify(root, want, ignore=patterns, use_cache=use_cache)
    differs = tuple(c.path for c in result.differences)
    packages: tuple[str, ...] = ()
    if differs and want.has_contents:
        packages = _package_drift(PackageView.read(result.manifest), PackageView.read(want))
    return TreeState(
        against, want.identity, differs[:MAX_DIFFERS], len(differs), packages, patterns
    )


# -- reading back ---------------------------------------------------------------------
_HOST_TYPES: Types = {
    "hostname": str,
    "machine_id": (str, type(None)),
    "boot_id": str,
    "sources": dict,
}
_TREE_TYPES: Types = {
    "against": str, "identity": str, "matches": bool, "differs": list, "differs_total": int,
    "packages": list, "behind": list, "ignored": list,
}  # fmt: skip
_REPORT_TYPES: Types = {
    "schema": str, "host": dict, "root": str, "redacted": bool, "tree": (dict, type(None)),
    "snapshot": dict,
}  # fmt: skip


_IDENTITY = re.compile(r"blake3:[0-9a-f]{64}")  # a manifest's identity


def _strings(value: Any, what: str) -> tuple[str, ...]:
    items = as_list(value, what)
    if not all(isinstance(v, str) for v in items):
        raise ValueError(f"{what} holds a non-string")
    return tuple(items)


def from_json(doc: Any, name: str) -> HostReport:
    """A report from its document; anything malformed is `BadInput` naming `name`."""
    try:
        check_types(doc, _REPORT_TYPES, "report", required=tuple(_REPORT_TYPES))
        if doc["schema"] != SCHEMA:
            raise ValueError(f"schema is {doc['schema']!r}, not {SCHEMA}")
        check_root(doc["root"], "report key 'root'")
        host = doc["host"]
        check_types(host, _HOST_TYPES, "host", required=("hostname", "boot_id"))
        sources = host.get("sources", {})
        if not all(isinstance(v, str) for v in sources.values()):
            raise ValueError("host sources hold a non-string")
        identity = HostIdentity(
            host["hostname"],
            host.get("machine_id"),
            host["boot_id"],
            tuple(sorted(sources.items())),
        )
        tree = None
        if doc["tree"] is not None:
            t = doc["tree"]
            check_types(t, _TREE_TYPES, "tree", tuple(_TREE_TYPES), {"differs_total": 0})
            if not _IDENTITY.fullmatch(t["identity"]):
                raise ValueError(f"tree key 'identity' {t['identity']!r} is not blake3:<hex>")
            tree = TreeState(
                t["against"],
                t["identity"],
                _strings(t["differs"], "differs"),
                t["differs_total"],
                _strings(t["packages"], "packages"),
                _strings(t["ignored"], "ignored"),
            )
            if tree.differs_total < len(tree.differs) or t["matches"] != tree.matches:
                raise ValueError("tree: matches, differs and differs_total disagree")
    except (TypeError, ValueError) as exc:
        raise BadInput(name, f"malformed host report: {exc}") from None
    snap = Snapshot.from_json(doc["snapshot"], name)
    return HostReport(snap, identity, doc["root"], tree, doc["redacted"])


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def read_document(path: str, max_bytes: int = MAX_REPORT_BYTES) -> Any:
    """The JSON document in a report or snapshot file (plain, or zstd-compressed),
    at most `max_bytes` of JSON; too large, not a regular file, unreadable or not JSON:
    `BadInput`."""
    try:
        # a FIFO or device among the reports: refused unopened (opening one may block)
        with open(open_regular_file(path), "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise BadInput(path, f"too large for a report: {size} bytes (at most {max_bytes})")
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise BadInput(path, f"not readable: {exc.strerror or exc}") from None
    if data.startswith(_ZSTD_MAGIC):
        import io

        import zstandard

        try:
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
                data = reader.read(max_bytes + 1)
        except zstandard.ZstdError as exc:
            raise BadInput(path, f"not a readable zstd stream: {exc}") from None
    if len(data) > max_bytes:
        raise BadInput(path, f"too large for a report (at most {max_bytes} bytes of JSON)")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise BadInput(path, f"not JSON: {exc}") from None


def load_host(path: str, max_bytes: int = MAX_REPORT_BYTES) -> tuple[Snapshot, HostReport | None]:
    """A saved snapshot or a host report, read as untrusted input: the snapshot, and the
    report when it is one. Too large, unreadable, not JSON or malformed: `BadInput`."""
    doc = read_document(path, max_bytes)
    if isinstance(doc, dict) and doc.get("schema") == SNAPSHOT_SCHEMA:
        return Snapshot.from_json(doc, path), None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise BadInput(path, f"neither an {SNAPSHOT_SCHEMA} nor an {SCHEMA} document")
    report = from_json(doc, path)
    return report.snapshot, report


def _read_machine_id(root: str) -> str | None:
    """/etc/machine-id inside `root` (its symlinks resolved there), or None."""
    from imgdiff.fs.rootfs import RootFS

    try:
        with RootFS(root) as fs:
            data = fs.read("/etc/machine-id", limit=256)
    except OSError:
        return None
    text = data.decode("ascii", "replace").strip() if data else ""
    return text or None

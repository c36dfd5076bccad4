"""OCI image layouts and `docker save` archives: layers applied in order, whiteouts honoured.

Every blob is checked against its content address (sha256 and size) while it is read,
and a docker-save layer against its config's diff_id (sha256 uncompressed); a mismatch is
`BadInput`. Layers are streamed once each; whiteouts (`.wh.NAME`) remove a
path and everything under it from the lower layers, an opaque marker (`.wh..wh..opq`)
empties its directory of lower-layer content. A whiteout naming `.`, `..` or the root is
hostile and refused. Nothing is extracted to disk. A blob stored as a sparse member of
an archive is read as its logical content, holes as zeros.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import os
import platform
import posixpath
import tempfile
from typing import Any, BinaryIO

import attrs

from imgdiff.errors import BadInput, LimitExceeded, Unsupported
from imgdiff.fs.inputs import open_regular_file
from imgdiff.image._extract import Extraction, Member
from imgdiff.image._stream import Stream, sniff_compression
from imgdiff.image._tar import TarReader
from imgdiff.image.base import Capture, Image, Limits, ReadResult
from imgdiff.model import EntryType

_WH = ".wh."
_OPAQUE = ".wh..wh..opq"
_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
_JSON_MAX = 16 << 20
_REF = "org.opencontainers.image.ref.name"
_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


class _Window(io.RawIOBase):
    """A read-only view of a file's bytes, hashing what is read: `size` bytes at `offset`,
    or a sparse tar member's logical content (`segments`: (offset, length) in the member,
    stored back to back from `offset`; the holes between them read as zeros, as
    extracting the member would leave them)."""

    def __init__(
        self,
        fh: BinaryIO,
        offset: int,
        size: int,
        name: str,
        segments: list[tuple[int, int]] | None = None,
    ) -> None:
        super().__init__()
        self._fh, self._size, self.name = fh, size, name
        self._extents = _extents(offset, size, segments)  # (start, length, stored or -1)
        self._starts = [start for start, _, _ in self._extents]
        self._pos = 0
        self._sha = hashlib.sha256()
        self._hashed = 0  # bytes hashed so far, in order (re-reads after seek(0) are not)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        # a reader reads on rather than seeking past member data, so every byte is hashed
        # in order, once, and `hexdigest` has nothing left to read again
        return False

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, min(self._size, base + pos))
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._size - self._pos
        end = min(self._size, self._pos + n)
        parts = []
        pos = self._pos
        i = bisect.bisect_right(self._starts, pos) - 1
        while pos < end:
            start, length, stored = self._extents[i]
            take = min(end, start + length) - pos
            if stored < 0:
                parts.append(bytes(take))
            else:
                self._fh.seek(stored + pos - start)
                data = self._fh.read(take)
                parts.append(data)
                if len(data) < take:
                    pos += len(data)
                    break
            pos += take
            i += 1
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if self._pos <= self._hashed < self._pos + len(data):
            self._sha.update(data[self._hashed - self._pos :])
            self._hashed = self._pos + len(data)
        self._pos = pos
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def hexdigest(self) -> str:
        """sha256 of the whole window; reads whatever was skipped."""
        if self._hashed < self._size:
            self.seek(self._hashed)
            while self.read(1 << 20):
                pass
        return self._sha.hexdigest()


def _extents(
    offset: int, size: int, segments: list[tuple[int, int]] | None
) -> list[tuple[int, int, int]]:
    """(start, length, where stored or -1 for a hole) covering `size` bytes in order."""
    if segments is None:
        return [(0, size, offset)] if size else []
    out = []
    at = 0
    for start, length in segments:
        if start > at:
            out.append((at, start - at, -1))
        out.append((start, length, offset))
        offset += length
        at = start + length
    if size > at:
        out.append((at, size - at, -1))
    return out


class _BlobStore:
    """Blobs of an OCI layout, in a directory or inside an uncompressed tar archive."""

    def __init__(self, path: str, limits: Limits) -> None:
        self.path = path
        self.limits = limits
        # blob by name: (offset, size, sparse segments or None), as `_Window` reads them
        self._members: dict[str, tuple[int, int, list[tuple[int, int]] | None]] | None = None
        self._links: dict[str, str] = {}
        self._fh: BinaryIO | None = None
        if os.path.isfile(path):
            self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
            compression = sniff_compression(self._fh.read(8))
            self._fh.seek(0)
            if compression is not None:
                with self._fh:
                    self._fh = _spooled(self._fh, path, limits, compression)
            reader = TarReader(self._fh, path, limits, ReadResult("index"))
            self._members = {}
            for m in reader.members(hash_content=False):
                if m.type is EntryType.FILE and not m.hardlink:
                    segments = m.sparse.segments if m.sparse is not None else None
                    self._members[m.name] = (m.offset, m.size, segments)
                elif (m.type is EntryType.SYMLINK or m.hardlink) and m.linkname is not None:
                    # docker save links each <id>/layer.tar to a shared blob
                    if m.hardlink:
                        self._links[m.name] = m.linkname
                    else:
                        base = m.name.rpartition("/")[0]
                        self._links[m.name] = posixpath.normpath(
                            posixpath.join(base or "/", m.linkname)
                        )

    def open(self, rel: str) -> _Window:
        """The file at `rel` (layout-relative) as a window; BadInput if missing or unsafe."""
        parts = [p for p in rel.split("/") if p and p != "."]
        if not parts or ".." in parts:
            raise BadInput(self.path, "blob path escapes the layout", rel)
        if self._members is not None:
            assert self._fh is not None
            key = "/" + "/".join(parts)
            for _ in range(8):  # bounded: a link cycle is as bad as a missing blob
                if key not in self._links:
                    break
                key = self._links[key]
            hit = self._members.get(key)
            if hit is None or not key.startswith("/"):
                raise BadInput(self.path, "missing from the archive", rel)
            return _Window(self._fh, hit[0], hit[1], f"{self.path}:{rel}", hit[2])
        full = os.path.join(self.path, *parts)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            raise BadInput(self.path, f"cannot open: {exc.strerror}", rel) from None
        fh = os.fdopen(fd, "rb")
        size = os.fstat(fd).st_size
        return _Window(fh, 0, size, full)

    def exists(self, rel: str) -> bool:
        if self._members is not None:
            key = "/" + rel.strip("/")
            return key in self._members or key in self._links
        return os.path.isfile(os.path.join(self.path, rel))

    def json(self, rel: str, digest: str | None = None, size: int | None = None) -> Any:
        win = self.open(rel)
        if win._size > _JSON_MAX:
            raise LimitExceeded(self.path, "JSON document too large", rel)
        data = win.read()
        if digest is not None:
            _check(self.path, rel, win, digest, size)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise BadInput(self.path, f"malformed JSON: {exc}", rel) from None

    def blob(self, descriptor: Any) -> tuple[str, str, int]:
        if not isinstance(descriptor, dict) or not isinstance(descriptor.get("digest"), str):
            raise BadInput(self.path, "malformed descriptor")
        algo, _, hexd = descriptor["digest"].partition(":")
        if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
            raise BadInput(self.path, f"unsupported or malformed digest {descriptor['digest']!r}")
        return f"blobs/sha256/{hexd}", descriptor["digest"], int(descriptor.get("size", -1))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def _spooled(fh: BinaryIO, path: str, limits: Limits, compression: str) -> BinaryIO:
    """A compressed archive decompressed (verified, bounded by `limits`) into an unnamed
    temporary file, gone once closed: blobs are read at their offsets, and `manifest.json`
    comes after the layers it orders."""
    try:
        out = tempfile.TemporaryFile(prefix="imgdiff-")  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise BadInput(path, f"cannot make a temporary file: {exc.strerror}") from None
    try:
        stream = Stream(fh, path, limits, compression)
        for piece in stream.chunks(limits.max_total_bytes + 1):
            out.write(piece)
        out.seek(0)
    except OSError as exc:
        out.close()
        raise BadInput(path, f"cannot decompress to a temporary file: {exc.strerror}") from None
    except BaseException:
        out.close()
        raise
    return out


def _check(src: str, rel: str, win: _Window, digest: str, size: int | None) -> None:
    if size is not None and size >= 0 and win._size != size:
        raise BadInput(src, f"blob size {win._size} does not match descriptor size {size}", rel)
    if "sha256:" + win.hexdigest() != digest:
        raise BadInput(src, "blob digest mismatch (corrupt or tampered)", rel)


def _strings(value: Any) -> list[str]:
    """The strings of a JSON list; none if it is not one."""
    return [x for x in value if isinstance(x, str)] if isinstance(value, list) else []


def is_container_archive(path: str) -> bool:
    """True if a tar (plain or compressed) holds an OCI layout or a docker-save manifest.json
    among its first members."""
    try:
        with open(open_regular_file(path), "rb") as fh:  # never a FIFO or a device
            reader = TarReader(fh, path, Limits(), ReadResult("index"))
            for i, m in enumerate(reader.members(hash_content=False)):
                if m.name in ("/oci-layout", "/manifest.json"):
                    return True
                if i > 64:
                    return False
    except (BadInput, Unsupported, OSError):
        return False
    return False


@attrs.frozen
class _Layer:
    rel: str
    digest: str | None  # of the blob as stored (OCI descriptors)
    size: int | None
    diff_id: str | None = None  # of the uncompressed layer (docker-save: the config's)


class OciImage(Image):
    """An OCI image layout (directory or tar) or a `docker save` archive."""

    format = "oci"

    def __init__(
        self,
        path: str,
        *,
        limits: Limits | None = None,
        ref: str | None = None,
        platform_: str | None = None,
    ) -> None:
        super().__init__(path, limits=limits)
        self.ref = ref
        self._platform = platform_ or f"linux/{_ARCH.get(platform.machine(), platform.machine())}"

    def _layers(self, store: _BlobStore, result: ReadResult) -> list[_Layer]:
        if store.exists("index.json"):
            result.format = "oci" if store._members is None else "oci-archive"
            return self._oci_layers(store)
        if store.exists("manifest.json"):
            result.format = "docker-archive"
            doc = store.json("manifest.json")
            if isinstance(doc, list) and self.ref is not None:  # chosen by one of its RepoTags
                doc = [d for d in doc if isinstance(d, dict) and self._tagged(d.get("RepoTags"))]
                if not doc:
                    raise BadInput(self.path, f"no image tagged {self.ref!r} in manifest.json")
            if isinstance(doc, list) and len(doc) > 1 and self.ref is None:
                tags = [t for d in doc if isinstance(d, dict) for t in _strings(d.get("RepoTags"))]
                if tags:  # as for an OCI index: say what to choose from
                    raise BadInput(
                        self.path, f"several images: name one as PATH:TAG ({', '.join(tags)})"
                    )
            if not isinstance(doc, list) or len(doc) != 1 or not isinstance(doc[0], dict):
                raise BadInput(self.path, "manifest.json must describe exactly one image")
            layers = doc[0].get("Layers")
            if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
                raise BadInput(self.path, "manifest.json has no Layers list")
            diff_ids = self._diff_ids(store, doc[0].get("Config"), len(layers))
            return [_Layer(x, None, None, d) for x, d in zip(layers, diff_ids, strict=True)]
        raise BadInput(self.path, "neither index.json nor manifest.json: not a container image")

    def _diff_ids(self, store: _BlobStore, config: Any, count: int) -> list[str]:
        """The config's `rootfs.diff_ids`: the sha256 of each layer uncompressed, which
        docker load and skopeo check each layer against (manifest.json has no digests)."""
        if not isinstance(config, str):
            raise BadInput(self.path, "manifest.json names no Config")
        doc = store.json(config)
        rootfs = doc.get("rootfs") if isinstance(doc, dict) else None
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or len(diff_ids) != count:
            raise BadInput(self.path, "config's rootfs.diff_ids do not list every layer", config)
        for diff_id in diff_ids:
            store.blob({"digest": diff_id})  # sha256:<64 hex>, or bad input naming it
        return diff_ids

    def _tagged(self, tags: Any) -> bool:
        """True if docker-save `RepoTags` name `self.ref`: whole ("docker.io/library/img:v2"),
        without the registry's part ("img:v2"), or its tag alone ("v2")."""
        if not isinstance(tags, list):
            return False
        ends = (f":{self.ref}", f"/{self.ref}")
        return any(isinstance(t, str) and (t == self.ref or t.endswith(ends)) for t in tags)

    def _oci_layers(self, store: _BlobStore) -> list[_Layer]:
        doc = store.json("index.json")
        for _ in range(8):  # nested indexes, bounded
            manifests = doc.get("manifests") if isinstance(doc, dict) else None
            if not isinstance(manifests, list) or not manifests:
                raise BadInput(self.path, "index has no manifests")
            chosen = self._choose(manifests)
            rel, digest, size = store.blob(chosen)
            doc = store.json(rel, digest, size)
            if (
                chosen.get("mediaType") not in _INDEX_TYPES
                and doc.get("mediaType") not in _INDEX_TYPES
            ):
                break
        else:
            raise BadInput(self.path, "image indexes nested too deep")
        layers = doc.get("layers") if isinstance(doc, dict) else None
        if not isinstance(layers, list):
            raise BadInput(self.path, "image manifest has no layers list")
        out = []
        for desc in layers:
            rel, digest, size = store.blob(desc)
            out.append(_Layer(rel, digest, size))
        return out

    def _choose(self, manifests: list[Any]) -> Any:
        if self.ref is not None:
            for m in manifests:
                notes = m.get("annotations") if isinstance(m, dict) else None
                if isinstance(notes, dict) and notes.get(_REF) == self.ref:
                    self.ref = None  # found: nested indexes are chosen by platform
                    return m
            raise BadInput(self.path, f"no image tagged {self.ref!r} in the index")
        if len(manifests) == 1:
            return manifests[0]
        refs = [m.get("annotations", {}).get(_REF) for m in manifests if isinstance(m, dict)]
        if all(refs) and len(set(refs)) == len(refs):
            raise BadInput(
                self.path, f"several images: name one as PATH:REF ({', '.join(map(str, refs))})"
            )
        want_os, _, want_arch = self._platform.partition("/")
        for m in manifests:
            plat = m.get("platform") if isinstance(m, dict) else None
            if (
                isinstance(plat, dict)
                and plat.get("os") == want_os
                and plat.get("architecture") == want_arch
            ):
                return m
        raise BadInput(
            self.path, f"index lists {len(manifests)} images and none for {self._platform}"
        )

    def _read(self, result: ReadResult, capture: Capture | None) -> None:
        store = _BlobStore(self.path, self.limits)
        try:
            layers = self._layers(store, result)
            if len(layers) > self.limits.max_layers:
                raise LimitExceeded(self.path, f"more than {self.limits.max_layers} layers")
            tree = Extraction(self.path, result, layered=True)
            for layer in layers:
                win = store.open(layer.rel)
                name = f"{self.path}:{layer.rel}"
                # a compressed layer's diff_id is of what it decompresses to, hashed on the
                # way past; a plain one's is the blob's own digest, which `win` keeps
                unpacked = None
                if layer.diff_id is not None and sniff_compression(win.read(8)) is not None:
                    unpacked = hashlib.sha256()
                win.seek(0)
                reader = TarReader(win, name, self.limits, result, capture, unpacked)  # type: ignore[arg-type]
                tree.src, tree.charge = name, reader.charge_names
                self._apply(reader, tree, name)
                if result.progress is not None:  # a layer at a time: entries so far
                    result.progress(len(tree.entries), 0)
                if layer.digest is not None:
                    _check(self.path, layer.rel, win, layer.digest, layer.size)
                if layer.diff_id is not None:
                    got = (unpacked or win).hexdigest()
                    if "sha256:" + got != layer.diff_id:
                        raise BadInput(
                            self.path,
                            "layer does not match its diff_id (corrupt or tampered)",
                            layer.rel,
                        )
            result.store = tree.entries
        finally:
            store.close()

    @staticmethod
    def _apply(reader: TarReader, tree: Extraction, name: str) -> None:
        """One layer: its whiteouts remove from the layers below, then its members apply."""
        members: list[Member] = []
        gone: set[str] = set()  # whiteouts: the path and everything under it
        emptied: set[str] = set()  # opaque directories: everything under them
        for m in reader.members():
            parent, _, leaf = m.name.rpartition("/")
            if not leaf.startswith(_WH):
                members.append(m)
            elif leaf == _OPAQUE:
                emptied.add(parent or "/")
            else:
                victim = leaf[len(_WH) :]
                if victim in ("", ".", "..") or victim.startswith(_WH):
                    raise BadInput(name, "whiteout names no file inside the image", m.name)
                gone.add(f"{parent}/{victim}")
        tree.remove(gone, emptied)
        for m in members:
            tree.add(m)


__all__ = ["OciImage", "is_container_archive"]

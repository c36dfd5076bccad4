"""Content digests: BLAKE3, written as ``"blake3:<hex>"``.

BLAKE3 hashes at ~4.8 GB/s per core on the development machines (SHA-256 with SHA-NI:
1.8 GB/s), so hashing costs less than reading the page cache. It is a cryptographic hash,
so two different files never compare equal by accident or by construction.
"""

from __future__ import annotations

import os

import blake3

PREFIX = "blake3:"
_WHOLE_READ = 8 << 20  # files up to this size are read with one syscall
_CHUNK = 1 << 20


def new_hasher() -> blake3.blake3:
    """A fresh incremental hasher for streamed content."""
    return blake3.blake3()


def finish(hasher: blake3.blake3) -> str:
    """The digest string of a finished hasher."""
    return PREFIX + str(hasher.hexdigest())


def of_bytes(data: bytes) -> str:
    """Digest of an in-memory byte string."""
    return PREFIX + str(blake3.blake3(data).hexdigest())


def of_fd(fd: int, size: int) -> tuple[str, int]:
    """Digest of an open file read from offset 0; returns (digest, bytes read).

    Memory stays bounded for large files; callers compare the byte count with the
    size they expected to detect files that changed while being read.
    """
    if size <= _WHOLE_READ:
        data = os.pread(fd, size + 1, 0)
        return of_bytes(data), len(data)
    hasher = blake3.blake3()
    offset = 0
    while True:
        chunk = os.pread(fd, _CHUNK, offset)
        if not chunk:
            break
        hasher.update(chunk)
        offset += len(chunk)
    return finish(hasher), offset

"""Image readers: directory, tar (plain/gz/bz2/xz/zst), OCI layout, docker-save archive.

`open_image` recognises the input from its content (magic bytes, `oci-layout`,
`manifest.json`), not from its name, and returns a reader whose `entries()` yields the
same `Entry` stream whatever the format.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from imgdiff.errors import BadInput
from imgdiff.fs.inputs import open_regular_file
from imgdiff.image._dir import DirImage
from imgdiff.image.base import Image, Limits

if TYPE_CHECKING:
    from imgdiff.image._tar import TarImage


def __getattr__(name: str) -> Any:
    # the tar reader loads when first used: a diff of two directories never needs it
    if name == "TarImage":
        from imgdiff.image._tar import TarImage

        return TarImage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _archive_and_ref(path: str) -> tuple[str, str] | None:
    """("ARCHIVE", "REF") when `path` is a container archive's path, ":" and a reference
    (which may hold ":" itself, as docker's "img:v2" does); None otherwise."""
    at = path.find(":")
    while at > 0:
        archive, ref = path[:at], path[at + 1 :]
        if ref and os.path.isfile(archive):
            from imgdiff.image._oci import is_container_archive

            return (archive, ref) if is_container_archive(archive) else None
        at = path.find(":", at + 1)
    return None


def open_image(path: str, *, limits: Limits | None = None) -> Image:
    """A reader for the image at `path`, chosen by looking at its content."""
    try:
        st = os.stat(path)
    except OSError as exc:
        # "LAYOUT:TAG" or "ARCHIVE:TAG", as skopeo spells them; a path that exists as given
        # never gets here
        layout, sep, ref = path.rpartition(":")
        if sep and ref and os.path.isfile(os.path.join(layout, "oci-layout")):
            from imgdiff.image._oci import OciImage

            return OciImage(layout, limits=limits, ref=ref)
        archive = _archive_and_ref(path)
        if archive is not None:
            from imgdiff.image._oci import OciImage

            return OciImage(archive[0], limits=limits, ref=archive[1])
        raise BadInput(path, f"cannot open: {exc.strerror}") from None
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "oci-layout")):
            from imgdiff.image._oci import OciImage

            return OciImage(path, limits=limits)
        return DirImage(path, limits=limits)
    if not os.path.isfile(path):
        raise BadInput(path, "neither a directory nor a regular file")
    try:
        with open(open_regular_file(path), "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise BadInput(path, f"cannot read: {exc.strerror}") from None
    if st.st_size == 0:
        raise BadInput(path, "empty file")
    from imgdiff.image._stream import sniff_compression
    from imgdiff.image._tar import TarImage
    from imgdiff.image._tarheader import is_tar_header

    # a tar (an empty one is all zero blocks), compressed or not, may hold a container image
    if sniff_compression(head) is not None or is_tar_header(head):
        from imgdiff.image._oci import OciImage, is_container_archive

        if is_container_archive(path):
            return OciImage(path, limits=limits)
        return TarImage(path, limits=limits)
    raise BadInput(
        path,
        "not an image: expected a directory, a tar (plain, gzip, bzip2, xz or zstd), an OCI "
        "layout or archive, a docker-save archive, a delta archive or a saved manifest",
    )


__all__ = ["DirImage", "Image", "Limits", "TarImage", "open_image"]

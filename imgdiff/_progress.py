"""Counts of a long read that a display can poll: entries read and archive bytes consumed
per image, kept in an anonymous shared mapping so a forked reader's counts reach the parent.

Each image's slots have one writer (the process reading that image), so no lock is
needed; a reader only adds, a display only reads. Nothing here draws or prints.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable

_SLOT = struct.Struct("<qqq")  # entries read, archive bytes consumed, archive size (0: none)

ReadProgress = Callable[[int, int], None]
"""Called by a reader now and then with (entries read so far, archive bytes consumed)."""


class ReadCounts:
    """Progress of reading `images` images, shared with forked readers."""

    def __init__(self, images: int = 2) -> None:
        self.images = images
        self._map = mmap.mmap(-1, _SLOT.size * images)  # MAP_SHARED|MAP_ANONYMOUS

    def reporter(self, image: int, size: int) -> ReadProgress:
        """The callback for reading image number `image` (an archive of `size` bytes; 0
        for a directory, whose size is not known before it is walked)."""
        offset = image * _SLOT.size
        _SLOT.pack_into(self._map, offset, 0, 0, size)

        def report(entries: int, consumed: int) -> None:
            _SLOT.pack_into(self._map, offset, entries, consumed, size)

        return report

    def totals(self) -> tuple[int, int, int]:
        """(entries read, archive bytes consumed, archive bytes in all) over every image;
        bytes count only archives, so a directory being walked adds entries only."""
        entries = consumed = size = 0
        for image in range(self.images):
            e, c, s = _SLOT.unpack_from(self._map, image * _SLOT.size)
            entries, consumed, size = entries + e, consumed + c, size + s
        return entries, consumed, size

"""What a path names in the images of an update, resolved through their own symlinks.

This module owns `ImagePaths`: for a path as a program or unit spells it
(`/lib/x86_64-linux-gnu/libc.so.6` on a usr-merged root, `/opt/app/current/bin/app`), the
paths a change to which changes what it names: the path itself, every symlink resolving
it crosses, and the file it leads to, in OLD and in NEW. Resolution follows
`imgdiff.fs.walk` over the images' entries (manifests: no file is opened). It must not
decide what a change means.
"""

from __future__ import annotations

from collections.abc import Mapping

from imgdiff.fs.paths import child, normalise
from imgdiff.fs.walk import walk
from imgdiff.model import Entry, EntryType


class ImagePaths:
    """Paths resolved inside each of a few images' entries (OLD's, then NEW's)."""

    def __init__(self, *images: Mapping[str, Entry]) -> None:
        # only symlinks decide a resolution: a few thousand targets an image, small
        # enough to ship to the fleet's workers with the rest of the shared context
        self.images = tuple(
            {p: e.target for p, e in entries.items() if e.type is EntryType.SYMLINK and e.target}
            for entries in images
        )
        self._memo: dict[str, tuple[str, ...]] = {}

    def spellings(self, path: str) -> tuple[str, ...]:
        """`path`, the symlinks crossed resolving it and where it leads, in each image.

        A path ending in `/` stands for the tree below it: its resolved forms keep the
        slash (the links crossed do not). A symlink loop adds nothing for that image.
        """
        known = self._memo.get(path)
        if known is not None:
            return known
        tree = path.endswith("/")
        found = dict.fromkeys([path])
        for entries in self.images:
            try:
                crossed, real = _resolve(entries, normalise(path))
            except OSError:
                continue
            found.update(dict.fromkeys(crossed))
            found[real.rstrip("/") + "/" if tree else real] = None
        result = self._memo[path] = tuple(found)
        return result


def _resolve(links: Mapping[str, str], path: str) -> tuple[list[str], str]:
    """The symlinks `path` crosses among `links` (path -> target; in order) and the path
    it resolves to."""
    crossed: list[str] = []

    def readlink(parent: str, name: str, _last: bool) -> str | None:
        at = child(parent, name)
        target = links.get(at)
        if target is not None:
            crossed.append(at)
        return target

    return crossed, walk(path, readlink)

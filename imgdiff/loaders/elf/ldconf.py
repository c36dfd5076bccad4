"""Where the loader of a root looks beyond what each object says: ld.so.conf and the cache.

This module owns `load_loader_config`: `/etc/ld.so.conf` read as `ldconfig` reads it (one
directory per line, `include` globs relative to the including file, `#` comments, include
loops and bounds), with the root's `/etc/ld.so.cache` parsed beside it into a
`LoaderConfig`. It reads only through `RootFS` and must never raise for what those files
contain: what cannot be read becomes a note.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import attrs

from imgdiff.errors import BadInput, escape_path
from imgdiff.fs.paths import child
from imgdiff.fs.rootfs import RootFS
from imgdiff.loaders.elf.ldcache import LD_SO_CACHE, MAX_CACHE_BYTES, CacheEntry, parse_ld_so_cache

# A configuration is a handful of files naming a few dozen directories; far beyond is hostile.
MAX_NOTES: Final = 256  # notes kept from reading one configuration
MAX_ENTRIES_PER_SONAME: Final = 64  # cache entries kept per soname (ldconfig writes 1-4)
MAX_CONF_FILES: Final = 256  # ld.so.conf files read, includes together
MAX_CONF_DEPTH: Final = 8  # nesting of `include`
MAX_CONF_BYTES: Final = 1 << 20  # one ld.so.conf file
MAX_CONF_DIRS: Final = 4096  # directories taken from the configuration
MAX_GLOB_MATCHES: Final = 1024  # files one `include` pattern may name
LD_SO_CONF: Final = "/etc/ld.so.conf"


class _ConfReader:
    """ldconfig's reading of ld.so.conf: one directory per line, `include` globs, `#`."""

    def __init__(self, fs: RootFS) -> None:
        self.fs = fs
        self.dirs: dict[str, None] = {}
        self.notes: list[str] = []
        self.seen: set[tuple[int, int]] = set()
        self.full = False  # MAX_CONF_DIRS reached: the rest is not read

    def note(self, text: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)

    def read(self, path: str, depth: int) -> None:
        if self.full:
            return
        st = self.fs.stat(path)
        if st is None:
            if depth:
                self.note(f"{escape_path(path)}: vanished while reading includes")
            return
        identity = (st.st_dev, st.st_ino)  # one file under any spelling or symlink
        if identity in self.seen:
            self.note(f"{escape_path(path)}: included again (include loop): skipped")
            return
        if depth > MAX_CONF_DEPTH or len(self.seen) >= MAX_CONF_FILES:
            self.note(f"{escape_path(path)}: include nesting or count limit reached")
            return
        self.seen.add(identity)
        data = self.fs.read(path, limit=MAX_CONF_BYTES)
        if data is None:
            self.note(f"{escape_path(path)}: unreadable, not a file or too large")
            return
        text = data.decode("utf-8", "surrogateescape")
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            words = line.split()
            if words[0] == "include" and len(words) > 1:
                for word in words[1:]:
                    # a relative pattern is relative to the including file's directory
                    pattern = (
                        word
                        if word.startswith("/")
                        else child(path.rpartition("/")[0] or "/", word)
                    )
                    for match in self.fs.glob(pattern, MAX_GLOB_MATCHES):
                        self.read(match, depth + 1)
            elif words[0] == "hwcap":  # obsolete since glibc 2.37, never a directory
                continue
            else:
                # ldconfig: an '=TYPE' suffix names a library type; trailing '/' dropped
                directory = line.partition("=")[0].rstrip()
                directory = directory.rstrip("/") or "/"
                where = f"{escape_path(path)}:{lineno}"
                if not directory.startswith("/"):
                    self.note(f"{where}: relative directory ignored")
                elif directory not in self.dirs:
                    if len(self.dirs) >= MAX_CONF_DIRS:
                        self.note(f"{where}: more than {MAX_CONF_DIRS} directories; rest unread")
                        self.full = True
                        return
                    self.dirs[directory] = None


@attrs.frozen(slots=True)
class LoaderConfig:
    """Where the loader of one root looks for libraries, beyond what each object says.

    `cache` holds the entries of the root's `/etc/ld.so.cache`, or None when it is absent
    or unparseable. glibc consults the cache and then its built-in directories, never
    ld.so.conf itself; `elf_closure` does the same when the cache is there. Without a
    usable cache it searches `conf_dirs` (ld.so.conf and its includes, in order) where
    the cache lookup would be, i.e. as if `ldconfig` had just been run: package
    installers run it, and it is the conservative reading for "what will load this".
    `notes` says what could not be read.
    """

    conf_dirs: tuple[str, ...] = ()
    cache: tuple[CacheEntry, ...] | None = None
    notes: tuple[str, ...] = ()
    _by_key: Mapping[str, tuple[CacheEntry, ...]] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        index: dict[str, list[CacheEntry]] = {}
        for entry in self.cache or ():
            entries = index.setdefault(entry.key, [])
            if len(entries) < MAX_ENTRIES_PER_SONAME:
                entries.append(entry)
        frozen = {key: tuple(entries) for key, entries in index.items()}
        object.__setattr__(self, "_by_key", MappingProxyType(frozen))

    def cache_entries(self, soname: str) -> tuple[CacheEntry, ...]:
        """The cache entries for `soname`, in file order (empty without a cache)."""
        return self._by_key.get(soname, ())


def load_loader_config(fs: RootFS) -> LoaderConfig:
    """Read `/etc/ld.so.conf` (with includes) and `/etc/ld.so.cache` of the root `fs`.

    Never raises for their content: an include loop, an unreadable file or a corrupt
    cache becomes a note (a corrupt cache also means `cache` is None).
    """
    reader = _ConfReader(fs)
    reader.read(LD_SO_CONF, 0)
    notes = reader.notes
    cache = None
    data = fs.read(LD_SO_CACHE, limit=MAX_CACHE_BYTES)
    if data is not None:
        try:
            cache = parse_ld_so_cache(data)
        except BadInput as exc:
            notes.append(f"{exc}; searching the ld.so.conf directories instead")
    elif fs.stat(LD_SO_CACHE) is not None:
        notes.append(f"{LD_SO_CACHE}: unreadable, not a file or too large; not used")
    return LoaderConfig(conf_dirs=tuple(reader.dirs), cache=cache, notes=tuple(notes))

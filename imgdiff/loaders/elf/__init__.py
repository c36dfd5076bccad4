"""glibc's dynamic loader, emulated inside a root: the ELF dependency closure of a program.

This package owns answering "which files does `ld.so` map to start this program"; the
submodules split it as the loader's inputs do: the ABI tables of each architecture
(`abi`), `/etc/ld.so.cache` (`ldcache`), `/etc/ld.so.conf` and its includes (`ldconf`),
and the search itself (`closure`). This module only exposes their public names; it must
hold no logic.
"""

from imgdiff.loaders.elf.abi import default_search_dirs
from imgdiff.loaders.elf.closure import (
    ElfClosure,
    FactsCache,
    ObjectFacts,
    elf_closure,
    reverse_index,
)
from imgdiff.loaders.elf.ldcache import CacheEntry, parse_ld_so_cache
from imgdiff.loaders.elf.ldconf import LoaderConfig, load_loader_config

__all__ = [
    "CacheEntry",
    "ElfClosure",
    "FactsCache",
    "LoaderConfig",
    "ObjectFacts",
    "default_search_dirs",
    "elf_closure",
    "load_loader_config",
    "parse_ld_so_cache",
    "reverse_index",
]

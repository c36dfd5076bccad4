"""The runtime view: which processes run, and exactly which files each one uses.

`Snapshot.capture()` reads /proc (see `_procfs`, the only module that parses it);
`stale()` tells which processes still use code or configuration that changed on disk.

Names load on first use: `_procfs` alone (what `imgdiff stale` needs to see that no
process runs in a root) must not pull in the record classes and the loaders.
"""

from __future__ import annotations

import importlib
import sys
import types

from imgdiff.errors import AccessDenied, NoSuchProcess

TYPE_CHECKING = False
if TYPE_CHECKING:
    from imgdiff.runtime.snapshot import FileUse, Gap, Process, Snapshot
    from imgdiff.runtime.stale import stale

_LAZY = {
    "FileUse": "imgdiff.runtime.snapshot",
    "Gap": "imgdiff.runtime.snapshot",
    "Process": "imgdiff.runtime.snapshot",
    "Snapshot": "imgdiff.runtime.snapshot",
    "stale": "imgdiff.runtime.stale",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """`imgdiff.runtime.stale` names the function, as it did when this package imported it
    eagerly: importing the submodule of that name does not replace it."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "stale" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "AccessDenied",
    "FileUse",
    "Gap",
    "NoSuchProcess",
    "Process",
    "Snapshot",
    "stale",
]

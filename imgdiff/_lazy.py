"""Lazy package namespaces: names that load their module on first use.

`imgdiff` and `imgdiff.runtime` re-export names from their submodules without importing
them, so that a command pays only for the stages it runs.
"""

from __future__ import annotations

import importlib
import sys
import types

TYPE_CHECKING = False  # typing itself is not imported: every command pays for this
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


def install(package: str, table: Mapping[str, str]) -> Callable[[str], object]:
    """Make `package` resolve each name in `table` (name -> module) on first access.

    Returns the module-level `__getattr__`. The package's class is swapped so that a
    submodule sharing a lazy name (`imgdiff.verify`, `imgdiff.runtime.stale`) never
    replaces the function when the import system sets it as the package's attribute.
    """
    namespace = sys.modules[package]

    def getattr_(name: str) -> object:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(namespace, name, value)
        return value

    class _Package(types.ModuleType):
        def __setattr__(self, name: str, value: object) -> None:
            if name in table and isinstance(value, types.ModuleType):
                return
            super().__setattr__(name, value)

    namespace.__class__ = _Package
    return getattr_

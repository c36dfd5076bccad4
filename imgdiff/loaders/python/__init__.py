"""CPython's import system, emulated inside a root: the static import graph of a program.

This package owns answering "which files would this Python command line import" for
processes that were not traced; the submodules split it as CPython does: the command line
(`cmdline`), the interpreter and its default `sys.path` (`interpreter`), the lexical
source scanner (`scan`) and the finder walking imports (`finder`). This module only
exposes their public names; it must hold no logic.
"""

from imgdiff.loaders.python.cmdline import Invocation, RunMode, parse_cmdline
from imgdiff.loaders.python.finder import (
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MAX_MODULES,
    DEFAULT_TIME_LIMIT,
    VIA,
    ImportCache,
    ImportGraph,
    ProgramGraphs,
    static_imports,
)
from imgdiff.loaders.python.interpreter import Interpreter, find_interpreter, interpreter_paths
from imgdiff.loaders.python.scan import FULL_PARSE_LIMIT, ParseMode

__all__ = [
    "DEFAULT_MAX_FILE_SIZE",
    "DEFAULT_MAX_MODULES",
    "DEFAULT_TIME_LIMIT",
    "FULL_PARSE_LIMIT",
    "VIA",
    "ImportCache",
    "ImportGraph",
    "Interpreter",
    "Invocation",
    "ParseMode",
    "ProgramGraphs",
    "RunMode",
    "find_interpreter",
    "interpreter_paths",
    "parse_cmdline",
    "static_imports",
]

"""Static emulations of program loaders inside a root: what a program would load.

This package owns answering "which files does this program load when it starts" without
running anything: `loaders.elf` emulates glibc's `ld.so` (the ELF dependency closure),
`loaders.python` CPython's import system (the static import graph of an untraced
process). Both read a root only through `imgdiff.fs.RootFS` and cache parsed files by
their identity (`loaders.cache`). They must never execute, import or trust what they
read, nor consult any process environment.
"""

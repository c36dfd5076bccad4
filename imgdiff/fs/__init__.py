"""Paths and files inside a root directory, never leaving it.

This package owns how a path is resolved inside a root: the `openat2` wrappers, the one
symlink walker (for on-disk trees and for manifests alike), the lexical join and
normalisation, and `RootFS`. It must not know what the files mean (images, packages,
programs): callers in `image/`, `packages/` and `loaders/` ask it, and nothing here
imports them.
"""

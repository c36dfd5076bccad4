"""Python import evidence for running services: an opt-in runtime import tracer that spools each
imported module's file (with its identity at import time) per process, and the reader of that
spool (interpreters that were not traced are judged by `imgdiff.loaders.python`). Submodules
are imported explicitly by their users (`imgdiff.trace.spool`, `imgdiff.trace.tracer`, ...) so
that the tracer loaded into a traced program pulls in nothing else; this package imports none
of them.
"""

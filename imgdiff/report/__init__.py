"""Presentation: JSON documents, rich console rendering, progress on stderr.

The model never formats for a screen; these renderers do, side by side.
"""

import os
import sys


def draws_on_stderr(*, quiet: bool = False) -> bool:
    """True when progress and status are drawn on stderr: it is an interactive terminal,
    `CI` is not set and `quiet` is false (the caller can then skip loading rich)."""
    return not quiet and sys.stderr.isatty() and not os.environ.get("CI")

"""imgdiff: what changed between two system images, and what that means for running code.

The public API: read images into a `Manifest`, compare two with `diff` into a `Delta` of
`Change` records. Every record is a frozen attrs class; errors derive from
`ImgdiffError`.
"""

from __future__ import annotations

from imgdiff.delta import compare
from imgdiff.errors import BadInput, ImgdiffError, LimitExceeded, Unsupported
from imgdiff.image import Limits, open_image
from imgdiff.manifest import ImageInfo, Manifest
from imgdiff.model import Aspect, Change, Entry, EntryType, ImageWarning, Status
from imgdiff.pipeline import diff
from imgdiff.results import Delta, DeltaStats

__version__ = "0.1.0"

__all__ = [
    "Aspect",
    "BadInput",
    "Change",
    "Delta",
    "DeltaStats",
    "Entry",
    "EntryType",
    "ImageInfo",
    "ImageWarning",
    "ImgdiffError",
    "LimitExceeded",
    "Limits",
    "Manifest",
    "Status",
    "Unsupported",
    "__version__",
    "compare",
    "diff",
    "open_image",
]

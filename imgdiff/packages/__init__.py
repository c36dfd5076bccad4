"""The package view of images: dpkg, rpm and pip databases read from inside each image.

See `base` for the records; each manager has one reader module.
"""

from imgdiff.packages.base import Package, PackageDB, PathResolver

__all__ = ["Package", "PackageDB", "PathResolver"]

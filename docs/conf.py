"""Sphinx configuration of the imgdiff documentation site and man page.

Build: `python -m sphinx -W -b html docs OUT` (the site), `-b man` (imgdiff.1). Pages are
Markdown (MyST); the CLI reference is generated from the argparse parser (_ext/cliref.py),
the API reference from docstrings, the schema pages from docs/schemas/ (_ext/schemas.py),
and notebooks/*.ipynb (through the docs/notebooks link) are executed by myst-nb.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS / "_ext"), str(DOCS.parent)]  # the extensions; imgdiff from here

import imgdiff  # noqa: E402

project = "imgdiff"
author = "imgdiff developers"
copyright = "imgdiff developers"  # Sphinx's name for it
version = release = imgdiff.__version__
# a fixed date keeps the generated man page byte-for-byte reproducible (tests/test_docs.py)
today = f"imgdiff {release}"

extensions = [
    "myst_nb",  # Markdown pages (myst-parser) and executed notebooks
    "sphinx.ext.autodoc",
    "cliref",  # the CLI reference, from imgdiff.cli's parser
    "schemas",  # JSON schemas and their examples; checks the API pages cover __all__
    "policykeys",  # the policy keys, defaults and meanings from plan.Policy, RolloutPolicy
    "apicover",  # the API pages cover __all__; references resolve to the public names
    "localinks",  # every internal link and anchor of the built HTML leads somewhere
]

exclude_patterns = ["_build", "man", "notebooks/.ipynb_checkpoints", "**/.ipynb_checkpoints"]
nitpicky = True
# backticks in docstrings (`name`) are code, as in the Markdown pages
default_role = "literal"
# option names keep their two hyphens (no en dash), quotes stay straight
smartquotes = False

# MyST: GitHub-style anchors, so `[x](plan.md#policy-toml-every-key-optional)` links work
# both on GitHub and here
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence", "deflist"]


# notebooks: executed at every build, offline (each builds its own small images). Those
# that start the demo's services chroot and make cgroups, which needs root: not as root,
# or with IMGDIFF_DOCS_NB=off, every notebook is rendered with its stored outputs instead
nb_execution_mode = os.environ.get("IMGDIFF_DOCS_NB", "force" if os.geteuid() == 0 else "off")
# nbformat fills in missing cell ids itself; its warning about them is noise here
warnings.filterwarnings("ignore", message="Cell is missing an id field")
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# API reference
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
# the docstrings are plain reST-compatible prose (no Google/NumPy sections): no napoleon,
# which would read a property's "The rank of …: …" first line as a type
# types of the standard library and of dependencies: no inventory offline (no intersphinx)
nitpick_ignore_regex = [
    ("py:class", r"(collections\.abc|enum|pathlib|os|typing|types|attrs|distributed|rich)\..*"),
    # a name imported for type checking only (kept out of start-up) stays unresolved
    ("py:class", r"Path"),
    # internal helper types named in signatures (progress callbacks, the digest cache)
    ("py:class", r"(imgdiff\._progress\.)?ReadCounts|(imgdiff\.manifest\.)?ProgressFn"),
    ("py:class", r"(imgdiff\.cache\.)?DigestCache|imgdiff\.image\.base\.FileId"),
]

html_theme = "furo"
html_title = f"imgdiff {release}"
html_static_path: list[str] = []

# the man page: `imgdiff(1)`, from the same sources as the CLI reference page
man_pages = [
    (
        "cli-reference",
        "imgdiff",
        "what changed between two system images, and what running processes use it",
        [author],
        1,
    )
]
man_show_urls = False

"""Sphinx configuration of fastrnn's documentation (build: sphinx-build -W --keep-going -n docs out).

fastrnn is imported from this source tree, so the docs build without installing it; the tests build
them the same way (tests/test_docs.py).
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))
sys.path.insert(0, str(DOCS / "_ext"))

import fastrnn  # noqa: E402  (after the path is set)

project = "fastrnn"
author = "the fastrnn authors"
release = fastrnn.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "numpydoc",
    "myst_parser",
    "fastrnn_docs",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

nitpicky = True
autodoc_typehints = "none"          # the numpydoc sections carry the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # the API page lists the members it documents
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

myst_heading_anchors = 3

# numpydoc reports a docstring it cannot parse (an unknown section, which it then drops) as a Python
# warning, which -W does not see: make it fail the build.
warnings.filterwarnings("error", module=r"numpydoc\.")

html_theme = "alabaster"
html_title = f"fastrnn {release}"
html_static_path: list[str] = []

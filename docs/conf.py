"""Sphinx configuration: ``tox -e docs`` builds the site with warnings as errors."""

from __future__ import annotations

import requests_tokenauth

project = "requests-tokenauth"
author = "the requests-tokenauth authors"
copyright = "the requests-tokenauth authors"
release = version = requests_tokenauth.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.intersphinx", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Inherited docstrings (requests' own HTTPAdapter.send) refer to labels of requests' docs.
autodoc_inherit_docstrings = False
autodoc_default_options = {"members": True, "show-inheritance": True}
# The public names are re-exported from private modules; document them where users import
# them from, and do not fetch other projects' inventories (the build works offline).
add_module_names = False
intersphinx_mapping: dict[str, tuple[str, object]] = {}
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []
nitpicky = False

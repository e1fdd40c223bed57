"""Sphinx configuration: ``tox -e docs`` builds the site nitpicky (``-n``), with warnings as
errors, and offline: every reference to this package's objects must resolve; names from
other projects (requests, the standard library, ...) are listed below instead of being
fetched from their inventories."""

from __future__ import annotations

import re
from typing import Any

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

nitpicky = True
#: Other projects' names: they would resolve through intersphinx, which needs the network.
_EXTERNAL_MODULES = (
    "asyncio",
    "collections",
    "collections.abc",
    "contextlib",
    "cryptography",
    "enum",
    "http.server",
    "httpx",
    "os",
    "redis",
    "requests",
    "socketserver",
    "threading",
    "time",
    "typing",
    "urllib3",
)
_EXTERNAL = "|".join(re.escape(module) for module in _EXTERNAL_MODULES)
nitpick_ignore_regex = [
    (r"py:.*", rf"({_EXTERNAL})\..*"),
    # the same names as some annotations spell them
    (r"py:class", r"(Retry|EllipticCurvePrivateKey|RSAPrivateKey)"),
    # the type variables of generic signatures (``from_issuer``) are not objects
    (r"py:class", r"(G|P\.args|P\.kwargs)"),
    # the signature in the docstring of time.time (SystemClock.time is that function)
    (r"py:class", r"floating point number"),
]


def _drop_private_bases(app: Any, name: str, obj: object, options: Any, bases: list[type]) -> None:
    """Show only public bases: a private mixin (``FrozenSlots``, wrapt's proxy) is an
    implementation detail, not something a reader can look up."""
    public = [
        base
        for base in bases
        if not any(part.startswith("_") for part in base.__module__.split("."))
        or (base.__module__.startswith("requests_tokenauth._") and _is_public(base))
    ]
    bases[:] = public or [object]


def _is_public(cls: type) -> bool:
    return getattr(requests_tokenauth, cls.__name__, None) is cls


def _package_names_from_httpx(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """``requests_tokenauth.httpx``'s docstrings name the package's public objects by their
    short names (``ConfigurationError``, ``TokenManager.revoke``) as the package's own
    docstrings do: resolve those to ``requests_tokenauth.<name>``."""
    if node.get("refdomain") != "py" or node.get("py:module") != "requests_tokenauth.httpx":
        return None
    target = node["reftarget"]
    if getattr(requests_tokenauth, target.split(".")[0], None) is None:
        return None
    package_node = node.deepcopy()
    package_node["py:module"] = "requests_tokenauth"
    return env.get_domain("py").resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], target, package_node, contnode
    )


def setup(app: Any) -> None:
    app.connect("autodoc-process-bases", _drop_private_bases)
    app.connect("missing-reference", _package_names_from_httpx)

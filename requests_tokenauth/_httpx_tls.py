"""The TLS context token requests share: httpx's default one, made once per process."""

from __future__ import annotations

import os
import ssl
import threading

import httpx

_default_contexts: dict[bool, ssl.SSLContext] = {}
_default_contexts_lock = threading.Lock()


def _fresh_lock_in_child() -> None:
    # a parent thread making the context when the process forked is not in the child
    global _default_contexts_lock
    _default_contexts_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock_in_child)


def default_ssl_context(trust_env: bool) -> ssl.SSLContext:
    """httpx's default SSL context (``verify=True``, no client certificate), made once per
    process: loading the CA certificates costs tens of milliseconds of CPU, which every new
    :class:`~requests_tokenauth.httpx.TokenAuth`'s first token request would otherwise
    wait for. A context only reads its configuration while connections use it."""
    context = _default_contexts.get(trust_env)
    if context is None:
        with _default_contexts_lock:
            context = _default_contexts.get(trust_env)
            if context is None:
                context = httpx.create_ssl_context(verify=True, trust_env=trust_env)
                _default_contexts[trust_env] = context
    return context

"""The ``token_client_options`` of the httpx driver: checked where they are given (a name
the httpx clients do not take, or one that would change what is sent), and a value httpx
cannot use turned into a :class:`ConfigurationError` where a client is made, not a
``TypeError`` or ``FileNotFoundError`` out of ``get_token``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Callable, Optional, TypeVar

import httpx

from ._errors import ConfigurationError

T = TypeVar("T")

#: Options that would change what is sent: the grant authenticates the client itself, and an
#: answer must be the endpoint's own (no redirect followed).
_REFUSED_OPTIONS = {
    "auth": "the grant authenticates the client itself (auth_method=, client_secret=)",
    "follow_redirects": "an authorization server's answer is never a redirect to follow",
    "base_url": "the grant's URLs are absolute",
}


def _client_parameters() -> frozenset[str]:
    # this httpx's own names (``proxies`` before 0.28, ``proxy`` since 0.26...)
    names: set[str] = set()
    for client in (httpx.Client, httpx.AsyncClient):
        names.update(inspect.signature(client.__init__).parameters)
    names.discard("self")
    return frozenset(names)


_CLIENT_PARAMETERS = _client_parameters()


def checked_client_options(options: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """``options`` for the private clients, checked.

    :raises ConfigurationError: not a mapping, a name the httpx clients do not take, or an
        option that would change what is sent.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ConfigurationError("token_client_options must be a mapping of httpx.Client options")
    for name, why in _REFUSED_OPTIONS.items():
        if name in options:
            raise ConfigurationError(f"token_client_options cannot set {name}: {why}")
    unknown = sorted(str(name) for name in options if name not in _CLIENT_PARAMETERS)
    if unknown:
        raise ConfigurationError(
            f"token_client_options: httpx {httpx.__version__} clients take no {', '.join(unknown)}"
        )
    return dict(options)


def made_with(options: Mapping[str, Any], make: Callable[[], T]) -> T:
    """``make()`` (a client, or its TLS context, from ``options``).

    :raises ConfigurationError: httpx could not use the options (a CA file that is not
        there, a ``limits`` that is not an :class:`httpx.Limits`...); only the option names
        and the error's type are told, since a value may hold a secret (a proxy's password).
    """
    try:
        return make()
    except Exception as exc:
        raise ConfigurationError(
            f"token_client_options ({', '.join(sorted(options))}) did not make an httpx "
            f"client: {type(exc).__name__}"
        ) from exc


def check_transports(options: Mapping[str, Any], kind: type, client: str) -> None:
    """The one option httpx checks only when it sends: a transport of the client's kind.

    :raises ConfigurationError: ``transport=`` or a ``mounts`` value is not a ``kind`` (one
        ``token_client_options`` serves the sync and the async client: a transport for both
        must be both, as :class:`httpx.MockTransport` is).
    """
    mounts = options.get("mounts") or {}
    given = [options.get("transport"), *(mounts.values() if isinstance(mounts, Mapping) else [])]
    wrong = [t for t in given if t is not None and not isinstance(t, kind)]
    if wrong:
        raise ConfigurationError(
            f"token_client_options transport= and mounts= must be httpx.{kind.__name__} for "
            f"an {client}, not {type(wrong[0]).__name__}"
        )

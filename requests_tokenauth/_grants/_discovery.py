"""Authorization server metadata (RFC 8414, falling back to OpenID Connect Discovery 1.0):
fetched once per issuer per process, checked, cached."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any, Optional, Union

import requests

from .._errors import ConfigurationError

#: Metadata requests give up after this many seconds (connect, read).
DEFAULT_DISCOVERY_TIMEOUT_SECONDS: tuple[float, float] = (5.0, 30.0)

#: Methods this library would pick, in order of preference, when the server supports several.
_SECRET_PREFERENCE = ("client_secret_basic", "client_secret_post", "client_secret_jwt")

_cache_lock = threading.Lock()
_cache: dict[str, dict[str, Any]] = {}
_fetching: dict[str, threading.Lock] = {}


def metadata_urls(issuer: str) -> tuple[str, str]:
    """Where the RFC 8414 and the OpenID Connect documents of ``issuer`` live.

    RFC 8414 §3.1 inserts the well-known segment *before* an issuer's path; OpenID
    Connect Discovery §4 appends it *after*.
    """
    parts = urllib.parse.urlsplit(issuer)
    path = parts.path.rstrip("/")
    rfc8414 = urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, "/.well-known/oauth-authorization-server" + path, "", "")
    )
    oidc = urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, path + "/.well-known/openid-configuration", "", "")
    )
    return rfc8414, oidc


def discover(
    issuer: str,
    *,
    session: Optional[requests.Session] = None,
    timeout: Union[float, tuple[float, float]] = DEFAULT_DISCOVERY_TIMEOUT_SECONDS,
    allow_insecure_http: bool = False,
) -> dict[str, Any]:
    """The metadata document of ``issuer`` (a copy), fetched on first use and cached for
    the life of the process. Thread-safe: concurrent first calls for one issuer make one
    fetch.

    :raises ConfigurationError: neither document could be fetched, or its ``issuer`` is not
        exactly ``issuer`` (RFC 8414 §3.3: a mismatch means the metadata must not be used).
    """
    from ._urls import check_url

    check_url(issuer, "issuer", allow_insecure_http=allow_insecure_http)
    if urllib.parse.urlsplit(issuer).query or urllib.parse.urlsplit(issuer).fragment:
        raise ConfigurationError(f"issuer {issuer!r} must have no query or fragment")
    with _cache_lock:
        cached = _cache.get(issuer)
        if cached is not None:
            return dict(cached)
        gate = _fetching.setdefault(issuer, threading.Lock())
    with gate:
        with _cache_lock:
            cached = _cache.get(issuer)
        if cached is None:
            if session is not None:
                cached = _fetch(issuer, session, timeout)
            else:
                with requests.Session() as own:
                    cached = _fetch(issuer, own, timeout)
            with _cache_lock:
                _cache[issuer] = cached
                _fetching.pop(issuer, None)
    return dict(cached)


def clear_cache() -> None:
    """Forget every cached metadata document (for tests, or after a server changes)."""
    with _cache_lock:
        _cache.clear()


def _fetch(
    issuer: str, session: requests.Session, timeout: Union[float, tuple[float, float]]
) -> dict[str, Any]:
    failures: list[str] = []
    for url in metadata_urls(issuer):
        try:
            with session.get(
                url,
                headers={"Accept": "application/json"},
                timeout=timeout,
                allow_redirects=False,
                auth=_NoAuth(),
            ) as response:
                if response.status_code != 200:
                    failures.append(f"{url} answered {response.status_code}")
                    continue
                try:
                    document = json.loads(response.text)
                except ValueError:
                    failures.append(f"{url} answered something that is not JSON")
                    continue
        except requests.exceptions.RequestException as exc:
            failures.append(f"{url} failed: {type(exc).__name__}")
            continue
        if not isinstance(document, dict):
            failures.append(f"{url} answered something that is not a JSON object")
            continue
        if document.get("issuer") != issuer:
            raise ConfigurationError(
                f"the metadata at {url} is for issuer {document.get('issuer')!r}, not "
                f"{issuer!r}; refusing it (RFC 8414 §3.3)"
            )
        return document
    raise ConfigurationError(
        f"no authorization server metadata for {issuer}: {'; '.join(failures)}"
    )


def pick_auth_method(metadata: Mapping[str, Any], kwargs: Mapping[str, Any]) -> str:
    """The client-authentication method to use with this server, given the credentials in
    ``kwargs``: a private key → ``private_key_jwt``; a secret → the first of basic, post,
    JWT the server supports; neither → ``none``.

    :raises ConfigurationError: the server supports none of the methods the credentials allow.
    """
    supported = metadata.get("token_endpoint_auth_methods_supported")
    if not isinstance(supported, list):
        supported = ["client_secret_basic"]  # RFC 8414 §2: the default when omitted
    if kwargs.get("client_key") is not None:
        candidates: tuple[str, ...] = ("private_key_jwt",)
    elif kwargs.get("client_secret") is not None:
        candidates = _SECRET_PREFERENCE
    elif kwargs.get("session") is not None and getattr(kwargs["session"], "cert", None):
        candidates = ("tls_client_auth",)
    else:
        candidates = ("none",)
    for method in candidates:
        if method in supported:
            return method
    raise ConfigurationError(
        f"the server supports {', '.join(map(str, supported))}; these credentials allow "
        f"{', '.join(candidates)}"
    )


class _NoAuth(requests.auth.AuthBase):
    """Keep a user session's ``auth`` (and ``~/.netrc``) off metadata requests."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers.pop("Authorization", None)
        return r

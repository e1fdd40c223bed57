"""Authorization server metadata (RFC 8414, falling back to OpenID Connect Discovery 1.0):
fetched with a bounded read, checked, and cached per process when fetched the default way."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any, Optional, Union

import requests
import urllib3

from .._clock import SYSTEM_CLOCK, Clock
from .._errors import ConfigurationError
from ._urls import check_url, direct_proxies

#: Metadata requests give up after this many seconds (connect, read).
DEFAULT_DISCOVERY_TIMEOUT_SECONDS: tuple[float, float] = (5.0, 30.0)

#: Discovery as a whole (both well-known URLs, every byte) gives up after this long: a
#: server that trickles bytes must not hold a constructor for good.
DEFAULT_DISCOVERY_DEADLINE_SECONDS = 30.0

#: A metadata document larger than this is refused (real ones are a few kilobytes).
DEFAULT_METADATA_LIMIT_BYTES = 256 * 1024

#: Bytes asked for per read; each read returns what one receive brought, at most this.
_READ_CHUNK_BYTES = 8192

#: Methods this library would pick, in order of preference, when the server supports several.
_SECRET_PREFERENCE = ("client_secret_basic", "client_secret_post", "client_secret_jwt")

_cache_lock = threading.Lock()
#: Documents fetched with a private default session, by (issuer, allow_insecure_http): a
#: document fetched under a caller's own session (``verify=False``, its own proxies or
#: adapters) is trusted by that call only, never by later callers.
_cache: dict[tuple[str, bool], dict[str, Any]] = {}
_fetching: dict[tuple[str, bool], threading.Lock] = {}

Timeout = Union[float, tuple[float, float]]


class _Deadline(Exception):
    """The discovery deadline passed while reading."""


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
    timeout: Timeout = DEFAULT_DISCOVERY_TIMEOUT_SECONDS,
    allow_insecure_http: bool = False,
    clock: Clock = SYSTEM_CLOCK,
    deadline_seconds: float = DEFAULT_DISCOVERY_DEADLINE_SECONDS,
    limit_bytes: int = DEFAULT_METADATA_LIMIT_BYTES,
) -> dict[str, Any]:
    """The metadata document of ``issuer`` (a copy).

    Without ``session``, it is fetched with a private session on first use and cached for
    the life of the process (thread-safe: concurrent first calls make one fetch). With a
    ``session``, it is fetched with that session every time and never cached: what that
    session trusted (``verify=False``, its proxies, its adapters) must not decide what
    other callers trust. Either way the read is bounded: ``limit_bytes`` per document and
    ``deadline_seconds`` (on ``clock.monotonic()``) for the whole discovery.

    :raises ConfigurationError: neither document could be fetched (or one was too large),
        the deadline passed, or the document's ``issuer`` is not exactly ``issuer``
        (RFC 8414 §3.3: a mismatch means the metadata must not be used).
    """
    check_url(issuer, "issuer", allow_insecure_http=allow_insecure_http)
    if urllib.parse.urlsplit(issuer).query or urllib.parse.urlsplit(issuer).fragment:
        raise ConfigurationError(f"issuer {issuer!r} must have no query or fragment")

    def fetch(with_session: requests.Session) -> dict[str, Any]:
        return _fetch(
            issuer,
            with_session,
            timeout,
            allow_insecure_http=allow_insecure_http,
            clock=clock,
            deadline_seconds=deadline_seconds,
            limit_bytes=limit_bytes,
        )

    if session is not None:
        return fetch(session)
    key = (issuer, allow_insecure_http)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            return dict(cached)
        gate = _fetching.setdefault(key, threading.Lock())
    with gate:
        with _cache_lock:
            cached = _cache.get(key)
        if cached is None:
            with requests.Session() as own:
                cached = fetch(own)
            with _cache_lock:
                _cache[key] = cached
                _fetching.pop(key, None)
    return dict(cached)


def clear_cache() -> None:
    """Forget every cached metadata document (for tests, or after a server changes)."""
    with _cache_lock:
        _cache.clear()


def _fetch(
    issuer: str,
    session: requests.Session,
    timeout: Timeout,
    *,
    allow_insecure_http: bool,
    clock: Clock,
    deadline_seconds: float,
    limit_bytes: int,
) -> dict[str, Any]:
    deadline_monotonic = clock.monotonic() + deadline_seconds
    failures: list[str] = []
    for url in metadata_urls(issuer):
        try:
            with session.get(
                url,
                headers={"Accept": "application/json"},
                timeout=_within(timeout, deadline_monotonic - clock.monotonic()),
                allow_redirects=False,
                auth=_NoAuth(),
                stream=True,
                proxies=direct_proxies(url, allow_insecure_http=allow_insecure_http),
            ) as response:
                if response.status_code != 200:
                    failures.append(f"{url} answered {response.status_code}")
                    continue
                body = _read_bounded(response, limit_bytes, clock, deadline_monotonic)
        except _Deadline:
            raise ConfigurationError(
                f"no authorization server metadata for {issuer}: discovery took longer "
                f"than {deadline_seconds:g}s"
            ) from None
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            failures.append(f"{url} failed: {type(exc).__name__}")
            continue
        if body is None:
            failures.append(f"{url} answered a document larger than {limit_bytes} bytes")
            continue
        try:
            document = json.loads(body)
        except ValueError:
            failures.append(f"{url} answered something that is not JSON")
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


def _within(timeout: Timeout, remaining_seconds: float) -> Timeout:
    """``timeout`` shortened so that no single wait outlasts the time left."""
    if remaining_seconds <= 0:
        raise _Deadline
    if isinstance(timeout, tuple):
        return (min(timeout[0], remaining_seconds), min(timeout[1], remaining_seconds))
    return min(timeout, remaining_seconds)


def _read_bounded(
    response: requests.Response, limit_bytes: int, clock: Clock, deadline_monotonic: float
) -> Optional[bytes]:
    """The body, or ``None`` when it is larger than ``limit_bytes`` (the rest is not read).

    Reads what each receive brings (``read1``), checking the deadline between reads, so a
    server that trickles bytes cannot stretch one read past it by more than one receive.

    :raises _Deadline: ``deadline_monotonic`` passed.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit_bytes:
        return None
    chunks: list[bytes] = []
    size = 0
    for chunk in _chunks(response):
        if clock.monotonic() >= deadline_monotonic:
            raise _Deadline
        size += len(chunk)
        if size > limit_bytes:
            return None
        chunks.append(chunk)
    if clock.monotonic() >= deadline_monotonic:
        raise _Deadline
    return b"".join(chunks)


def _chunks(response: requests.Response) -> Iterator[bytes]:
    """The body, a receive at a time where urllib3 allows it (``read1``, urllib3 2), else
    as requests streams it (urllib3 1.26, or a ``raw`` a custom adapter made)."""
    raw = response.raw
    read1 = getattr(raw, "read1", None)
    if not isinstance(raw, urllib3.response.HTTPResponse) or read1 is None:
        yield from response.iter_content(_READ_CHUNK_BYTES)
        return
    while True:
        chunk = read1(_READ_CHUNK_BYTES, decode_content=True)
        if not chunk:
            return
        yield chunk


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

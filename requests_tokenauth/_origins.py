"""Origins (scheme, host, port): which ones may receive a token, and over what transport."""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Iterable
from typing import Any, Optional, Union

import requests

from ._errors import ConfigurationError, OriginNotAllowedError
from ._grants._urls import is_loopback

log = logging.getLogger("requests_tokenauth")

Origin = tuple[str, str, int]
Origins = Union[str, Iterable[str], None]

_DEFAULT_PORTS = {"http": 80, "https": 443}

#: :meth:`OriginScope.verdict` results: the token may go there; the origin is not on the
#: allow-list; the origin is plain http to a host that is not this machine, without opt-in.
ALLOWED, OUTSIDE, INSECURE = "allowed", "outside", "insecure"

#: A fourth verdict: plain http to this machine, allowed only by the loopback exemption.
#: The token may go there, but never through a proxy (it would leave the machine in clear).
LOOPBACK = "loopback"

#: How many loopback origins a :class:`TokenAuth` remembers as checked for proxies (its
#: fast path); past that, each request to another one is checked anew.
DEFAULT_CHECKED_ORIGINS_LIMIT = 32

_INSECURE_HINT = (
    "tokens would travel unencrypted. Use https, or pass allow_insecure_http=True if this "
    "network is trusted"
)


def origin_of(url: Optional[str]) -> Optional[Origin]:
    """``(scheme, host, port)`` of an absolute http(s) URL, lower-cased, default port filled."""
    parts = urllib.parse.urlsplit(url or "")
    scheme = (parts.scheme or "").lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    return scheme, parts.hostname.lower(), port


def origin_url(origin: Origin) -> str:
    """``"scheme://host[:port]"``, the port omitted when it is the scheme's default."""
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" if port == _DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{port}"


def url_prefixes(origin: Origin) -> tuple[str, ...]:
    """URL prefixes that can only belong to ``origin`` (each ends where the authority does)."""
    scheme, host, port = origin
    bare = origin_url(origin) + "/"
    if port != _DEFAULT_PORTS[scheme]:
        return (bare,)
    host = f"[{host}]" if ":" in host else host
    return bare, f"{scheme}://{host}:{port}/"


def is_secure(origin: Origin, allow_insecure_http: bool) -> bool:
    """Whether a token may travel to ``origin``: https, loopback, or plain http by opt-in."""
    return origin[0] == "https" or allow_insecure_http or is_loopback(origin[1])


def needs_direct(origin: Origin, allow_insecure_http: bool) -> bool:
    """Whether only the loopback exemption lets a token go to ``origin`` (plain http to
    this machine, no opt-in): then it must not go through a proxy."""
    return origin[0] == "http" and not allow_insecure_http and is_loopback(origin[1])


def env_proxy_for(url: str) -> bool:
    """Whether requests would send ``url`` through a proxy named in the environment
    (``HTTP_PROXY``, ``ALL_PROXY``, ... minus ``NO_PROXY``), decided as requests decides."""
    proxies = requests.utils.get_environ_proxies(url)
    return requests.utils.select_proxy(url, proxies) is not None


def proxied_error(url: Optional[str], instead: Optional[str] = None) -> OriginNotAllowedError:
    """The error for a token that would go to this machine over plain http through a proxy
    from the environment (the proxy's address is not shown: it may carry credentials).

    :param instead: what the driver's user can do instead of adding the host to
        ``NO_PROXY`` (default: the requests driver's adapters).
    """
    origin = origin_of(url)
    where = origin_url(origin) if origin else "this URL"
    host = origin[1] if origin else "the host"
    if instead is None:
        instead = (
            "give the token through session.mount(url, TokenAdapter(auth)) or "
            "authorize_session(session, auth, origins) instead of session.auth: they send "
            "loopback requests with no proxy (session.trust_env = False does not help: an "
            "auth cannot see the session)"
        )
    return OriginNotAllowedError(
        f"{where} is plain http to this machine, but the environment's proxy settings "
        "(HTTP_PROXY, ALL_PROXY) would send the request through a proxy, unencrypted, so "
        f"the token was not sent. Either add the host to NO_PROXY (NO_PROXY={host}), or "
        f"{instead}."
    )


def parse_origins(origins: Origins, *, allow_insecure_http: bool) -> Optional[frozenset[Origin]]:
    """Normalise an origin or a list of origins (``"https://api.example.com"``).

    :raises ConfigurationError: one is not an absolute http(s) URL, or is plain http to a
        host that is not this machine and ``allow_insecure_http`` is false.
    """
    if origins is None:
        return None
    if isinstance(origins, str):
        origins = [origins]
    out = set()
    for url in origins:
        origin = origin_of(url)
        if origin is None:
            raise ConfigurationError(f"{url!r} is not an http(s) origin")
        if not is_secure(origin, allow_insecure_http):
            raise ConfigurationError(f"origin {url!r} is plain http: {_INSECURE_HINT}.")
        out.add(origin)
    if not out:
        raise ConfigurationError("origins is empty: no request could carry the token")
    return frozenset(out)


def insecure_error(url: Optional[str]) -> OriginNotAllowedError:
    """The error for a token that would go over plain http (no query string is shown)."""
    origin = origin_of(url)
    where = origin_url(origin) if origin else "this URL"
    return OriginNotAllowedError(
        f"{where} is plain http: {_INSECURE_HINT} (or list it in origins)."
    )


class OriginScope:
    """The origins a token may be sent to, and the https rule.

    Without a list, either every secure origin (``pin_first=False``, what :class:`TokenAuth`
    does) or only the first one asked about (``pin_first=True``, what the adapters do; pinned
    once, thread-safely). Plain http to this machine without ``allow_insecure_http`` gets the
    verdict :data:`LOOPBACK`: allowed, but never through a proxy. Immutable after pinning;
    thread-safe.
    """

    __slots__ = (
        "_origins",
        "prefixes",
        "loopback_prefixes",
        "_pin_first",
        "allow_insecure_http",
        "_lock",
    )

    def __init__(
        self, origins: Origins, *, allow_insecure_http: bool = False, pin_first: bool = False
    ) -> None:
        self.allow_insecure_http = allow_insecure_http
        self._pin_first = pin_first
        self._lock = threading.Lock()
        self._set(parse_origins(origins, allow_insecure_http=allow_insecure_http))

    def _set(self, origins: Optional[frozenset[Origin]]) -> None:
        self._origins = origins
        #: URL prefixes allowed without parsing the URL (the fast path).
        self.prefixes: tuple[str, ...]
        #: URL prefixes of listed origins that get :data:`LOOPBACK`, without parsing the URL.
        self.loopback_prefixes: tuple[str, ...] = ()
        if origins is None:
            # any https URL is allowed without parsing it; the pinned case has no fast path
            self.prefixes = () if self._pin_first else ("https://",)
        else:
            direct = {o for o in origins if needs_direct(o, self.allow_insecure_http)}
            self.prefixes = tuple(
                p for o in sorted(origins) if o not in direct for p in url_prefixes(o)
            )
            self.loopback_prefixes = tuple(p for o in sorted(direct) for p in url_prefixes(o))

    @property
    def origins(self) -> Optional[frozenset[Origin]]:
        """The allowed origins; ``None`` while unrestricted (or not pinned yet)."""
        return self._origins

    def verdict(self, url: Optional[str]) -> str:
        """:data:`ALLOWED`, :data:`LOOPBACK`, :data:`OUTSIDE` or :data:`INSECURE` for a
        request to ``url``."""
        if url is not None:
            if url.startswith(self.prefixes):
                return ALLOWED
            if url.startswith(self.loopback_prefixes):
                return LOOPBACK
        origin = origin_of(url)
        if origin is None:
            return OUTSIDE
        allowed = LOOPBACK if needs_direct(origin, self.allow_insecure_http) else ALLOWED
        origins = self._origins
        if origins is None:
            if not is_secure(origin, self.allow_insecure_http):
                return INSECURE
            if not self._pin_first:
                return allowed
            with self._lock:
                if self._origins is None:
                    self._set(frozenset({origin}))
                    log.debug("token adapter pinned to %s", origin_url(origin))
                origins = self._origins
            assert origins is not None
        return allowed if origin in origins else OUTSIDE

    def allows(self, url: Optional[str]) -> bool:
        """Whether a request to ``url`` may carry the token (directly, for :data:`LOOPBACK`)."""
        return self.verdict(url) in (ALLOWED, LOOPBACK)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "origins": self._origins,
            "pin_first": self._pin_first,
            "allow_insecure_http": self.allow_insecure_http,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.allow_insecure_http = state["allow_insecure_http"]
        self._pin_first = state["pin_first"]
        self._lock = threading.Lock()
        self._set(state["origins"])

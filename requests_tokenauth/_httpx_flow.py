"""What the httpx driver's sync and async flows share, on :class:`httpx.Request` and
:class:`httpx.Response`: which requests may carry the token, stamping it (and a DPoP
proof), and the guarded retry after a rejected token, decided by :mod:`._policy` exactly as
for requests (:mod:`._retry`). Only getting and replacing a token differ between the two
flows (blocking, or awaited off the loop); that is left to the caller, between
:meth:`HttpxFlow.rejection` and :meth:`HttpxFlow.prepare_retry`."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Collection
from typing import Any, Callable, Optional

import httpx

from ._dpop import DPoPProofs, htu
from ._errors import ConfigurationError, OriginNotAllowedError
from ._manager import TokenManager
from ._origins import (
    ALLOWED,
    DEFAULT_CHECKED_ORIGINS_LIMIT,
    INSECURE,
    LOOPBACK,
    OriginScope,
    env_proxy_for,
    insecure_error,
    origin_of,
    origin_url,
    proxied_error,
    url_prefixes,
)
from ._policy import Rejection, after_unauthorized
from ._token import Token

log = logging.getLogger("requests_tokenauth")

#: What to tell a user whose loopback request the environment would proxy.
_PROXIED_HINT = (
    "run without these proxy variables (an httpx auth cannot see its client, so the "
    "client's trust_env=False does not help)"
)


def httpx_env_proxy_for(url: str) -> bool:
    """Whether an httpx client (``trust_env=True``) would send ``url`` through a proxy
    named in the environment, decided as httpx decides: it differs from requests (httpx
    reads no CIDR block in ``NO_PROXY``: ``127.0.0.0/8`` does not exempt ``127.0.0.1``).
    Where httpx's own reading cannot be had, any proxy variable counts."""
    try:
        from httpx._utils import URLPattern, get_environment_proxies
    except ImportError:  # pragma: no cover - a later httpx moved them
        return bool(urllib.request.getproxies())
    try:
        proxies = get_environment_proxies()
        target = httpx.URL(url)
        for pattern in sorted(URLPattern(key) for key in proxies):
            if pattern.matches(target):
                return proxies[pattern.pattern] is not None
    except Exception:  # a variable httpx cannot read (its clients would refuse it too)
        return True
    return False


def body_replayable(request: httpx.Request) -> bool:
    """Whether the body can be sent again in full: bytes (an :class:`httpx.ByteStream`:
    ``content=`` bytes or str, ``data=``, ``json=``, no body), or content already read.
    A generator, an async generator or a file is streamed once."""
    return isinstance(request.stream, httpx.ByteStream) or hasattr(request, "_content")


def _no_json() -> Any:
    # a resource's nonce challenge is a 401 header (RFC 9449 §9): its body is not read
    raise ValueError("not read")


class Rejected:
    """A response that rejected the token a request carried: what :func:`after_unauthorized`
    decided, the request to send again (the last hop of a redirect chain, as requests
    retries the hop that got the rejection), and whether the token must be replaced
    (``False``: only a fresh DPoP proof is needed, after a nonce challenge or a redirect
    that carried a proof made for another URL)."""

    __slots__ = ("verdict", "request", "replace")

    def __init__(self, verdict: Rejection, request: httpx.Request, replace: bool) -> None:
        self.verdict = verdict
        self.request = request
        self.replace = replace


class HttpxFlow:
    """One :class:`~requests_tokenauth.httpx.TokenAuth`'s stamping and retry rules.
    Thread-safe (the checked-origins fast path is replaced in one assignment).

    :param manager: whose tokens are stamped.
    :param origin_scope: which origins may receive the token.
    :param strict: raise :class:`OriginNotAllowedError` for a request outside the scope
        instead of sending it without the token.
    :param dpop: the DPoP proofs, if DPoP is on.
    :param refresh_status_codes: the statuses that reject a token.
    """

    __slots__ = ("manager", "origin_scope", "_fast_prefixes", "_strict", "dpop", "codes")

    def __init__(
        self,
        manager: TokenManager,
        origin_scope: OriginScope,
        strict: bool,
        dpop: Optional[DPoPProofs],
        refresh_status_codes: Collection[int],
    ) -> None:
        self.manager = manager
        self.origin_scope = origin_scope
        self._fast_prefixes = origin_scope.prefixes
        self._strict = strict
        self.dpop = dpop
        self.codes = refresh_status_codes

    def admit(self, request: httpx.Request) -> bool:
        """Whether ``request`` may carry the token (``False``: it goes without).

        :raises OriginNotAllowedError: plain http to a host that is not this machine, a
            loopback request the environment would proxy, or (with ``strict``) an origin
            outside the scope.
        """
        url = str(request.url)
        if url.startswith(self._fast_prefixes):
            return True
        verdict = self.origin_scope.verdict(url)
        if verdict == LOOPBACK:
            self._check_not_proxied(url)
            return True
        if verdict == ALLOWED:
            return True
        if verdict == INSECURE:
            raise insecure_error(url)
        origin = origin_url(o) if (o := origin_of(url)) else "a non-http(s) URL"
        if self._strict:
            raise OriginNotAllowedError(
                f"{origin} is not among this TokenAuth's origins; add it to origins= to "
                "send it the token"
            )
        log.debug("%s is not among the allowed origins: sent without the token", origin)
        return False

    def _check_not_proxied(self, url: str) -> None:
        """As :meth:`requests_tokenauth.TokenAuth._check_not_proxied`: checked once per
        origin, then on the fast path."""
        if env_proxy_for(url) or httpx_env_proxy_for(url):
            raise proxied_error(url, instead=_PROXIED_HINT)
        origin = origin_of(url)
        fast = self._fast_prefixes
        if origin is not None and len(fast) < DEFAULT_CHECKED_ORIGINS_LIMIT:
            self._fast_prefixes = fast + url_prefixes(origin)  # one assignment: thread-safe

    def stamp(self, request: httpx.Request, token: Token) -> None:
        """Put ``token`` (and a fresh DPoP proof for it) on ``request``.

        :raises DPoPDowngradeError: with DPoP, an unbound token not accepted.
        """
        request.headers["Authorization"] = token.authorization
        if self.dpop is not None:
            self.dpop.stamp_headers(request.headers, request.method, str(request.url), token)

    def saw(self, response: httpx.Response) -> None:
        """Keep what any response teaches (a new DPoP nonce)."""
        if self.dpop is not None and response.status_code != 401:
            self.dpop.remember_nonce_of(str(response.url), response.headers)

    def rejection(
        self, request: httpx.Request, response: httpx.Response, sent: Token
    ) -> Optional[Rejected]:
        """What ``response`` to ``request`` (which carried ``sent``) does to the token:
        ``None`` when nothing (return it as it is). After redirects, ``response.request``
        is the last hop: whether it carried ``sent`` is what counts (httpx drops
        ``Authorization`` when a redirect leaves the origin), and it is what is retried."""
        status = response.status_code
        if status not in self.codes:
            return None
        hop = response.request
        verdict = after_unauthorized(
            status_code=status,
            www_authenticate=response.headers.get("WWW-Authenticate"),
            already_retried=False,
            sent_token=hop.headers.get("Authorization") == sent.authorization,
            body_replayable=body_replayable(hop),
            refresh_status_codes=self.codes,
        )
        if verdict is Rejection.IGNORE or not self.origin_scope.allows(str(hop.url)):
            return None
        dpop = self.dpop
        fresh_proof_only = (
            dpop is not None
            and sent.token_type == "DPoP"
            and (
                dpop.nonce_challenged(status, str(response.url), response.headers, _no_json)
                or "DPoP" not in hop.headers
                # httpx copies the proof to a same-origin redirect: it names the first URL
                or (hop is not request and htu(str(hop.url)) != htu(str(request.url)))
            )
        )
        return Rejected(verdict, hop, replace=not fresh_proof_only)

    def prepare_retry(
        self, rejected: Rejected, response: httpx.Response, sent: Token, new: Optional[Token]
    ) -> tuple[bool, Optional[Callable[[], None]]]:
        """After ``sent`` was replaced by ``new`` (``None``: no retry), make
        ``rejected.request`` ready to be sent once more (the new token, a fresh proof, the
        cookies the rejection set).

        :returns: whether to send it, and what to report to the manager (which may run
            ``on_event`` and a due ``on_token``: the async flow runs it off the loop). A
            body that cannot be sent again is not: logged, and an
            ``unauthorized_not_retried`` event (the next request carries the new token); a
            retry with a new token is an ``unauthorized_retry`` event.
        """
        request = rejected.request
        manager = self.manager
        if rejected.verdict is Rejection.REPLACE:
            o = origin_of(str(request.url))
            log.info(
                "%s %s answered %d; its body (%s) cannot be sent again, so it is not retried; "
                "the next request carries the new token",
                request.method,
                origin_url(o) if o else "",
                response.status_code,
                type(request.stream).__name__,
            )
            return False, lambda: manager.notify_not_retried("body_not_replayable", new)
        if new is None:
            return False, None
        _add_cookies_set_by(response, request)
        self.stamp(request, new)
        if new is sent:
            return True, None
        return True, lambda: manager.notify_retry(new)


def _add_cookies_set_by(response: httpx.Response, request: httpx.Request) -> None:
    """Add to ``request`` the cookies ``response`` set that apply to it (the client's jar
    has them too, but ``request`` was built before they came)."""
    if "set-cookie" not in response.headers:
        return
    jar = httpx.Cookies()
    jar.extract_cookies(response)
    probe = httpx.Request(request.method, request.url)
    jar.set_cookie_header(probe)
    added = probe.headers.get("Cookie")
    if not added:
        return
    pairs = dict(_cookie_pairs(request.headers.get("Cookie", "")))
    pairs.update(_cookie_pairs(added))
    request.headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in pairs.items())


def _cookie_pairs(header: str) -> list[tuple[str, str]]:
    pairs = []
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            pairs.append((name, value))
    return pairs


def refuse_requests_only(grant: Any) -> None:
    """What the requests driver supports on a grant and the httpx driver cannot: a
    ``session=`` (httpx sends the token requests with its own client) and
    ``protected_request`` compliance hooks (they rewrite a requests.PreparedRequest).

    :raises ConfigurationError: saying what to use instead.
    """
    transport = getattr(grant, "_transport", None)
    if getattr(transport, "_given", None) is not None:
        raise ConfigurationError(
            "this grant was given session= (a requests.Session for token requests); the httpx "
            "driver sends them with its own httpx client: drop session= and pass its settings "
            "as token_client_options={'verify': ..., 'cert': ..., 'proxy': ...}"
        )
    if grant.compliance_hooks.protected_request:
        raise ConfigurationError(
            "protected_request compliance hooks rewrite requests' requests and do not run "
            "with httpx: set such headers on the httpx client (headers=) or in an httpx "
            "event hook instead"
        )

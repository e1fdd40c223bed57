"""TokenAuth: stamps the token on each request and retries once after a 401."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional

import requests
from requests.auth import AuthBase

from ._clock import SYSTEM_CLOCK, Clock
from ._dpop import DPoPKey, DPoPProofs, proofs_for_grant
from ._errors import OriginNotAllowedError
from ._events import EventCallback
from ._grants import Grant
from ._manager import DEFAULT_LOCK_TIMEOUT_SECONDS, DEFAULT_MAX_WAIT_SECONDS, TokenManager
from ._on_token import token_callback
from ._options import RefreshAhead
from ._origins import (
    ALLOWED,
    DEFAULT_CHECKED_ORIGINS_LIMIT,
    INSECURE,
    LOOPBACK,
    Origins,
    OriginScope,
    env_proxy_for,
    insecure_error,
    origin_of,
    origin_url,
    proxied_error,
    url_prefixes,
)
from ._policy import DEFAULT_POLICY, DEFAULT_REFRESH_STATUS_CODES, RefreshPolicy
from ._retry import RetryHook, refresh_codes
from ._stores import TokenStore
from ._token import Token

log = logging.getLogger("requests_tokenauth")


class TokenAuth(AuthBase):
    """OAuth 2.0 bearer tokens for requests: ``session.auth = TokenAuth(grant)``.

    Obtains a token on first use, refreshes it ahead of expiry (one token request however
    many threads), and retries a request once with a new token when a resource answers 401
    to the token that is still current. Thread-safe: share one instance across threads and
    sessions. Works as ``requests.get(url, auth=auth)`` too.

    Where the token goes: only to ``origins`` when given (other requests go out without
    it, or raise :class:`OriginNotAllowedError` with ``strict_origins``), and never over
    plain http to a host that is not this machine unless ``allow_insecure_http``
    (:class:`OriginNotAllowedError` before anything is sent). A redirect never gains the
    token: requests drops ``Authorization`` whenever the origin changes.

    :param grant: how tokens are obtained, e.g. :class:`ClientCredentials`.
    :param token: a token dict saved earlier (requests-oauthlib / Authlib shape).
    :param on_token: called with the dict of each newly obtained token, in the order the
        tokens were obtained, never concurrently and with no lock held; use it to persist
        rotated refresh tokens. If it raises, the token is handed to it again later while
        it is still the current one (see :class:`TokenManager`). A callback that declares a
        ``previous`` parameter (``def save(token, previous=None)``) is also given the token
        dict it replaces: the last one it saved without raising, else ``token=``, else
        ``None`` (how a saver finds its row by the old refresh token). It runs on a thread of
        this library's or the caller's (for a refresh ahead of expiry, the short-lived
        ``tokenauth-refresh`` thread), so no web framework's request context is there.
    :param on_event: called with each :class:`TokenEvent` (refresh started / succeeded /
        failed, token loaded from the store, 401 retry, ``on_token`` failed / retried), in
        order, with no lock held; never given a secret.
    :param store: a :class:`TokenStore` shared with other processes or hosts; with it,
        ``token=`` only seeds an empty store.
    :param store_key: the key in the store (default: derived from the grant).
    :param clock: time source; :class:`~requests_tokenauth.testing.FakeClock` in tests.
    :param policy: refresh margins, 401 cooldown and backoff (:class:`RefreshPolicy`).
    :param random: returns floats in [0, 1), for jitter.
    :param refresh_ahead: ``"background"`` (default: a short-lived thread refreshes ahead of
        expiry, no caller waits) or ``"inline"``.
    :param lock_timeout_seconds: how long a caller waits for another thread's token request.
    :param max_wait_seconds: with no valid token and the token endpoint failing, how long a
        caller waits for a token before it gets the error (default 5 s; ``0`` fails fast;
        see :class:`TokenManager`).
    :param origins: the origins (``"https://api.example.com"``; scheme, host and port) that
        may receive the token; default: any https origin, and http to loopback hosts.
    :param strict_origins: raise :class:`OriginNotAllowedError` for a request to an origin
        outside ``origins`` instead of sending it without the token.
    :param allow_insecure_http: let the token travel over plain http to hosts that are not
        this machine (127.0.0.0/8, ::1 and ``localhost`` are always allowed, but without it
        a request there that the environment's proxy settings would route through a proxy
        raises :class:`OriginNotAllowedError`; checked once per origin).
    :param dpop: a :class:`DPoPKey`: bind tokens to it (RFC 9449); every token request and
        every resource request then carries a fresh proof. A token the server did not bind
        (``token_type: Bearer``) raises :class:`DPoPDowngradeError` and is not used: from
        the token endpoint, given as ``token=`` (raised here) or loaded from ``store`` (raised
        by the request that would carry it).
    :param allow_dpop_downgrade: with ``dpop``, use such an unbound token anyway (a warning
        is logged for each one).
    :param refresh_status_codes: the resource statuses that mean "this token was rejected"
        (default ``(401,)``); ``(401, 403)`` for APIs that answer 403 to an expired or
        revoked token (django-oauth-toolkit's classic views, Vault). Each gets the same
        guarded handling as a 401: only for the current token, one retry, no retry for
        ``insufficient_scope``, the cooldown.
    """

    def __init__(
        self,
        grant: Grant,
        *,
        token: Optional[Mapping[str, Any]] = None,
        on_token: Optional[Callable[..., None]] = None,
        on_event: Optional[EventCallback] = None,
        store: Optional[TokenStore] = None,
        store_key: Optional[str] = None,
        clock: Clock = SYSTEM_CLOCK,
        policy: RefreshPolicy = DEFAULT_POLICY,
        random: Optional[Callable[[], float]] = None,
        refresh_ahead: RefreshAhead = "background",
        lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        origins: Origins = None,
        strict_origins: bool = False,
        allow_insecure_http: bool = False,
        dpop: Optional[DPoPKey] = None,
        allow_dpop_downgrade: bool = False,
        refresh_status_codes: Iterable[int] = DEFAULT_REFRESH_STATUS_CODES,
    ) -> None:
        #: The statuses that mean "this token was rejected" (see ``refresh_status_codes``).
        self.refresh_status_codes = refresh_codes(refresh_status_codes)
        #: Which origins may receive the token (and the https rule).
        self.origin_scope = OriginScope(origins, allow_insecure_http=allow_insecure_http)
        # TokenAuth never pins; loopback origins join once checked for proxies
        self._fast_prefixes = self.origin_scope.prefixes
        self._strict = strict_origins
        self._dpop = proofs_for_grant(
            grant, dpop, clock, allow_downgrade=allow_dpop_downgrade, token=token
        )
        extra: dict[str, Any] = {} if random is None else {"random": random}
        self.manager = TokenManager(
            grant,
            token=token,
            on_token=token_callback(on_token, token),
            on_event=on_event,
            store=store,
            store_key=store_key,
            clock=clock,
            policy=policy,
            refresh_ahead=refresh_ahead,
            lock_timeout_seconds=lock_timeout_seconds,
            max_wait_seconds=max_wait_seconds,
            **extra,
        )
        # the live list: hooks registered later count too, an empty one costs nothing
        self._protected_hooks = grant.compliance_hooks.protected_request

    @classmethod
    def from_oauth2_session(
        cls,
        oauth2_session: Any,
        *,
        token_url: Optional[str] = None,
        client_secret: Optional[str] = None,
        auth_method: Optional[str] = None,
        **options: Any,
    ) -> TokenAuth:
        """The :class:`TokenAuth` equivalent to a requests-oauthlib ``OAuth2Session``, for a
        one-line migration: ``session.auth = TokenAuth.from_oauth2_session(oauth)``.

        Taken from the session: the grant (refresh token at ``auto_refresh_url`` when its
        token has a refresh token, client credentials for a ``BackendApplicationClient``),
        its token, ``scope``, ``auto_refresh_kwargs`` (a ``client_secret`` there is sent in
        the body, as requests-oauthlib did; the rest with every token request),
        ``token_updater`` as ``on_token``, its compliance hooks, and its ``verify``,
        ``cert``, ``proxies`` and ``trust_env`` for token requests. requests-oauthlib is
        not imported. The ``OAuth2Session`` is left as it was; use a plain
        :class:`requests.Session` (or the same one, with ``auth`` set) from then on.

        :param oauth2_session: a ``requests_oauthlib.OAuth2Session``.
        :param token_url: the token endpoint when the session does not know it (a backend
            application's ``fetch_token(token_url=...)`` is not kept).
        :param client_secret: the client secret when neither the session nor its
            ``auto_refresh_kwargs`` keep it.
        :param auth_method: how the client authenticates (see :class:`Grant`); default:
            as requests-oauthlib did.
        :param options: other :class:`TokenAuth` parameters (``on_token=`` replaces
            ``token_updater``; ``allow_insecure_http`` applies to the token URL too).
        :raises ConfigurationError: the session's token cannot be renewed, or a
            ``protected_request`` hook that reads the session's own token.
        """
        from ._oauth2_session import grant_from_oauth2_session

        grant, token = grant_from_oauth2_session(
            oauth2_session,
            token_url=token_url,
            client_secret=client_secret,
            auth_method=auth_method,
            allow_insecure_http=bool(options.get("allow_insecure_http", False)),
        )
        options.setdefault("token", token)
        updater = getattr(oauth2_session, "token_updater", None)
        if updater is not None:
            options.setdefault("on_token", updater)
        return cls(grant, **options)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url = r.url
        if url is None or not url.startswith(self._fast_prefixes):
            verdict = self.origin_scope.verdict(url)
            if verdict == LOOPBACK:
                self._check_not_proxied(url)
            elif verdict != ALLOWED:
                return self._withhold(r, verdict)
        if self._protected_hooks:  # requests-oauthlib-style provider fixes
            self.manager.grant.compliance_hooks.before_protected_request(r)
        token = self.manager.get_token()
        r.headers["Authorization"] = token.authorization
        if self._dpop is not None:
            self._dpop.stamp(r, token)
        r.hooks["response"].append(
            RetryHook(self.manager, token, self._dpop, self.refresh_status_codes)
        )
        return r

    def _check_not_proxied(self, url: Optional[str]) -> None:
        """Plain http to this machine: refuse if the environment would send it through a
        proxy (this auth cannot see the session; the adapters bypass proxies instead).
        Once an origin passes, its prefixes join the fast path: checked once per origin.

        :raises OriginNotAllowedError: a proxy from the environment would carry it.
        """
        if url is None or env_proxy_for(url):
            raise proxied_error(url)
        origin = origin_of(url)
        fast = self._fast_prefixes
        if origin is not None and len(fast) < DEFAULT_CHECKED_ORIGINS_LIMIT:
            self._fast_prefixes = fast + url_prefixes(origin)  # one assignment: thread-safe

    def _withhold(self, r: requests.PreparedRequest, verdict: str) -> requests.PreparedRequest:
        """A request the token must not go to: raise, or send it without the token."""
        if verdict == INSECURE:
            raise insecure_error(r.url)
        origin = origin_url(o) if (o := origin_of(r.url)) else "a non-http(s) URL"
        if self._strict:
            raise OriginNotAllowedError(
                f"{origin} is not among this TokenAuth's origins; add it to origins= to "
                "send it the token"
            )
        log.debug("%s is not among the allowed origins: sent without the token", origin)
        return r

    @property
    def dpop(self) -> Optional[DPoPKey]:
        """The DPoP key tokens are bound to, if any."""
        return None if self._dpop is None else self._dpop.key

    @property
    def dpop_proofs(self) -> Optional[DPoPProofs]:
        """What makes the DPoP proofs (shared with the adapters), if DPoP is on."""
        return self._dpop

    @property
    def token(self) -> Optional[Token]:
        """The current token, if any (no refresh)."""
        return self.manager.token

    def get_token(self) -> Token:
        """A valid token, obtaining or refreshing it if needed (see :class:`TokenManager`)."""
        return self.manager.get_token()

    def revoke(self) -> bool:
        """Revoke the current token (its refresh token, else the access token; RFC 7009)
        and forget it; see :meth:`TokenManager.revoke`.

        :returns: whether there was a token to revoke.
        """
        return self.manager.revoke()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # origins checked for proxies here are checked anew where it is unpickled
        state["_fast_prefixes"] = self.origin_scope.prefixes
        return state

    def __repr__(self) -> str:
        return f"TokenAuth({self.manager.grant!r})"

    def __eq__(self, other: object) -> bool:
        # requests compares auth objects when merging settings; identity is the right answer
        return self is other

    def __hash__(self) -> int:
        return id(self)

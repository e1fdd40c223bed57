"""TokenAuth: stamps the token on each request and retries once after a 401."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Callable, Optional

import requests
from requests.auth import AuthBase
from requests.cookies import extract_cookies_to_jar
from requests.utils import rewind_body

from ._clock import SYSTEM_CLOCK, Clock
from ._dpop import DPoPKey, DPoPProofs
from ._errors import OriginNotAllowedError
from ._events import EventCallback
from ._grants import Grant
from ._manager import (
    DEFAULT_LOCK_TIMEOUT_SECONDS,
    DEFAULT_MAX_WAIT_SECONDS,
    TokenCallback,
    TokenManager,
)
from ._origins import (
    ALLOWED,
    INSECURE,
    Origins,
    OriginScope,
    insecure_error,
    origin_of,
    origin_url,
)
from ._policy import DEFAULT_POLICY, RefreshPolicy, should_retry_unauthorized
from ._stores import TokenStore
from ._token import Token

log = logging.getLogger("requests_tokenauth")

Send = Callable[..., requests.Response]


def body_replayable(request: requests.PreparedRequest) -> bool:
    """Whether the body can be sent again in full: none, bytes/str, or a stream whose
    start position requests recorded (a ``BytesIO`` or file). Generators cannot."""
    body: object = request.body
    if body is None or isinstance(body, (bytes, str)):
        return True
    return isinstance(getattr(request, "_body_position", None), int)


def retry_with(
    response: requests.Response,
    sent: Token,
    manager: TokenManager,
    already_retried: bool,
    dpop: Optional[DPoPProofs] = None,
) -> Optional[requests.PreparedRequest]:
    """The guarded 401 retry, shared by :class:`TokenAuth` and the adapters.

    Decides (in :mod:`._policy`) whether ``response`` deserves a retry, asks the manager to
    replace the token that was sent, drains and releases the 401, and returns a copy of
    the request with the body rewound and the new token stamped. ``None``: return the
    response as it is.

    With DPoP, a ``use_dpop_nonce`` challenge (or a request whose proof a redirect
    removed) keeps the token and only makes a fresh proof; either way it is the one retry.
    """
    if response.status_code != 401:
        return None
    request = response.request
    sent_token = request.headers.get("Authorization") == sent.authorization
    if not should_retry_unauthorized(
        status_code=response.status_code,
        www_authenticate=response.headers.get("WWW-Authenticate"),
        already_retried=already_retried,
        sent_token=sent_token,
        body_replayable=body_replayable(request),
    ):
        return None
    new: Optional[Token] = sent
    if dpop is None or sent.token_type != "DPoP" or not _wants_new_proof(dpop, response):
        try:
            new = manager.replace(sent)
        except BaseException:
            response.close()
            raise
    if new is None:
        return None
    response.content  # noqa: B018 - drain, so the connection goes back to the pool
    response.close()
    retry = request.copy()
    body: object = retry.body
    if body is not None and not isinstance(body, (bytes, str)):
        rewind_body(retry)
    jar = getattr(retry, "_cookies", None)
    if jar is not None and response.raw is not None:
        extract_cookies_to_jar(jar, request, response.raw)  # type: ignore[no-untyped-call]
        retry.prepare_cookies(jar)
    retry.headers["Authorization"] = new.authorization
    if dpop is not None:
        dpop.stamp(retry, new)
    if new is not sent:
        manager.notify_retry(new)
    return retry


def _wants_new_proof(dpop: DPoPProofs, response: requests.Response) -> bool:
    return dpop.is_nonce_challenge(response) or "DPoP" not in response.request.headers


class _RetryHook:
    """The response hook of one request: the token it carried and its one-retry budget.

    Lives on the request, not in a thread-local: a request prepared on one thread may be
    sent on another (requests#5178). A redirect chain shares it, so the budget covers it.
    """

    __slots__ = ("_manager", "_token", "_retried", "_dpop")

    def __init__(
        self, manager: TokenManager, token: Token, dpop: Optional[DPoPProofs] = None
    ) -> None:
        self._manager = manager
        self._token = token
        self._retried = False
        self._dpop = dpop

    def __call__(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        dpop = self._dpop
        if dpop is not None and response.status_code != 401:
            dpop.remember_nonce(response)
            if response.is_redirect:
                # requests copies this request for the redirect; its proof names this URL
                # only, so it must not travel on (a same-origin hop gets a fresh one after
                # its 401, as the one retry)
                response.request.headers.pop("DPoP", None)
        if response.status_code != 401:
            return response
        retry = retry_with(response, self._token, self._manager, self._retried, dpop)
        if retry is None:
            return response
        self._retried = True
        connection = response.connection
        new_response: requests.Response = connection.send(retry, **kwargs)
        new_response.history.append(response)
        new_response.request = retry
        return new_response


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
    :param on_token: called once per newly obtained token with its dict; use it to persist
        rotated refresh tokens. Runs on the thread that obtained the token.
    :param on_event: called with each :class:`TokenEvent` (refresh started / succeeded /
        failed, token loaded from the store, 401 retry); never given a secret.
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
        this machine (127.0.0.0/8, ::1 and ``localhost`` are always allowed).
    :param dpop: a :class:`DPoPKey`: bind tokens to it (RFC 9449); every token request and
        every resource request then carries a fresh proof.
    """

    def __init__(
        self,
        grant: Grant,
        *,
        token: Optional[Mapping[str, Any]] = None,
        on_token: Optional[TokenCallback] = None,
        on_event: Optional[EventCallback] = None,
        store: Optional[TokenStore] = None,
        store_key: Optional[str] = None,
        clock: Clock = SYSTEM_CLOCK,
        policy: RefreshPolicy = DEFAULT_POLICY,
        random: Optional[Callable[[], float]] = None,
        refresh_ahead: str = "background",
        lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        origins: Origins = None,
        strict_origins: bool = False,
        allow_insecure_http: bool = False,
        dpop: Optional[DPoPKey] = None,
    ) -> None:
        #: Which origins may receive the token (and the https rule).
        self.origin_scope = OriginScope(origins, allow_insecure_http=allow_insecure_http)
        self._fast_prefixes = self.origin_scope.prefixes  # fixed: TokenAuth never pins
        self._strict = strict_origins
        self._dpop = None if dpop is None else DPoPProofs(dpop, clock)
        if self._dpop is not None:
            grant.use_dpop(self._dpop)
        extra: dict[str, Any] = {} if random is None else {"random": random}
        self.manager = TokenManager(
            grant,
            token=token,
            on_token=on_token,
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

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url = r.url
        if url is None or not url.startswith(self._fast_prefixes):
            verdict = self.origin_scope.verdict(url)
            if verdict != ALLOWED:
                return self._withhold(r, verdict)
        token = self.manager.get_token()
        r.headers["Authorization"] = token.authorization
        if self._dpop is not None:
            self._dpop.stamp(r, token)
        r.hooks["response"].append(_RetryHook(self.manager, token, self._dpop))
        return r

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

    def __repr__(self) -> str:
        return f"TokenAuth({self.manager.grant!r})"

    def __eq__(self, other: object) -> bool:
        # requests compares auth objects when merging settings; identity is the right answer
        return self is other

    def __hash__(self) -> int:
        return id(self)

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
from ._events import EventCallback
from ._grants import Grant
from ._manager import DEFAULT_LOCK_TIMEOUT_SECONDS, TokenCallback, TokenManager
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
    response: requests.Response, sent: Token, manager: TokenManager, already_retried: bool
) -> Optional[requests.PreparedRequest]:
    """The guarded 401 retry, shared by :class:`TokenAuth` and the adapters.

    Decides (in :mod:`._policy`) whether ``response`` deserves a retry, asks the manager to
    replace the token that was sent, drains and releases the 401, and returns a copy of
    the request with the body rewound and the new token stamped. ``None``: return the
    response as it is.
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
    manager.notify_retry(new)
    return retry


class _RetryHook:
    """The response hook of one request: the token it carried and its one-retry budget.

    Lives on the request, not in a thread-local: a request prepared on one thread may be
    sent on another (requests#5178). A redirect chain shares it, so the budget covers it.
    """

    __slots__ = ("_manager", "_token", "_retried")

    def __init__(self, manager: TokenManager, token: Token) -> None:
        self._manager = manager
        self._token = token
        self._retried = False

    def __call__(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.status_code != 401:
            return response
        retry = retry_with(response, self._token, self._manager, self._retried)
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
    ) -> None:
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
            **extra,
        )

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.manager.get_token()
        r.headers["Authorization"] = token.authorization
        r.hooks["response"].append(_RetryHook(self.manager, token))
        return r

    @property
    def token(self) -> Optional[Token]:
        """The current token, if any (no refresh)."""
        return self.manager.token

    def get_token(self) -> Token:
        """A valid token, obtaining or refreshing it if needed (see :class:`TokenManager`)."""
        return self.manager.get_token()

    def __repr__(self) -> str:
        return f"TokenAuth({self.manager.grant!r})"

    def __eq__(self, other: object) -> bool:
        # requests compares auth objects when merging settings; identity is the right answer
        return self is other

    def __hash__(self) -> int:
        return id(self)

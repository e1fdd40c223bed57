"""TokenManager: the current token, one lock, single-flight refresh, the 401 replacement."""

from __future__ import annotations

import contextlib
import logging
import os
import random as _random
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ._clock import SYSTEM_CLOCK, Clock
from ._errors import ConfigurationError, TokenEndpointError, TokenRefreshError
from ._grants import Grant
from ._policy import DEFAULT_POLICY, Deadlines, RefreshPolicy, backoff_seconds, deadlines
from ._token import Token, TokenFormatError

log = logging.getLogger("requests_tokenauth")

#: Callers wait at most this long for another thread's token request before giving up; a
#: little more than the default token-request timeout (5 s connect + 30 s read).
DEFAULT_LOCK_TIMEOUT_SECONDS = 40.0

TokenCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class _Entry:
    """The published token with its deadlines and why it was obtained."""

    __slots__ = ("token", "deadlines", "cause")

    token: Token
    deadlines: Deadlines
    cause: str  # "given", "missing", "expired", "ahead" or "unauthorized"


@dataclass(frozen=True)
class _Failure:
    """Failed token requests in a row, and when the next one may go out."""

    __slots__ = ("count", "next_attempt_monotonic", "error")

    count: int
    next_attempt_monotonic: float
    error: TokenRefreshError


class TokenManager:
    """Holds the current token of one grant and renews it, once, however many threads ask.

    Thread-safe. :meth:`get_token` reads one immutable snapshot without a lock while the
    token is fresh. Inside the refresh margin one caller, chosen by a non-blocking acquire,
    refreshes ahead while the others keep using the still-valid token. With an expired or no
    token, callers wait on the lock, re-check, and only the first refreshes. A failed
    token request is remembered with a backoff: while the current token is valid nobody
    notices; without one, callers get the typed error at once until the next attempt is due.

    :param grant: how tokens are obtained.
    :param token: a token dict saved earlier (requests-oauthlib / Authlib shape).
    :param on_token: called once per newly obtained token with its dict (after the lock is
        released); how rotated refresh tokens get persisted.
    :param clock: time source (:class:`~requests_tokenauth.testing.FakeClock` in tests).
    :param policy: refresh margins, 401 cooldown and backoff.
    :param random: returns floats in [0, 1), for jitter.
    :param lock_timeout_seconds: how long a caller waits for another thread's token request.
    """

    def __init__(
        self,
        grant: Grant,
        *,
        token: Optional[Mapping[str, Any]] = None,
        on_token: Optional[TokenCallback] = None,
        clock: Clock = SYSTEM_CLOCK,
        policy: RefreshPolicy = DEFAULT_POLICY,
        random: Callable[[], float] = _random.random,
        lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    ) -> None:
        if not isinstance(grant, Grant):
            raise ConfigurationError(f"grant must be a Grant, not {type(grant).__name__}")
        self.grant = grant
        self._on_token = on_token
        self._clock = clock
        self._policy = policy
        self._random = random
        self._lock_timeout = lock_timeout_seconds
        self._lock = threading.RLock()
        self._entry: Optional[_Entry] = None
        self._failure: Optional[_Failure] = None
        if token is not None:
            self._entry = self._make_entry(self._load(token), "given")
        _live_managers.add(self)

    def __repr__(self) -> str:
        entry = self._entry
        return f"TokenManager({self.grant!r}, token={entry.token if entry else None!r})"

    # -- reading ----------------------------------------------------------------------------

    @property
    def token(self) -> Optional[Token]:
        """The current token, without any check or refresh (``None`` before the first)."""
        entry = self._entry
        return entry.token if entry is not None else None

    def get_token(self) -> Token:
        """A token to send now, obtaining or refreshing one if needed.

        :raises TokenRefreshError: no valid token and the token request failed (or failed
            recently and the backoff has not passed).
        """
        entry = self._entry
        if entry is not None and self._clock.monotonic() < entry.deadlines.stale_monotonic:
            return entry.token
        return self._get_slow(entry)

    def _get_slow(self, seen: Optional[_Entry]) -> Token:
        now = self._clock.monotonic()
        if seen is not None and now < seen.deadlines.expired_monotonic:
            self._refresh_ahead(seen, now)
            entry = self._entry
            return entry.token if entry is not None else seen.token
        return self._renew(
            lambda entry, now: entry is None or (now >= entry.deadlines.expired_monotonic),
            "expired" if seen else "missing",
        )

    # -- renewing ---------------------------------------------------------------------------

    def _refresh_ahead(self, seen: _Entry, now: float) -> None:
        """Stale token: one caller refreshes, nobody waits, a failure only delays the next try."""
        failure = self._failure
        if failure is not None and now < failure.next_attempt_monotonic:
            return
        if not self._lock.acquire(blocking=False):
            return
        new: Optional[Token] = None
        try:
            # a failure is logged and backed off in _fetch; the current token is still valid
            if self._entry is seen and self._due(self._clock.monotonic()):
                with contextlib.suppress(TokenRefreshError):
                    new = self._fetch(seen, "ahead")
        finally:
            self._lock.release()
        if new is not None:
            self._notify(new)

    def _renew(self, needed: Callable[[Optional[_Entry], float], bool], cause: str) -> Token:
        """Blocking renewal: lock, re-check with ``needed``, fetch once, publish."""
        if not self._lock.acquire(timeout=self._lock_timeout):
            raise TokenEndpointError(
                f"gave up after {self._lock_timeout:g}s waiting for another thread's token request"
            )
        try:
            entry = self._entry
            now = self._clock.monotonic()
            if entry is not None and not needed(entry, now):
                return entry.token
            failure = self._failure
            if failure is not None and now < failure.next_attempt_monotonic:
                raise _retry_later(failure, now) from failure.error
            new = self._fetch(entry, cause)
        finally:
            self._lock.release()
        self._notify(new)
        return new

    def _due(self, now: float) -> bool:
        failure = self._failure
        return failure is None or now >= failure.next_attempt_monotonic

    def _fetch(self, entry: Optional[_Entry], cause: str) -> Token:
        """One token request; the caller holds the lock. Publishes or records the failure."""
        current = entry.token if entry is not None else None
        log.debug("requesting a token (%s, cause=%s)", self.grant.grant_type, cause)
        try:
            token = self.grant.fetch(current, self._clock)
        except TokenRefreshError as exc:
            count = self._failure.count + 1 if self._failure is not None else 1
            wait = backoff_seconds(count, self._policy, self._random(), exc.retry_after_seconds)
            self._failure = _Failure(count, self._clock.monotonic() + wait, exc)
            log.warning(
                "token request failed (%s, cause=%s, attempt %d): %s; next attempt in %.2fs",
                self.grant.grant_type,
                cause,
                count,
                exc,
                wait,
            )
            raise
        self._failure = None
        self._entry = self._make_entry(token, cause)
        log.debug(
            "obtained token %s (expires_in=%s, cause=%s)",
            token.fingerprint,
            token.expires_in_seconds,
            cause,
        )
        return token

    def replace(self, rejected: Token) -> Optional[Token]:
        """The token to retry with after ``rejected`` got a 401, or ``None`` for no retry.

        Refreshes only if ``rejected`` is still the current token; if another thread has
        already replaced it, the newer token is returned with no token request. A token that
        was itself obtained because of a 401 is not replaced again within the policy's
        cooldown (a resource that rejects every token must not cause a refresh storm).

        :raises TokenRefreshError: the token request failed.
        """
        entry = self._entry
        now = self._clock.monotonic()
        if (
            entry is not None
            and entry.token is not rejected
            and now < entry.deadlines.expired_monotonic
        ):
            return entry.token
        if entry is not None and entry.token is rejected and not self._may_replace(entry, now):
            return None

        def needed(entry: Optional[_Entry], now: float) -> bool:
            if entry is None or now >= entry.deadlines.expired_monotonic:
                return True
            return entry.token is rejected and self._may_replace(entry, now)

        new = self._renew(needed, "unauthorized")
        return None if new is rejected else new

    def _may_replace(self, entry: _Entry, now: float) -> bool:
        if entry.cause != "unauthorized":
            return True
        cooldown_over = (
            now >= entry.token.obtained_monotonic + self._policy.unauthorized_cooldown_seconds
        )
        if not cooldown_over:
            log.info("a token obtained after a 401 was rejected again; not replacing it yet")
        return cooldown_over

    def forget(self) -> None:
        """Drop the current token (and any remembered failure); the next call obtains one."""
        with self._lock:
            self._entry = None
            self._failure = None

    # -- helpers ----------------------------------------------------------------------------

    def _make_entry(self, token: Token, cause: str) -> _Entry:
        return _Entry(token, deadlines(token, self._policy, self._random()), cause)

    def _load(self, data: Mapping[str, Any]) -> Token:
        try:
            return Token.from_dict(
                data, now_monotonic=self._clock.monotonic(), now=self._clock.time()
            )
        except TokenFormatError as exc:
            raise ConfigurationError(f"the saved token is not usable: {exc}") from None

    def _notify(self, token: Token) -> None:
        if self._on_token is None:
            return
        try:
            self._on_token(token.to_dict())
        except Exception as exc:  # the token is in use; a failing save must not fail the call
            log.error(
                "on_token callback raised %s; the new token is in use but was not saved",
                type(exc).__name__,
            )

    # -- pickling and fork --------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        state["_entry"] = None  # tokens are not pickled: a pickle is not a secure store
        state["_failure"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        _live_managers.add(self)

    def _after_fork_in_child(self) -> None:
        # The parent may have forked while another thread held the lock mid-refresh: that
        # thread does not exist here, so the child starts with a fresh lock.
        self._lock = threading.RLock()


def _retry_later(failure: _Failure, now: float) -> TokenRefreshError:
    """A new exception of the cached failure's type, saying when the next attempt is due."""
    exc = failure.error
    wait = failure.next_attempt_monotonic - now
    clone = type(exc)(
        f"{exc} (failed {failure.count} time(s) in a row; next attempt in {wait:.2f}s)",
        error=exc.error,
        error_description=exc.error_description,
        error_uri=exc.error_uri,
        status_code=exc.status_code,
        retry_after_seconds=exc.retry_after_seconds,
        body=exc.body,
    )
    clone.next_attempt_in_seconds = wait
    return clone


_live_managers: weakref.WeakSet[TokenManager] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for manager in list(_live_managers):
        manager._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)

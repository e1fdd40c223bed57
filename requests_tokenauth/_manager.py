"""TokenManager: the current token, one lock, single-flight refresh, the 401 replacement."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random as _random
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ._clock import SYSTEM_CLOCK, Clock
from ._errors import (
    ConfigurationError,
    TokenAuthError,
    TokenEndpointError,
    TokenRefreshError,
    TokenStoreError,
)
from ._events import EventCallback, TokenEvent, emit
from ._failures import AttemptSignal, Failure
from ._grants import Grant
from ._policy import DEFAULT_POLICY, Deadlines, RefreshPolicy, deadlines
from ._stores import TokenStore
from ._stores import store_key as derive_store_key
from ._token import Token, TokenFormatError

log = logging.getLogger("requests_tokenauth")

#: Callers wait at most this long for another thread's token request before giving up; a
#: little more than the default token-request timeout (5 s connect + 30 s read).
DEFAULT_LOCK_TIMEOUT_SECONDS = 40.0

#: With no valid token and the token endpoint failing, a caller waits this long at most for
#: an attempt to succeed before it gets the error: long enough that a restart or failover of
#: the endpoint (a few seconds) costs callers nothing, short enough that a web server's
#: worker threads are not tied up for long in a real outage (see docs/concurrency.rst).
DEFAULT_MAX_WAIT_SECONDS = 5.0

#: How a refresh ahead of expiry runs: on a short-lived thread, so no caller waits for it.
REFRESH_AHEAD_MODES = ("background", "inline")

TokenCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class _Entry:
    """The published token with its deadlines and why it was obtained."""

    __slots__ = ("token", "deadlines", "cause")

    token: Token
    deadlines: Deadlines
    cause: str  # "given", "stored", "missing", "expired", "ahead" or "unauthorized"


Needed = Callable[[Optional[_Entry], float], bool]


def _expired(entry: Optional[_Entry], now: float) -> bool:
    return entry is None or now >= entry.deadlines.expired_monotonic


def _stale(entry: Optional[_Entry], now: float) -> bool:
    return entry is None or now >= entry.deadlines.stale_monotonic


class TokenManager:
    """Holds the current token of one grant and renews it, once, however many threads ask.

    Thread-safe. :meth:`get_token` reads one immutable snapshot without a lock while the
    token is fresh. Inside the refresh margin one caller, chosen by a non-blocking acquire,
    starts a refresh ahead (on a short-lived thread by default) while every caller keeps
    using the still-valid token. With an expired or no token, callers wait on the lock,
    re-check, and only the first one refreshes. A failed token request is remembered with a
    backoff: while the current token is still accepted (until its nominal expiry, past the
    skew) nobody notices; without one, callers wait up to ``max_wait_seconds`` for the next
    attempts (one at a time, every half second at most) and all proceed when one succeeds,
    else get the typed error.

    With a ``store``, renewal takes the store's lock too, reloads (another process may have
    refreshed and rotated the refresh token), requests a token only if the stored one is not
    good enough, and saves the new one.

    :param grant: how tokens are obtained.
    :param token: a token dict saved earlier (requests-oauthlib / Authlib shape). With a
        store, it only seeds a store that holds no token for this key yet.
    :param on_token: called once per newly obtained token with its dict (after the lock is
        released); how rotated refresh tokens get persisted.
    :param on_event: called with each :class:`TokenEvent` (also logged as structured records).
    :param store: a :class:`TokenStore` shared with other managers, processes or hosts.
    :param store_key: the key in the store; derived from the grant when omitted.
    :param clock: time source (:class:`~requests_tokenauth.testing.FakeClock` in tests).
    :param policy: refresh margins, 401 cooldown and backoff.
    :param random: returns floats in [0, 1), for jitter.
    :param refresh_ahead: ``"background"`` (a short-lived thread refreshes; no caller waits)
        or ``"inline"`` (the caller that notices refreshes before its request goes out).
    :param lock_timeout_seconds: how long a caller waits for another thread's token request.
    :param max_wait_seconds: how long a caller with no valid token waits for a token while
        token requests fail with a transient error (``0``: get the error at once); a next
        attempt due later than that (a long ``Retry-After``) fails it at once.
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
        random: Callable[[], float] = _random.random,
        refresh_ahead: str = "background",
        lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
    ) -> None:
        if not isinstance(grant, Grant):
            raise ConfigurationError(f"grant must be a Grant, not {type(grant).__name__}")
        if refresh_ahead not in REFRESH_AHEAD_MODES:
            raise ConfigurationError(f"refresh_ahead must be one of {REFRESH_AHEAD_MODES}")
        if not (
            isinstance(max_wait_seconds, (int, float))
            and math.isfinite(max_wait_seconds)
            and max_wait_seconds >= 0
        ):
            raise ConfigurationError("max_wait_seconds must be a finite number >= 0")
        self.grant = grant
        self._on_token = on_token
        self._on_event = on_event
        self._store = store
        self._key = store_key or (derive_store_key(grant) if store is not None else "")
        self._clock = clock
        self._policy = policy
        self._random = random
        self._background = refresh_ahead == "background"
        self._lock_timeout = lock_timeout_seconds
        self._max_wait = float(max_wait_seconds)
        self._attempts = AttemptSignal()  # callers without a token wait here for attempts
        self._lock = threading.RLock()
        self._ahead = threading.Lock()  # held while a refresh ahead is in flight
        self._entry: Optional[_Entry] = None
        self._failure: Optional[Failure] = None
        self._seed: Optional[Token] = None
        if token is not None:
            loaded = self._load(token)
            if store is None:
                self._entry = self._make_entry(loaded, "given")
            else:
                self._seed = loaded  # the store's token, if it has one, wins
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

        :raises TokenRefreshError: no valid token, and no token request succeeded within
            ``max_wait_seconds`` (``waited_seconds`` and ``next_attempt_in_seconds`` say
            how long it waited and when the next attempt is due), or the failure is
            terminal (``invalid_grant``).
        :raises TokenStoreError: no valid token and the shared store could not be locked.
        """
        entry = self._entry
        if entry is not None and self._clock.monotonic() < entry.deadlines.stale_monotonic:
            return entry.token
        return self._get_slow(entry)

    def _get_slow(self, seen: Optional[_Entry]) -> Token:
        now = self._clock.monotonic()
        if seen is not None and now < seen.deadlines.expired_monotonic:
            self._refresh_ahead(seen, now)
            return seen.token  # still valid; the refresh publishes its token when done
        accepted = seen is not None and now < seen.deadlines.nominal_expiry_monotonic
        if seen is not None and accepted and not self._due(now):
            return seen.token  # inside the skew, renewal failing: the server still accepts it
        return self._renew(_expired, "expired" if seen else "missing", serve_accepted=True)

    # -- renewing ---------------------------------------------------------------------------

    def _refresh_ahead(self, seen: _Entry, now: float) -> None:
        """Stale token: one caller starts a refresh, nobody waits for it, a failure only
        delays the next try."""
        if not self._due(now) or not self._ahead.acquire(blocking=False):
            return
        if self._background:
            worker = threading.Thread(
                target=self._ahead_worker, args=(seen,), name="tokenauth-refresh", daemon=True
            )
            try:
                worker.start()
                return
            except RuntimeError:  # no new threads (interpreter shutting down): do it here
                pass
        self._ahead_worker(seen)

    def _ahead_worker(self, seen: _Entry) -> None:
        new: Optional[Token] = None
        try:
            if self._lock.acquire(blocking=False):  # else a blocking renewal is under way
                try:
                    if self._entry is seen and self._due(self._clock.monotonic()):
                        # failures are logged and backed off; the current token is still valid
                        with contextlib.suppress(TokenAuthError):
                            token, is_new = self._obtain(seen, "ahead", _stale)
                            new = token if is_new else None
                finally:
                    self._lock.release()
        finally:
            self._ahead.release()
            self._attempts.announce()
        if new is not None:
            self._notify(new)

    def wait_for_refresh(self, timeout: float = 10.0) -> bool:
        """Wait until no refresh ahead of expiry is in flight (for tests and shutdown).

        :returns: ``False`` if one was still running after ``timeout`` seconds.
        """
        if not self._ahead.acquire(timeout=timeout):
            return False
        self._ahead.release()
        return True

    def _renew(self, needed: Needed, cause: str, *, serve_accepted: bool = False) -> Token:
        """Blocking renewal: lock, re-check with ``needed``, obtain once, publish.

        A failing renewal is ridden out. With ``serve_accepted`` (not for a 401 replacement:
        that token was refused), a token the server still accepts (inside its expiry skew)
        is returned. Otherwise the caller waits for the next attempt (made by whichever
        waiter gets the lock first; the rest join it) while a transient failure's next
        attempt is due within ``max_wait_seconds`` of the call.
        """
        started = self._clock.monotonic()
        give_up = started + self._max_wait if self._max_wait > 0 else -math.inf
        waited = False
        while True:
            if not self._lock.acquire(timeout=self._lock_timeout):
                raise TokenEndpointError(
                    f"gave up after {self._lock_timeout:g}s waiting for another thread's "
                    "token request"
                )
            try:
                entry = self._entry
                now = self._clock.monotonic()
                if entry is not None and not needed(entry, now):
                    return entry.token
                accepted = entry is not None and now < entry.deadlines.nominal_expiry_monotonic
                usable = entry if serve_accepted and accepted else None
                failure = self._failure
                if failure is None or now >= failure.next_attempt_monotonic:
                    try:
                        token, is_new = self._obtain(entry, cause, needed)
                    except TokenAuthError as exc:
                        now, failure = self._clock.monotonic(), self._failure
                        if usable is not None:
                            return self._serve_until_expiry(usable, now)
                        if failure is None or not failure.worth_waiting_for(give_up):
                            if not waited or failure is None:
                                raise
                            raise failure.error_for_caller(now, now - started) from exc
                    else:
                        break
                    finally:
                        self._attempts.announce()
                elif usable is not None:
                    return usable.token
                elif not failure.worth_waiting_for(give_up):
                    raise failure.error_for_caller(now, now - started) from failure.error
                generation = self._attempts.generation
                wake_at = failure.next_attempt_monotonic
            finally:
                self._lock.release()
            self._attempts.wait(self._clock, generation, wake_at)
            waited = True
        if is_new:
            self._notify(token)
        return token

    def _serve_until_expiry(self, entry: _Entry, now: float) -> Token:
        left = entry.deadlines.left_seconds(now)
        log.warning("token renewal failed; the current token is used for its last %.2fs", left)
        return entry.token

    def _due(self, now: float) -> bool:
        failure = self._failure
        return failure is None or now >= failure.next_attempt_monotonic

    def _obtain(self, entry: Optional[_Entry], cause: str, needed: Needed) -> tuple[Token, bool]:
        """A token for ``cause``; the caller holds the lock. With a store: its lock, reload,
        request only if the stored token is ``needed`` too, save. Returns (token, is new)."""
        store = self._store
        if store is None:
            return self._fetch(entry, cause), True
        try:
            with store.lock(self._key):
                stored = self._stored_entry(store)
                if stored is not None and not needed(stored, self._clock.monotonic()):
                    self._failure = None  # the store works again: a failure streak ended
                    self._entry = stored
                    self._event("token_loaded", cause, token=stored.token)
                    return stored.token, False
                token = self._fetch(_newer(stored, entry), cause)
                try:
                    store.save(self._key, token.to_dict())
                except TokenStoreError as exc:
                    log.error("token store could not save the new token: %s", exc)
                return token, True
        except TokenStoreError as exc:
            wait = self._record_failure(exc)
            log.warning("token store unavailable: %s; next attempt in %.2fs", exc, wait)
            raise

    def _stored_entry(self, store: TokenStore) -> Optional[_Entry]:
        """The store's token (seeding it with ``token=`` when empty); ``None`` if it has none
        or what it has cannot be read (a good token will replace it)."""
        try:
            data = store.load(self._key)
        except TokenStoreError as exc:
            log.warning("token store could not load: %s; a new token will replace it", exc)
            data = None
        if data is None:
            seed, self._seed = self._seed, None
            if seed is None:
                return None
            with contextlib.suppress(TokenStoreError):
                store.save(self._key, seed.to_dict())
            return self._make_entry(seed, "given")
        self._seed = None
        try:
            token = self._token_from_dict(data)
        except TokenFormatError as exc:
            log.warning("token store holds an unusable token (%s); replacing it", exc)
            return None
        return self._make_entry(token, "stored")

    def _fetch(self, entry: Optional[_Entry], cause: str) -> Token:
        """One token request; the caller holds the lock. Publishes or records the failure."""
        current = entry.token if entry is not None else None
        attempt = self._failure.count + 1 if self._failure is not None else 1
        self._event("refresh_started", cause, attempt=attempt)
        started = self._clock.monotonic()
        try:
            token = self.grant.fetch(current, self._clock)
        except TokenRefreshError as exc:
            wait = self._record_failure(exc)
            self._event(
                "refresh_failed",
                cause,
                attempt=attempt,
                duration_seconds=self._clock.monotonic() - started,
                error=exc.error or type(exc).__name__,
                retryable=exc.retryable,
                next_attempt_in_seconds=wait,
            )
            raise
        self._failure = None
        self._entry = self._make_entry(token, cause)
        self._event(
            "refresh_succeeded",
            cause,
            attempt=attempt,
            duration_seconds=self._clock.monotonic() - started,
            token=token,
        )
        return token

    def _record_failure(self, exc: TokenAuthError) -> float:
        """Remember ``exc`` and when the next attempt may go out; returns the wait."""
        entry, now = self._entry, self._clock.monotonic()
        self._failure = Failure.after(
            self._failure,
            exc,
            now=now,
            policy=self._policy,
            draw=self._random(),
            token_left_seconds=entry.deadlines.left_seconds(now) if entry is not None else 0.0,
        )
        return self._failure.next_attempt_monotonic - now

    def replace(self, rejected: Token) -> Optional[Token]:
        """The token to retry with after ``rejected`` got a 401, or ``None`` for no retry.

        Refreshes only if ``rejected`` is still the current token; if another thread (or,
        with a store, another process) has already replaced it, the newer token is returned
        with no token request. A token that was itself obtained because of a 401 is not
        replaced again within the policy's cooldown: a resource that rejects every token
        must not cause a refresh storm. While the token endpoint fails transiently, the
        caller waits for the next attempts as :meth:`get_token` does.

        :raises TokenRefreshError: the token request failed (after ``max_wait_seconds``).
        """
        entry = self._entry
        now = self._clock.monotonic()
        if entry is not None and not _is(entry.token, rejected) and not _expired(entry, now):
            return entry.token
        if entry is not None and _is(entry.token, rejected) and not self._may_replace(entry, now):
            return None

        def needed(entry: Optional[_Entry], now: float) -> bool:
            if _expired(entry, now):
                return True
            assert entry is not None
            return _is(entry.token, rejected) and self._may_replace(entry, now)

        new = self._renew(needed, "unauthorized")
        return None if _is(new, rejected) else new

    def _may_replace(self, entry: _Entry, now: float) -> bool:
        if entry.cause != "unauthorized":
            return True
        cooldown = self._policy.unauthorized_cooldown_seconds
        if now >= entry.token.obtained_monotonic + cooldown:
            return True
        log.info("a token obtained after a 401 was rejected again; not replacing it yet")
        return False

    def notify_retry(self, token: Token) -> None:
        """Report that a request is being retried with ``token`` after a 401."""
        self._event("unauthorized_retry", "unauthorized", token=token)

    def revoke(self) -> bool:
        """Revoke the current token at the grant's revocation endpoint (RFC 7009): its
        refresh token, or the access token when it has none; then forget it (the next call
        obtains a new one). Holds the lock, so no refresh races the revocation; the token is
        forgotten even if the revocation request fails, and removed from a shared store (under
        the store's lock) so that no sharer keeps using it.

        :returns: whether there was a token to revoke.
        :raises ConfigurationError: the grant knows no revocation endpoint.
        :raises TokenRefreshError: the revocation request failed.
        :raises TokenStoreError: the store could not be locked or the token removed.
        """
        if not self._lock.acquire(timeout=self._lock_timeout):
            raise TokenEndpointError(
                f"gave up after {self._lock_timeout:g}s waiting for another thread's token request"
            )
        try:
            entry = self._entry
            if entry is None:
                return False
            token = entry.token
            try:
                if token.refresh_token:
                    self.grant.revoke(token.refresh_token, "refresh_token", self._clock)
                else:
                    self.grant.revoke(token.access_token, "access_token", self._clock)
            finally:
                self._entry = None
                self._failure = None
                if self._store is not None:
                    with self._store.lock(self._key):
                        self._store.delete(self._key)
            return True
        finally:
            self._lock.release()

    def forget(self) -> None:
        """Drop the current token (and any remembered failure); the next call obtains one."""
        with self._lock:
            self._entry = None
            self._failure = None

    # -- helpers ----------------------------------------------------------------------------

    def _make_entry(self, token: Token, cause: str) -> _Entry:
        return _Entry(token, deadlines(token, self._policy, self._random()), cause)

    def _token_from_dict(self, data: Mapping[str, Any]) -> Token:
        return Token.from_dict(data, now_monotonic=self._clock.monotonic(), now=self._clock.time())

    def _load(self, data: Mapping[str, Any]) -> Token:
        try:
            return self._token_from_dict(data)
        except TokenFormatError as exc:
            raise ConfigurationError(f"the saved token is not usable: {exc}") from None

    def _event(
        self,
        kind: str,
        cause: str,
        *,
        attempt: int = 1,
        duration_seconds: Optional[float] = None,
        error: Optional[str] = None,
        retryable: Optional[bool] = None,
        next_attempt_in_seconds: Optional[float] = None,
        token: Optional[Token] = None,
    ) -> None:
        event = TokenEvent(
            kind=kind,
            grant_type=self.grant.grant_type,
            cause=cause,
            attempt=attempt,
            duration_seconds=duration_seconds,
            error=error,
            retryable=retryable,
            next_attempt_in_seconds=next_attempt_in_seconds,
            fingerprint=token.fingerprint if token is not None else None,
        )
        emit(event, self._on_event)

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
        for name in ("_lock", "_ahead"):
            del state[name]
        # tokens are not pickled: a pickle is not a secure store
        state.update(_entry=None, _failure=None, _seed=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._after_fork_in_child()
        _live_managers.add(self)

    def _after_fork_in_child(self) -> None:
        # The parent may have forked while another thread held a lock mid-refresh: that
        # thread does not exist here, so the child starts with fresh locks.
        self._lock = threading.RLock()
        self._ahead = threading.Lock()


def _is(token: Token, other: Token) -> bool:
    """Same token? Tokens loaded from a store are new objects, so compare the value."""
    return token is other or token.access_token == other.access_token


def _newer(a: Optional[_Entry], b: Optional[_Entry]) -> Optional[_Entry]:
    """The entry obtained later (it holds the newest, possibly rotated, refresh token)."""
    if a is None or b is None:
        return a or b
    return a if a.token.obtained_monotonic >= b.token.obtained_monotonic else b


_live_managers: weakref.WeakSet[TokenManager] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for manager in list(_live_managers):
        manager._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)

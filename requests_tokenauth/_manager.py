"""TokenManager: the current token, one lock, single-flight refresh, the 401 replacement."""

from __future__ import annotations

import contextlib
import logging
import math
import random as _random
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable, Optional

from ._ahead import AheadRunner
from ._attempt import fetch_reported
from ._clock import SYSTEM_CLOCK, Clock
from ._delivery import Outbox, TokenCallback, flush_at_exit
from ._entry import Entry, Needed, expired, make_entry, stale, token_from_dict
from ._errors import ConfigurationError, TokenAuthError, TokenEndpointError, TokenStoreError
from ._events import EventCallback
from ._failures import AttemptSignal, Failure
from ._forksafe import ForkSafe, rlock
from ._grants import Grant
from ._grants._wire import Sender, sending_by_default
from ._options import (
    DEFAULT_LOCK_TIMEOUT_SECONDS,
    DEFAULT_MAX_WAIT_SECONDS,
    REFRESH_AHEAD_MODES,
    checked_max_wait,
)
from ._policy import DEFAULT_POLICY, RefreshPolicy
from ._replacement import Replacing
from ._revocation import Revoking
from ._store_renewal import StoreSlot
from ._stores import TokenStore
from ._stores import store_key as derive_store_key
from ._token import Token, TokenFormatError

log = logging.getLogger("requests_tokenauth")

__all__ = [
    "DEFAULT_LOCK_TIMEOUT_SECONDS",
    "DEFAULT_MAX_WAIT_SECONDS",
    "REFRESH_AHEAD_MODES",
    "TokenCallback",
    "TokenManager",
]


class TokenManager(Replacing, Revoking, ForkSafe):
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

    With a ``store``, renewal first reads the store without its lock and adopts a newer
    token another process saved; only if there is none does it take the store's lock,
    reload (another process may have refreshed and rotated the refresh token), request a
    token only if the stored one is not good enough, and save the new one. The refresh
    ahead then starts at least three times the last renewal's duration before expiry.

    The parameters are :class:`TokenAuth`'s, which documents each in full (``on_token`` and
    ``on_event``: in the order obtained, never overlapping, with no lock held, a failed
    ``on_token`` retried while its token is current; :meth:`wait_for_refresh` covers them
    and interpreter exit waits up to 10 s for them); ``grant`` is how tokens are obtained,
    ``token`` a saved token dict (with a store, it only seeds an empty one), ``clock`` the
    time source (:class:`~requests_tokenauth.testing.FakeClock` in tests), ``random`` a
    source of floats in [0, 1) for jitter, ``lock_timeout_seconds`` how long a caller waits
    for another thread's token request and ``max_wait_seconds`` how long a caller with no
    valid token waits for one while token requests fail (``0``: the error at once) and
    ``sender`` what sends the token requests unless the caller's context names one (see
    :mod:`._grants._wire`; default: the grant's own requests transport).
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
        sender: Optional[Sender] = None,
    ) -> None:
        if not isinstance(grant, Grant):
            raise ConfigurationError(f"grant must be a Grant, not {type(grant).__name__}")
        if refresh_ahead not in REFRESH_AHEAD_MODES:
            raise ConfigurationError(f"refresh_ahead must be one of {REFRESH_AHEAD_MODES}")
        self.grant = grant
        self._sender = sender
        self._clock = clock
        self._policy = policy
        self._random = random
        self._lock_timeout = lock_timeout_seconds
        self._max_wait = checked_max_wait(max_wait_seconds)
        self._attempts = AttemptSignal()  # callers without a token wait here for attempts
        self._lock = threading.RLock()
        self._ahead = AheadRunner(background=refresh_ahead == "background")
        self._entry: Optional[Entry] = None
        self._failure: Optional[Failure] = None
        self._outbox = Outbox(grant.grant_type, clock, on_token, on_event)
        self._store: Optional[StoreSlot] = None
        self._key = store_key or (derive_store_key(grant) if store is not None else "")
        loaded = self._load(token) if token is not None else None
        if store is not None:
            self._store = StoreSlot(  # the store's token, if it has one, wins over ``token=``
                store, self._key, loaded, clock=clock, policy=policy, random=random
            )
        elif loaded is not None:
            self._entry = self._make_entry(loaded, "given")
        self._track()

    # tokens are not pickled (a pickle is not a secure store); locks are new in a child
    _fresh_locks = {"_lock": rlock}
    _not_pickled = {"_entry": lambda: None, "_failure": lambda: None}

    def _track(self) -> None:
        super()._track()
        flush_at_exit(self)  # a refresh ahead still running at exit gets to save its token

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
            if self._outbox.undelivered is not None:  # on_token failed on this token
                self._outbox.redeliver(entry.token, self._clock.monotonic())
            return entry.token
        return self._get_slow(entry)

    def token_nowait(self) -> Optional[Token]:
        """The token to send now when that needs no waiting, else ``None``: the caller must
        then call :meth:`get_token` where it may block (for asyncio, on another thread).

        Fresh, or stale with refresh ahead in the background (started here, on its own
        thread), or inside the skew while renewal keeps failing: the token. Expired,
        missing, or stale with ``refresh_ahead="inline"``: ``None``. Never runs a callback
        on the caller's thread (a due ``on_token`` retry goes to the refresh-ahead thread).
        """
        entry = self._entry
        if entry is None:
            return None
        now = self._clock.monotonic()
        if self._outbox.redelivery_due(now) and self._ahead.background:
            self._ahead.start(lambda: self._outbox.redeliver(entry.token, self._clock.monotonic()))
        if now < entry.deadlines.stale_monotonic:
            return entry.token
        if now < entry.deadlines.expired_monotonic:
            if not self._ahead.background:
                return None
            self._refresh_ahead(entry, now)
            return entry.token
        if now < entry.deadlines.nominal_expiry_monotonic and not self._due(now):
            return entry.token
        return None

    def _get_slow(self, seen: Optional[Entry]) -> Token:
        now = self._clock.monotonic()
        if seen is not None and now < seen.deadlines.expired_monotonic:
            self._refresh_ahead(seen, now)
            if self._outbox.undelivered is not None:  # refreshing may keep failing
                self._outbox.redeliver(seen.token, now)
            return seen.token  # still valid; the refresh publishes its token when done
        accepted = seen is not None and now < seen.deadlines.nominal_expiry_monotonic
        if seen is not None and accepted and not self._due(now):
            return seen.token  # inside the skew, renewal failing: the server still accepts it
        return self._renew(expired, "expired" if seen else "missing", serve_accepted=True)

    # -- renewing ---------------------------------------------------------------------------

    def _refresh_ahead(self, seen: Entry, now: float) -> None:
        """Stale token: one caller starts a refresh, nobody waits for it, a failure only
        delays the next try."""
        if self._due(now):
            self._ahead.start(lambda: self._ahead_work(seen))

    def _ahead_work(self, seen: Entry) -> None:
        try:
            if self._lock.acquire(blocking=False):  # else a blocking renewal is under way
                try:
                    if self._entry is seen and self._due(self._clock.monotonic()):
                        # failures are logged and backed off; the current token is still valid
                        with contextlib.suppress(TokenAuthError):
                            self._obtain(seen, "ahead", stale)
                finally:
                    self._lock.release()
        finally:
            self._attempts.announce()
            self._outbox.flush()

    def wait_for_refresh(self, timeout: float = 10.0) -> bool:
        """Wait until no refresh ahead of expiry is in flight and every token and event
        obtained so far has been handed to ``on_token``/``on_event`` (for tests and
        shutdown; it also runs at interpreter exit). Do not call it from those callbacks.

        :returns: ``False`` if one was still running after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout  # real time even under a FakeClock: a wait
        if not self._ahead.wait_idle(timeout):
            return False
        return self._outbox.wait_idle(max(deadline - time.monotonic(), 0.0))

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
            self._acquire()
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
                        token = self._obtain(entry, cause, needed)
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
                self._outbox.flush()  # on_token and on_event, in order, with no lock held
            self._attempts.wait(self._clock, generation, wake_at)
            waited = True
        return token

    def _serve_until_expiry(self, entry: Entry, now: float) -> Token:
        left = entry.deadlines.left_seconds(now)
        log.warning("token renewal failed; the current token is used for its last %.2fs", left)
        return entry.token

    def _acquire(self) -> None:
        if not self._lock.acquire(timeout=self._lock_timeout):
            raise TokenEndpointError(
                f"gave up after {self._lock_timeout:g}s waiting for another thread's token request"
            )

    def _due(self, now: float) -> bool:
        failure = self._failure
        return failure is None or now >= failure.next_attempt_monotonic

    def _obtain(self, entry: Optional[Entry], cause: str, needed: Needed) -> Token:
        """A token for ``cause``; the caller holds the lock. With a store: its lock, reload,
        request only if the stored token is ``needed`` too, save."""
        store = self._store
        if store is None:
            return self._fetch(entry, cause)
        try:
            adopted, token = store.renew(entry, needed, lambda base: self._fetch(base, cause))
        except TokenStoreError as exc:
            wait = self._record_failure(exc)
            log.warning("token store unavailable: %s; next attempt in %.2fs", exc, wait)
            raise
        if adopted is not None:
            self._failure = None  # the store works again: a failure streak ended
            self._entry = adopted
            self._outbox.event("token_loaded", cause, token=adopted.token)
            return adopted.token
        assert token is not None
        return token

    def _fetch(self, entry: Optional[Entry], cause: str) -> Token:
        """One token request; the caller holds the lock. Publishes or records the failure."""

        def publish(token: Token) -> None:
            self._failure = None
            self._entry = self._make_entry(token, cause)
            self._outbox.token(token, cause)  # queued under the lock: the order obtained

        with sending_by_default(self._sender):
            return self._fetch_reported(entry, cause, publish)

    def _fetch_reported(
        self, entry: Optional[Entry], cause: str, publish: Callable[[Token], None]
    ) -> Token:
        return fetch_reported(
            self.grant,
            entry.token if entry is not None else None,
            cause=cause,
            attempt=self._failure.count + 1 if self._failure is not None else 1,
            clock=self._clock,
            outbox=self._outbox,
            record_failure=self._record_failure,
            publish=publish,
        )

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

    def forget(self) -> None:
        """Drop the current token (and any remembered failure); the next call obtains one."""
        with self._lock:
            self._entry = None
            self._failure = None

    # -- helpers ----------------------------------------------------------------------------

    def _make_entry(self, token: Token, cause: str) -> Entry:
        lead = self._store.lead_seconds() if self._store is not None else 0.0
        return make_entry(token, cause, self._policy, self._random(), lead)

    def _load(self, data: Mapping[str, Any]) -> Token:
        try:
            return token_from_dict(data, self._clock)
        except TokenFormatError as exc:
            raise ConfigurationError(f"the saved token is not usable: {exc}") from None

"""Outbox: new tokens to ``on_token`` and events to ``on_event``, in the order they happened,
outside the manager's locks; redelivery of a token whose save failed; a bounded wait at
interpreter exit for deliveries still under way."""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable, Optional, Protocol, Union

from ._clock import Clock
from ._entry import same_token
from ._events import EventCallback, TokenEvent, call_back, log_event
from ._forksafe import ForkSafe
from ._token import Token

log = logging.getLogger("requests_tokenauth")

TokenCallback = Callable[[dict[str, Any]], None]

#: A failed ``on_token`` is retried after 1 s, then 2, 4... (each retry logs an error).
DEFAULT_REDELIVERY_FIRST_SECONDS = 1.0
#: ...but at least once a minute while the token it failed to save is still in use.
DEFAULT_REDELIVERY_MAX_SECONDS = 60.0
#: At interpreter exit, wait at most this long in total for refreshes ahead and deliveries
#: still under way: long enough for a token response in flight and a save, short enough
#: that a hung token endpoint does not hold the exit for the full request timeout.
DEFAULT_EXIT_FLUSH_SECONDS = 10.0


def redelivery_wait_seconds(failures: int) -> float:
    """The wait before the next ``on_token`` attempt after ``failures`` failures in a row."""
    doubling = DEFAULT_REDELIVERY_FIRST_SECONDS * 2.0 ** min(max(failures - 1, 0), 32)
    return min(DEFAULT_REDELIVERY_MAX_SECONDS, doubling)


class _Delivery:
    """A token to hand to ``on_token``, why it was obtained, and whether this is a retry."""

    __slots__ = ("token", "cause", "redelivery")

    def __init__(self, token: Token, cause: str, redelivery: bool) -> None:
        self.token, self.cause, self.redelivery = token, cause, redelivery


class Outbox(ForkSafe):
    """What one manager owes its callbacks, in order.

    Thread-safe. The manager queues tokens and events while it holds its lock (so the queue
    order is the order things happened) and calls :meth:`flush` once it has released it.
    One thread delivers at a time; a thread that finds another delivering leaves its items
    to that one and returns at once, so nobody waits for another thread's callback, and a
    callback that re-enters the manager (``get_token()``, a request) finds no lock held.
    """

    _fresh_locks = {"_cond": threading.Condition}
    _not_pickled = {
        "_queue": deque,
        "_flushing": lambda: False,
        "undelivered": lambda: None,
        "_undelivered_cause": lambda: "",
        "_failures": lambda: 0,
        "_next_attempt_monotonic": lambda: math.inf,
    }

    def __init__(
        self,
        grant_type: str,
        clock: Clock,
        on_token: Optional[TokenCallback],
        on_event: Optional[EventCallback],
    ) -> None:
        self._grant_type = grant_type
        self._clock = clock
        self._on_token = on_token
        self._on_event = on_event
        self._cond = threading.Condition()
        self._queue: deque[Union[_Delivery, TokenEvent]] = deque()
        self._flushing = False
        #: The current token, if ``on_token`` failed on it; read without a lock on the
        #: fresh path (one attribute check) to trigger :meth:`redeliver`.
        self.undelivered: Optional[Token] = None
        self._undelivered_cause = ""
        self._failures = 0
        self._next_attempt_monotonic = math.inf
        self._track()

    def _after_fork_in_child(self) -> None:
        # The parent delivers what it queued; a child that did too would save twice.
        super()._after_fork_in_child()
        for name, initial in self._not_pickled.items():
            setattr(self, name, initial())

    # -- queueing (the manager holds its lock) ----------------------------------------------

    def token(self, token: Token, cause: str) -> None:
        """Queue a newly obtained token for ``on_token``."""
        if self._on_token is not None:
            with self._cond:
                self._queue.append(_Delivery(token, cause, redelivery=False))

    def event(
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
        """Log an event now (a structured record) and queue it for ``on_event``."""
        event = TokenEvent(
            kind=kind,
            grant_type=self._grant_type,
            cause=cause,
            attempt=attempt,
            duration_seconds=duration_seconds,
            error=error,
            retryable=retryable,
            next_attempt_in_seconds=next_attempt_in_seconds,
            fingerprint=token.fingerprint if token is not None else None,
        )
        log_event(event)
        if self._on_event is not None:
            with self._cond:
                self._queue.append(event)

    def redelivery_due(self, now: float) -> bool:
        """Whether an undelivered token's next retry is due (a lock-free look; the retry
        itself checks again under the lock)."""
        return self.undelivered is not None and now >= self._next_attempt_monotonic

    def redeliver(self, current: Token, now: float) -> None:
        """Queue the undelivered token again if it is still ``current`` and its retry is
        due, then flush. Cheap when there is nothing to do."""
        with self._cond:
            token = self.undelivered
            if token is None or now < self._next_attempt_monotonic:
                return
            if not same_token(token, current):  # superseded by a token from a store
                self.undelivered = None
                return
            self._next_attempt_monotonic = math.inf  # one retry in flight at a time
            self._queue.append(_Delivery(token, self._undelivered_cause, redelivery=True))
        self.flush()

    # -- delivering (no manager lock held) ---------------------------------------------------

    def flush(self) -> None:
        """Deliver everything queued, unless another thread is delivering already (it will
        deliver what this thread queued, after what it queued itself)."""
        with self._cond:
            if self._flushing or not self._queue:
                return
            self._flushing = True
        try:
            while True:
                with self._cond:
                    if not self._queue:
                        return
                    item = self._queue.popleft()
                if isinstance(item, TokenEvent):
                    call_back(item, self._on_event)
                else:
                    self._deliver(item)
        finally:
            with self._cond:
                self._flushing = False
                self._cond.notify_all()

    def _deliver(self, item: _Delivery) -> None:
        assert self._on_token is not None
        try:
            self._on_token(item.token.to_dict())
        except Exception as exc:  # the token is in use; a failing save must not fail the call
            log.error(
                "on_token callback raised %s; the new token is in use but was not saved",
                type(exc).__name__,
            )
            self._failed(item, type(exc).__name__)
            return
        with self._cond:
            self.undelivered = None  # delivered in order: nothing older needs saving now
            self._failures = 0
            self._next_attempt_monotonic = math.inf
        if item.redelivery:
            log.info("on_token succeeded on a retry; the current token is saved")
            self.event("token_redelivered", item.cause, token=item.token)

    def _failed(self, item: _Delivery, error: str) -> None:
        with self._cond:
            superseded = any(isinstance(i, _Delivery) for i in self._queue)
            wait: Optional[float] = None
            if not superseded:  # the newest token: retry it later
                self._failures += 1
                wait = redelivery_wait_seconds(self._failures)
                self.undelivered = item.token
                self._undelivered_cause = item.cause
                self._next_attempt_monotonic = self._clock.monotonic() + wait
            attempt = max(self._failures, 1)
        self.event(
            "delivery_failed",
            item.cause,
            attempt=attempt,
            error=error,
            retryable=wait is not None,
            next_attempt_in_seconds=wait,
            token=item.token,
        )

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or being delivered; ``False`` after ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._flushing, timeout)


class _Waits(Protocol):
    def wait_for_refresh(self, timeout: float = ...) -> bool: ...


_at_exit: weakref.WeakSet[_Waits] = weakref.WeakSet()


def flush_at_exit(owner: _Waits) -> None:
    """Have ``owner.wait_for_refresh`` run at interpreter exit (weakly referenced)."""
    _at_exit.add(owner)


def _flush_all_at_exit(budget_seconds: float = DEFAULT_EXIT_FLUSH_SECONDS) -> None:
    # Refresh workers are daemon threads (a hung token endpoint must not hold the exit
    # forever); without this wait, a token the server has already rotated would be lost
    # with the process before on_token saved it.
    deadline = time.monotonic() + budget_seconds
    for owner in list(_at_exit):
        remaining = deadline - time.monotonic()
        if not owner.wait_for_refresh(timeout=max(remaining, 0.0)):
            log.warning("exiting while a token refresh or on_token delivery is still running")


atexit.register(_flush_all_at_exit)

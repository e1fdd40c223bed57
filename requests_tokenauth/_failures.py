"""Failure: what the manager remembers about failed token requests, whether a caller with
no valid token may wait for the next attempt, and the error each caller gets."""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Optional

from ._clock import Clock, wait_until
from ._errors import TokenAuthError, TokenRefreshError
from ._policy import RefreshPolicy, backoff_seconds
from ._token import FrozenSlots


@dataclass(frozen=True)
class Failure(FrozenSlots):
    """Failed attempts in a row, and when the next token request may go out. Immutable."""

    __slots__ = ("count", "next_attempt_monotonic", "error")

    count: int
    next_attempt_monotonic: float
    error: TokenAuthError

    @classmethod
    def after(
        cls,
        previous: Optional[Failure],
        error: TokenAuthError,
        *,
        now: float,
        policy: RefreshPolicy,
        draw: float,
        token_left_seconds: float,
    ) -> Failure:
        """The failure streak once ``error`` has happened at monotonic ``now``.

        :param previous: the streak so far (``None`` after a success).
        :param draw: in [0, 1), for the backoff's jitter.
        :param token_left_seconds: how long the token in use is still accepted (0: none is).
        """
        count = previous.count + 1 if previous is not None else 1
        retry_after = getattr(error, "retry_after_seconds", None)
        wait = backoff_seconds(
            count,
            policy,
            draw,
            retry_after,
            token_left_seconds=token_left_seconds,
            retryable=is_transient(error),
        )
        return cls(count, now + wait, error)

    def worth_waiting_for(self, give_up_monotonic: float) -> bool:
        """Whether a caller with no valid token, waiting until ``give_up_monotonic`` at most,
        should wait for the next attempt: the error is transient and the attempt is due
        before then. Otherwise it gets the error at once (nothing changes before then)."""
        return is_transient(self.error) and self.next_attempt_monotonic <= give_up_monotonic

    def error_for_caller(self, now: float, waited_seconds: float = 0.0) -> TokenAuthError:
        """A new exception of the remembered error's type, saying how long the caller waited
        (if it did) and when the next attempt is due. A fresh object per caller: one
        exception raised in many threads would share (and grow) a single traceback."""
        exc = self.error
        wait = self.next_attempt_monotonic - now
        waited = f"waited {waited_seconds:.2f}s for a token; " if waited_seconds > 0 else ""
        message = (
            f"{exc} (failed {self.count} time(s) in a row; {waited}next attempt in {wait:.2f}s)"
        )
        clone: TokenAuthError
        if isinstance(exc, TokenRefreshError):
            clone = type(exc)(
                message,
                error=exc.error,
                error_description=exc.error_description,
                error_uri=exc.error_uri,
                status_code=exc.status_code,
                retry_after_seconds=exc.retry_after_seconds,
                body=exc.body,
            )
        else:
            clone = type(exc)(message)
        clone.next_attempt_in_seconds = wait
        if waited_seconds > 0:
            clone.waited_seconds = waited_seconds
        return clone


def is_transient(error: TokenAuthError) -> bool:
    """Whether trying again can help: a token endpoint's transient error, or a store that
    could not be reached (errors without a ``retryable`` flag); not ``invalid_grant``."""
    return bool(getattr(error, "retryable", True))


class AttemptSignal:
    """Where callers with no valid token wait for the next token attempt. Thread-safe.

    Each finished attempt (success or failure) bumps a generation number and wakes every
    waiter; a waiter that read the generation before releasing the manager's lock cannot
    miss an attempt that ends before it starts waiting. The wait is driven by the manager's
    clock (:func:`~requests_tokenauth._clock.wait_until`), so a ``FakeClock`` advances it.
    Pickles, and survives ``fork()``, as a new signal with no waiters.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._generation = 0
        _live_signals.add(self)

    @property
    def generation(self) -> int:
        """Read under the manager's lock, before deciding to wait."""
        return self._generation

    def announce(self) -> None:
        """An attempt finished: wake every waiter to re-check."""
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, clock: Clock, generation: int, until_monotonic: float) -> None:
        """Wait until an attempt after ``generation`` finishes or ``clock`` reaches
        ``until_monotonic`` (the next attempt is due)."""
        with self._condition:
            while self._generation == generation and clock.monotonic() < until_monotonic:
                wait_until(clock, self._condition, until_monotonic)

    def __reduce__(self) -> tuple[Any, ...]:
        return (AttemptSignal, ())

    def _after_fork_in_child(self) -> None:
        # a parent thread may have held the condition's lock at fork(); it does not exist here
        self._condition = threading.Condition(threading.Lock())


_live_signals: weakref.WeakSet[AttemptSignal] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for signal in list(_live_signals):
        signal._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)

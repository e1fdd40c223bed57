"""Time sources: monotonic seconds for decisions, wall-clock seconds for persistence."""

from __future__ import annotations

import threading
import time
from typing import Any, Optional, Protocol

#: A clock without ``wait_until`` is re-read this often while a caller waits on it, so a
#: clock that jumps (:class:`OffsetClock`) is noticed soon.
DEFAULT_WAIT_SLICE_SECONDS = 0.1
#: A :class:`FakeClock` waiter gives up after this much real time with the clock not moved
#: past its deadline: a test that forgot to advance the clock fails instead of hanging.
DEFAULT_FAKE_CLOCK_STALL_SECONDS = 30.0


class Clock(Protocol):
    """Where the library reads time. Implementations must be thread-safe."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; used for every decision."""

    def time(self) -> float:
        """Wall-clock epoch seconds; used only for what is persisted (``expires_at``)."""


class SystemClock:
    """The process clocks: :func:`time.monotonic` and :func:`time.time`. Thread-safe."""

    __slots__ = ()

    # the functions themselves, not wrappers: this is read on every request's fresh path
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    def wait_until(self, condition: threading.Condition, deadline_monotonic: float) -> None:
        """Wait on ``condition`` (whose lock the caller holds) until it is notified or the
        monotonic clock reaches ``deadline_monotonic``."""
        condition.wait(max(0.0, deadline_monotonic - time.monotonic()))

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """A clock that moves only when told to, for tests. Thread-safe.

    Both readings advance together, so a token's monotonic deadline and its persisted
    ``expires_at`` agree.

    :param monotonic: the initial monotonic reading.
    :param time: the initial wall-clock reading (epoch seconds).
    """

    def __init__(self, monotonic: float = 1_000.0, time: float = 1_800_000_000.0) -> None:
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._time = time
        # one entry per caller waiting in wait_until(): (its own marker, its condition)
        self._sleepers: list[tuple[object, threading.Condition]] = []
        self._sleepers_changed = threading.Condition(self._lock)

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def time(self) -> float:
        with self._lock:
            return self._time

    def advance(self, seconds: float) -> None:
        """Move both readings forward by ``seconds`` (which must not be negative)."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._monotonic += seconds
            self._time += seconds
            # every waiter is woken and no longer counts as one until it waits again
            woken = {id(c): c for (_, c) in self._sleepers}
            self._sleepers.clear()
            self._sleepers_changed.notify_all()
        for condition in woken.values():  # outside our lock: a waiter holds its own lock
            with condition:
                condition.notify_all()

    def wait_for_sleepers(self, count: int, timeout: float = 10.0) -> bool:
        """Block until exactly ``count`` callers wait on this clock (in :meth:`wait_until`),
        so a test knows every waiter is parked before it calls :meth:`advance`.

        :returns: ``False`` if that did not happen within ``timeout`` real seconds.
        """
        with self._sleepers_changed:
            return self._sleepers_changed.wait_for(lambda: len(self._sleepers) == count, timeout)

    def wait_until(
        self,
        condition: threading.Condition,
        deadline_monotonic: float,
        stall_seconds: Optional[float] = DEFAULT_FAKE_CLOCK_STALL_SECONDS,
    ) -> None:
        """Wait on ``condition`` (whose lock the caller holds) until it is notified or
        :meth:`advance` moves this clock (the caller re-checks its deadline).

        :param stall_seconds: real seconds after which a clock that was never advanced past
            ``deadline_monotonic`` is a test bug: raises :class:`RuntimeError`.
        :raises RuntimeError: the clock stalled.
        """
        marker = object()
        with self._lock:
            if self._monotonic >= deadline_monotonic:
                return
            # registered in the same critical section as the check: an advance() after it
            # sees us and notifies once we are waiting (it needs the condition's lock)
            self._sleepers.append((marker, condition))
            self._sleepers_changed.notify_all()
        try:
            if not condition.wait(stall_seconds) and self.monotonic() < deadline_monotonic:
                raise RuntimeError(
                    f"FakeClock: a caller waited {stall_seconds:g}s of real time for "
                    f"monotonic {deadline_monotonic!r}; advance() the clock"
                )
        finally:
            with self._lock:
                self._sleepers[:] = [s for s in self._sleepers if s[0] is not marker]
                self._sleepers_changed.notify_all()

    def __repr__(self) -> str:
        return f"FakeClock(monotonic={self.monotonic()!r}, time={self.time()!r})"


class OffsetClock:
    """The system clocks plus an offset read from a shared number (e.g. a
    ``multiprocessing.Value``), so a test or benchmark can move a whole fleet of processes
    past a token's expiry at once. Thread-safe as far as the shared number is.

    :param offset: any object whose ``.value`` is a number of seconds.
    """

    def __init__(self, offset: Any) -> None:
        self._offset = offset

    def monotonic(self) -> float:
        return time.monotonic() + float(self._offset.value)

    def time(self) -> float:
        return time.time() + float(self._offset.value)


def wait_until(clock: Clock, condition: threading.Condition, deadline_monotonic: float) -> None:
    """Wait on ``condition`` (whose lock the caller holds) until it is notified or ``clock``
    reaches ``deadline_monotonic``; may return early, so callers re-check in a loop.

    Uses the clock's own ``wait_until`` when it has one (:class:`SystemClock`,
    :class:`FakeClock`, whose :meth:`~FakeClock.advance` wakes the waiter); any other clock
    is assumed to move with real time and is re-read every few tenths of a second.
    """
    own = getattr(clock, "wait_until", None)
    if own is not None:
        own(condition, deadline_monotonic)
        return
    left = deadline_monotonic - clock.monotonic()
    condition.wait(min(max(0.0, left), DEFAULT_WAIT_SLICE_SECONDS))

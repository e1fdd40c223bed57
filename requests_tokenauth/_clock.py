"""Time sources: monotonic seconds for decisions, wall-clock seconds for persistence."""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol


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

"""Event-loop lag during a refresh: does a token request stall every other task?

A ticker task sleeps 1 ms at a time on the loop and records how late each wake-up is. Each
repetition builds a fresh ``httpx.AsyncClient`` whose token is expired (httpx-auth: none
yet), so its first request needs a token request from a 300 ms token endpoint; the row
gives the ticker's worst lag while that request was in flight (target: under 10 ms).

A second probe needs no clock: the token endpoint holds the token request, and a thread
releases it once the ticker has ticked :data:`HELD_TICKS` times after the request arrived,
or after :data:`HOLD_LIMIT_SECONDS`. A library that sends its token request on the loop's
own thread stops the ticker, and the row shows 0 ticks while held.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any, Optional

from ._harness import Params, Table, seeded_token
from ._httpx_harness import LoopDriver, only_ours, per_httpx_library
from ._httpx_libraries import BARE_ASYNC, HttpxLibrary
from ._libraries import insecure_loopback, margin_seconds
from ._servers import TimedAuthServer

#: The ticker's sleep.
TICK_SECONDS = 0.001
#: The held probe releases the token endpoint after this many ticks while held...
HELD_TICKS = 20
#: ... or after this long, when the ticker cannot run (the loop is blocked).
HOLD_LIMIT_SECONDS = 5.0


class Ticker:
    """A task that sleeps :data:`TICK_SECONDS` at a time and records when each wake-up
    was due and when it came; ``ticks`` is read from other threads (a plain int)."""

    def __init__(self) -> None:
        self.ticks = 0
        self.wakeups: list[tuple[float, float]] = []  # (due, woke), monotonic
        self.enough = threading.Event()
        self.count_from: Optional[int] = None  # set by the releasing thread
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            due = time.monotonic() + TICK_SECONDS
            await asyncio.sleep(TICK_SECONDS)
            self.wakeups.append((due, time.monotonic()))
            self.ticks += 1
            base = self.count_from
            if base is not None and self.ticks - base >= HELD_TICKS:
                self.enough.set()

    def stop(self) -> None:
        self._stop.set()

    def worst(self, start: float, end: float) -> float:
        """The longest time the loop kept a due wake-up waiting between ``start`` and
        ``end`` (a wake-up due before ``start`` counts from ``start``)."""
        return max(
            (
                woke - max(due, start)
                for (due, woke) in self.wakeups
                if woke >= start and due <= end
            ),
            default=0.0,
        )


async def _timed_request(driver: LoopDriver, url: str) -> tuple[float, float, str]:
    ticker = Ticker()
    ticking = asyncio.ensure_future(ticker.run())
    await asyncio.sleep(0.05)  # the ticker is running before the request starts
    start = time.monotonic()
    result = await driver.acall(url)
    end = time.monotonic()
    await asyncio.sleep(0.01)
    ticker.stop()
    await ticking
    return ticker.worst(start, end), end - start, result


async def _held_request(driver: LoopDriver, server: TimedAuthServer, url: str) -> tuple[int, str]:
    ticker = Ticker()
    ticking = asyncio.ensure_future(ticker.run())
    held: list[int] = []

    def release() -> None:
        try:
            if server.wait_for_token_requests(1, timeout=30):
                ticker.count_from = ticker.ticks
                ticker.enough.wait(HOLD_LIMIT_SECONDS)
                held.append(ticker.ticks - ticker.count_from)
        finally:
            server.release_token_endpoint()

    releaser = threading.Thread(target=release, name="bench-release", daemon=True)
    server.reset_counters()
    server.hold_token_endpoint()
    releaser.start()
    result = await driver.acall(url)
    ticker.stop()
    await ticking
    await asyncio.to_thread(releaser.join, 35)
    return (held[0] if held else -1), result


def httpx_loop_lag(libraries: Sequence[HttpxLibrary], p: Params) -> Table:
    """Ticker lag while a 300 ms token request is in flight, and ticks while one is held."""
    table = Table(
        "httpx_loop_lag",
        "httpx: event-loop lag during a refresh",
        f"A task ticks every {TICK_SECONDS * 1000:g} ms on the loop of an httpx.AsyncClient "
        f"whose first request needs a token request; the token endpoint takes "
        f"{p.token_latency_seconds * 1000:.0f} ms. Worst lateness of a tick due while that "
        f"request was in flight (ms; target: under 10), median and max of {p.repetitions} "
        f"fresh clients; the bare client's row is the noise floor (no token request). Then "
        f"the token request is held until the ticker ticks {HELD_TICKS} times (or "
        f"{HOLD_LIMIT_SECONDS:g} s pass): ticks counted while held (0: the loop was blocked).",
        [
            ("lag_ms", "max tick lag, ms (median)"),
            ("lag_max_ms", "max tick lag, ms (worst run)"),
            ("request_ms", "request ms (median)"),
            ("held_ticks", "ticks while the token request was held"),
            ("outcomes", "outcomes"),
        ],
    )

    def run(lib: HttpxLibrary) -> dict[str, Any]:
        lags, durations, outcomes = [], [], []
        margin = margin_seconds(3600)
        with TimedAuthServer(token_latency_seconds=p.token_latency_seconds) as server:
            for _ in range(p.repetitions):
                token = seeded_token(server, 3600, -1 if lib is not BARE_ASYNC else 3600)
                with LoopDriver(
                    lib.build, server.url, token if lib.refresh_tokens else None, margin
                ) as driver:
                    lag, seconds, result = driver.run(_timed_request(driver, server.resource_url))
                lags.append(lag * 1000)
                durations.append(seconds * 1000)
                outcomes.append(result)
            row: dict[str, Any] = {
                "lag_ms": round(statistics.median(lags), 1),
                "lag_max_ms": round(max(lags), 1),
                "request_ms": round(statistics.median(durations), 1),
                "lags_ms": [round(v, 2) for v in lags],
            }
            row["held_ticks"] = None  # the bare client sends no token request
            if lib is not BARE_ASYNC:
                token = seeded_token(server, 3600, -1)
                with LoopDriver(
                    lib.build, server.url, token if lib.refresh_tokens else None, margin
                ) as driver:
                    held, result = driver.run(_held_request(driver, server, server.resource_url))
                row["held_ticks"] = held
                row["held_token_requests"] = server.token_requests
                outcomes.append(result)
            row["outcomes"] = ", ".join(sorted(set(outcomes)))
        return row

    _warm_up()
    asynchronous = [BARE_ASYNC, *(lib for lib in libraries if lib.asynchronous)]
    ours = only_ours(p)
    only = None if ours is None else (lambda lib: lib is BARE_ASYNC or ours(lib))
    return per_httpx_library(asynchronous, table, run, only=only)


def _warm_up() -> None:
    """One request with a bare AsyncClient, not measured: the first in a process pays for
    httpx's and anyio's lazy imports, which would show as lag in whichever row came first."""
    with insecure_loopback(), TimedAuthServer() as server:
        token = seeded_token(server, 3600, 3600)
        with LoopDriver(BARE_ASYNC.build, server.url, token, 5.0) as driver:
            driver.call(server.resource_url)

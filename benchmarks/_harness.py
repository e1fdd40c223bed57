"""What every scenario is built from: the run sizes (:class:`Params`), the result
(:class:`Table`), and helpers that send paced requests on barrier-released threads.

Every loop is bounded twice: by a request count and by a deadline.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import requests

from ._libraries import (
    Library,
    google_threshold,
    insecure_loopback,
)
from ._servers import TimedAuthServer

#: Every thread of a scenario must be done this long after its deadline, or the run fails.
JOIN_GRACE_SECONDS = 30.0
#: A request slower than this waited for a token request (the endpoint takes 300 ms).
WAITED_MS = 250.0


@dataclass(frozen=True)
class Params:
    """Sizes of one run; :data:`FULL` is the published one, :data:`QUICK` the test suite's."""

    repetitions: int
    overhead_requests: int
    fast_path_calls: int
    stampede_threads: int
    rotation_threads: int
    rotation_lifetime_seconds: int
    sequential_calls: int
    outage_lifetime_seconds: int
    outage_window_seconds: float
    outage_tail_seconds: float
    long_outage_window_seconds: float
    latency_threads: int
    latency_lifetime_seconds: int
    token_latency_seconds: float = 0.3
    expiries: int = 3
    store_processes: int = 8
    pace_seconds: float = 0.01
    #: the outage starts this long before the current token's nominal expiry
    outage_lead_seconds: float = 1.0
    outage_threads: int = 8
    #: the long outage runs every library (else only ours; the others report "skipped")
    long_outage_everyone: bool = True
    #: tasks on one event loop in the httpx stampede (httpx.Client: ``stampede_threads``)
    httpx_tasks: int = 64
    #: the httpx rotation, outage, latency and loop-lag scenarios run every library (else
    #: only ours; the others report "skipped")
    httpx_everyone: bool = True


FULL = Params(
    repetitions=5,
    overhead_requests=2000,
    fast_path_calls=20_000,
    stampede_threads=64,
    rotation_threads=16,
    rotation_lifetime_seconds=2,
    sequential_calls=10,
    outage_lifetime_seconds=2,
    outage_window_seconds=3.5,
    outage_tail_seconds=1.5,
    long_outage_window_seconds=30.0,
    latency_threads=8,
    latency_lifetime_seconds=2,
)
QUICK = Params(
    repetitions=1,
    overhead_requests=80,
    fast_path_calls=300,
    stampede_threads=16,
    rotation_threads=16,
    rotation_lifetime_seconds=1,
    sequential_calls=3,
    outage_lifetime_seconds=1,
    outage_window_seconds=2.0,
    outage_tail_seconds=0.5,
    long_outage_window_seconds=7.0,  # past the default 5 s wait bound
    latency_threads=8,
    latency_lifetime_seconds=1,
    expiries=2,
    store_processes=2,
    outage_lead_seconds=0.5,
    outage_threads=4,
    long_outage_everyone=False,
    httpx_everyone=False,
)


@dataclass
class Table:
    """One scenario's result: a row per library, columns as ``(key, header)``."""

    name: str
    title: str
    description: str
    columns: list[tuple[str, str]]
    rows: list[dict[str, Any]] = field(default_factory=list)


# -- helpers ---------------------------------------------------------------------------------


def outcome(session: requests.Session, url: str) -> str:
    """``"200"``, another status, or the exception's class name."""
    try:
        response = session.get(url, timeout=10)
        response.close()
        return str(response.status_code)
    except Exception as exc:  # every library raises its own types
        return type(exc).__name__


def run_threads(n: int, target: Callable[[int], Any], deadline_seconds: float) -> list[Any]:
    """Run ``target(i)`` on ``n`` threads released together by a barrier; results (or the
    exception raised) by thread index."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(30)
            results[i] = target(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    end = time.monotonic() + deadline_seconds + JOIN_GRACE_SECONDS
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
        if t.is_alive():
            raise RuntimeError("a benchmark thread did not finish in time")
    return results


def paced_loop(
    session: requests.Session, url: str, until: float, pace: float, limit: int = 20_000
) -> list[tuple[float, float, str]]:
    """Send requests until the monotonic instant ``until`` (at most ``limit``), one every
    ``pace`` seconds at most; returns ``(start, seconds, outcome)`` per request."""
    out: list[tuple[float, float, str]] = []
    stop = threading.Event()
    for _ in range(limit):
        start = time.monotonic()
        if start >= until:
            break
        result = outcome(session, url)
        out.append((start, time.monotonic() - start, result))
        stop.wait(max(0.0, pace - (time.monotonic() - start)))
    return out


def failed(outcomes: Iterable[str]) -> int:
    return sum(1 for o in outcomes if o != "200")


def summary(outcomes: Sequence[str]) -> str:
    """``"200 x5"`` or ``"401 x3, 200 x2"``, most common first."""
    return ", ".join(f"{k} x{v}" for k, v in Counter(outcomes).most_common())


def ratio_row(name: str, ratios: Sequence[float], failed_requests: int) -> dict[str, Any]:
    """A throughput table's row: the median ratio to the bare client, and every ratio."""
    return {
        "library": name,
        "ratio": round(statistics.median(ratios), 2),
        "failed": failed_requests,
        "ratios": [round(r, 3) for r in ratios],
    }


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """Nearest-rank percentile; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def seeded_token(
    server: TimedAuthServer, lifetime: int, expires_in_seconds: float
) -> dict[str, Any]:
    """A token with a refresh token, as an app would have saved it, that the client should
    consider expiring ``expires_in_seconds`` from now (counted, as a client counts, from
    before the server issued it)."""
    issued_at = time.time()
    token = server.issue_token(
        "app", scopes=("read",), lifetime_seconds=lifetime, refresh=True, user="alice"
    )
    token["expires_at"] = issued_at + expires_in_seconds
    return token


def per_library(
    libraries: Sequence[Library],
    table: Table,
    run: Callable[[Library], dict[str, Any]],
    *,
    needs_refresh_tokens: bool = False,
) -> Table:
    for lib in libraries:
        row: dict[str, Any] = {"library": lib.name}
        if lib.version is None:
            row["skipped"] = "not installed"
        elif needs_refresh_tokens and not lib.refresh_tokens:
            row["skipped"] = "n/a: no refresh-token support"
        else:
            with insecure_loopback(), google_threshold():
                try:
                    row.update(run(lib))
                except Exception as exc:  # a library that breaks is a result, not a crash
                    row["skipped"] = f"failed to run: {type(exc).__name__}"
        table.rows.append(row)
    return table

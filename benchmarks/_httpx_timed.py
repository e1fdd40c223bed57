"""The httpx scenarios that run across a token's expiry: a token-endpoint outage and
latency at expiry with a slow (300 ms) token endpoint. Same situations, counts and
columns as :mod:`benchmarks._outage` and :mod:`benchmarks._latency`, with
``httpx.Client`` (threads) and ``httpx.AsyncClient`` (tasks on one loop)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from ._harness import WAITED_MS, Params, Table, seeded_token
from ._httpx_harness import driving, only_ours, per_httpx_library
from ._httpx_libraries import HttpxLibrary
from ._latency import LATENCY_COLUMNS, latency_row
from ._libraries import margin_seconds
from ._outage import _COLUMNS as OUTAGE_COLUMNS
from ._outage import OUTAGE_PACE_SECONDS
from ._outage import _row as outage_row
from ._servers import TimedAuthServer


def httpx_outage(libraries: Sequence[HttpxLibrary], p: Params) -> Table:
    """The token endpoint answers 500 from shortly before expiry until well past it."""
    life, lead, tail = p.outage_lifetime_seconds, p.outage_lead_seconds, p.outage_tail_seconds
    window, n = p.outage_window_seconds, p.outage_threads
    table = Table(
        "httpx_outage",
        "httpx: token endpoint outage",
        f"{n} threads (Client) or {n} tasks on one loop (AsyncClient) send a request every "
        f"{OUTAGE_PACE_SECONDS * 1000:.0f} ms with a {life} s token; the token endpoint "
        f"answers 500 for {window:g} s, starting {lead:g} s before that token's nominal "
        f"expiry, then recovers and the run goes on for {tail:g} s. Failed calls are counted "
        "by when they started, as in the requests table.",
        list(OUTAGE_COLUMNS),
    )

    def run(lib: HttpxLibrary) -> dict[str, Any]:
        with TimedAuthServer(token_lifetime_seconds=life) as server:
            seeded_at = time.monotonic()
            token = seeded_token(server, life, life) if lib.refresh_tokens else None
            with driving(lib, server.url, token, margin_seconds(life)) as driver:
                if token is None:  # httpx-auth's own first token
                    first = driver.call(server.resource_url)
                    if first != "200":
                        raise RuntimeError(f"the warm-up request failed: {first}")
                expiry = seeded_at + life
                down_at = expiry - lead
                recovered_at = down_at + window
                timers = [
                    threading.Timer(down_at - time.monotonic(), server.set_token_fault, ("500",)),
                    threading.Timer(recovered_at - time.monotonic(), server.clear_token_fault),
                ]
                for timer in timers:
                    timer.daemon = True
                    timer.start()
                try:
                    results = driver.paced(
                        n, server.resource_url, recovered_at + tail, OUTAGE_PACE_SECONDS
                    )
                finally:
                    for timer in timers:
                        timer.join(5)
            calls = [c for r in results for c in r]
            arrivals = [a for a in server.token_arrivals if down_at <= a < recovered_at]
        return outage_row(calls, arrivals, down_at, expiry, recovered_at, window)

    return per_httpx_library(libraries, table, run, only=only_ours(p, sync=False))


def httpx_latency(libraries: Sequence[HttpxLibrary], p: Params) -> Table:
    """Request latency across expiries with a slow (300 ms) token endpoint."""
    life, n = p.latency_lifetime_seconds, p.latency_threads
    table = Table(
        "httpx_latency",
        "httpx: latency at expiry",
        f"{n} threads (Client) or {n} tasks on one loop (AsyncClient), one request each every "
        f"{p.pace_seconds * 1000:.0f} ms, across {p.expiries} expiries of a {life} s token; "
        f"the token endpoint takes {p.token_latency_seconds * 1000:.0f} ms. Milliseconds, "
        "overall and for requests started in the second around each expiry or token request. "
        f"'waited': requests slower than {WAITED_MS:.0f} ms.",
        list(LATENCY_COLUMNS),
    )

    def run(lib: HttpxLibrary) -> dict[str, Any]:
        with TimedAuthServer(
            token_lifetime_seconds=life, token_latency_seconds=p.token_latency_seconds
        ) as server:
            token = seeded_token(server, life, life) if lib.refresh_tokens else None
            seeded_at = time.monotonic()
            with driving(lib, server.url, token, margin_seconds(life)) as driver:
                if token is None:
                    if driver.call(server.resource_url) != "200":
                        raise RuntimeError("the warm-up request failed")
                    seeded_at = server.token_arrivals[-1] + p.token_latency_seconds
                server.reset_counters()
                arrivals_before = len(server.token_arrivals)
                until = time.monotonic() + p.expiries * life + p.token_latency_seconds
                results = driver.paced(n, server.resource_url, until, p.pace_seconds)
            samples = [s for r in results for s in r]
            arrivals = server.token_arrivals[arrivals_before:]
            return latency_row(samples, seeded_at + life, arrivals, life, p, server.token_requests)

    return per_httpx_library(libraries, table, run, only=only_ours(p, sync=False))

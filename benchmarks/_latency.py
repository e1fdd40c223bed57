"""Latency at expiry: request latency across expiries with a slow token endpoint."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Optional

from ._harness import (
    WAITED_MS,
    Params,
    Table,
    failed,
    outcome,
    paced_loop,
    per_library,
    percentile,
    run_threads,
    seeded_token,
)
from ._libraries import OURS, OURS_INLINE, Library, margin_seconds
from ._servers import TimedAuthServer

#: The latency table's columns (the httpx latency table has the same).
LATENCY_COLUMNS = [
    ("p50", "p50"),
    ("p99", "p99"),
    ("max", "max"),
    ("near_p50", "p50 near expiry"),
    ("near_p99", "p99 near expiry"),
    ("near_max", "max near expiry"),
    ("waited", "waited"),
    ("failed", "failed"),
    ("token_requests", "token requests"),
]


def latency(libraries: Sequence[Library], p: Params) -> Table:
    """Request latency across expiries with a slow (300 ms) token endpoint."""
    life, n = p.latency_lifetime_seconds, p.latency_threads
    table = Table(
        "latency",
        "Latency at expiry",
        f"{n} threads, one request each every {p.pace_seconds * 1000:.0f} ms, across "
        f"{p.expiries} expiries of a {life} s token; the token endpoint takes "
        f"{p.token_latency_seconds * 1000:.0f} ms. Milliseconds, overall and for requests "
        "started in the second around each expiry or token request. 'waited': requests "
        f"slower than {WAITED_MS:.0f} ms.",
        list(LATENCY_COLUMNS),
    )

    def run(lib: Library) -> dict[str, Any]:
        with TimedAuthServer(
            token_lifetime_seconds=life, token_latency_seconds=p.token_latency_seconds
        ) as server:
            token = seeded_token(server, life, life) if lib.refresh_tokens else None
            seeded_at = time.monotonic()
            client = lib.build(server.url, token, margin_seconds(life))
            if token is None:
                if outcome(client.session, server.resource_url) != "200":
                    raise RuntimeError("the warm-up request failed")
                seeded_at = server.token_arrivals[-1] + p.token_latency_seconds
            server.reset_counters()
            arrivals_before = len(server.token_arrivals)
            until = time.monotonic() + p.expiries * life + p.token_latency_seconds
            results = run_threads(
                n,
                lambda i: paced_loop(client.session, server.resource_url, until, p.pace_seconds),
                p.expiries * life + 1,
            )
            client.close()
            samples = [s for r in results for s in r]
            arrivals = server.token_arrivals[arrivals_before:]
            return latency_row(samples, seeded_at + life, arrivals, life, p, server.token_requests)

    ours = (OURS, OURS_INLINE) if OURS in libraries else ()
    return per_library((*ours, *(lib for lib in libraries if lib is not OURS)), table, run)


def latency_row(
    samples: Sequence[tuple[float, float, str]],
    first_expiry: float,
    arrivals: Sequence[float],
    life: float,
    p: Params,
    token_requests: int,
) -> dict[str, Any]:
    """A row of the latency table from every request's ``(start, seconds, outcome)``, the
    seeded token's expiry and the token requests' arrivals (monotonic instants)."""
    moments = [
        first_expiry,
        *arrivals,
        *(a + p.token_latency_seconds + life for a in arrivals),
    ]
    near = [
        ms
        for (t, ms) in ((t, s * 1000) for (t, s, _) in samples)
        if any(abs(t - m) <= 0.5 for m in moments)
    ]
    all_ms = [s * 1000 for (_, s, _) in samples]
    return {
        "p50": _ms(percentile(all_ms, 50)),
        "p99": _ms(percentile(all_ms, 99)),
        "max": _ms(max(all_ms, default=None)),
        "near_p50": _ms(percentile(near, 50)),
        "near_p99": _ms(percentile(near, 99)),
        "near_max": _ms(max(near, default=None)),
        "waited": sum(1 for ms in all_ms if ms >= WAITED_MS),
        "requests": len(all_ms),
        "failed": failed(o for (_, _, o) in samples),
        "token_requests": token_requests,
    }


def _ms(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 1)

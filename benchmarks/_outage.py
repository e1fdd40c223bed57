"""Token-endpoint outages: the endpoint answers 500 from shortly before the current token's
nominal expiry until well past it (a short outage, and a long one).

What each row reports, from the requests every thread sent (start, duration, outcome) and
the arrival time of every token request at the server:

* failed calls while the old token was still accepted (started before its nominal expiry);
* failed calls with no valid token left (started after it, before the recovery);
* token requests per second during the outage;
* seconds from the recovery to the first successful call that needed a new token;
* failed calls started after the recovery;
* the longest call (a caller that waits for the endpoint shows here).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, Optional

from ._harness import Params, Table, failed, outcome, paced_loop, per_library, run_threads
from ._harness import seeded_token as _seeded_token
from ._libraries import GOOGLE_NON_BLOCKING, OURS, Library, margin_seconds
from ._servers import TimedAuthServer

#: Every thread sends a request this often at most during an outage run.
OUTAGE_PACE_SECONDS = 0.02

_COLUMNS = [
    ("failed_valid", "failed while the old token is accepted"),
    ("failed_no_token", "failed with no valid token"),
    ("token_rate", "token requests/s during the outage"),
    ("recovery_seconds", "s from recovery to first success"),
    ("failed_after", "failed after recovery"),
    ("longest_seconds", "longest call (s)"),
]


def outage(libraries: Sequence[Library], p: Params) -> Table:
    """A short outage: our default wait bound should make it invisible."""
    return _outage_table(libraries, p, "outage", p.outage_window_seconds, everyone=True)


def long_outage(libraries: Sequence[Library], p: Params) -> Table:
    """A long outage: the wait bound holds and the token-request rate stays low."""
    window = p.long_outage_window_seconds
    return _outage_table(libraries, p, "outage_long", window, everyone=p.long_outage_everyone)


def _outage_table(
    libraries: Sequence[Library], p: Params, name: str, window: float, *, everyone: bool
) -> Table:
    life, lead, tail = p.outage_lifetime_seconds, p.outage_lead_seconds, p.outage_tail_seconds
    threads = p.outage_threads
    title = "Token endpoint outage" if name == "outage" else "Long token endpoint outage"
    table = Table(
        name,
        title,
        f"{threads} threads send a request every {OUTAGE_PACE_SECONDS * 1000:.0f} ms with a "
        f"{life} s token; the token endpoint answers 500 for {window:g} s, starting {lead:g} s "
        f"before that token's nominal expiry, then recovers and the run goes on for {tail:g} s. "
        "Failed calls are counted by when they started: while the old token was still "
        "accepted, with no valid token left, after the recovery.",
        list(_COLUMNS),
    )

    def run(lib: Library) -> dict[str, Any]:
        return _run(lib, p, window, threads)

    google = [i for i, lib in enumerate(libraries) if lib.name == "google-auth"]
    if google:  # its non-blocking mode right after it
        at = google[0] + 1
        libraries = [*libraries[:at], GOOGLE_NON_BLOCKING, *libraries[at:]]
    for lib in libraries:
        if everyone or lib is OURS:
            per_library([lib], table, run)
        else:
            table.rows.append({"library": lib.name, "skipped": "only ours in this run"})
    return table


def _run(lib: Library, p: Params, window: float, threads: int) -> dict[str, Any]:
    life, lead, tail = p.outage_lifetime_seconds, p.outage_lead_seconds, p.outage_tail_seconds
    with TimedAuthServer(token_lifetime_seconds=life) as server:
        seeded_at = time.monotonic()
        token = _seeded_token(server, life, life) if lib.refresh_tokens else None
        client = lib.build(server.url, token, margin_seconds(life))
        if token is None:
            first = outcome(client.session, server.resource_url)  # requests-auth's own token
            if first != "200":
                raise RuntimeError(f"the warm-up request failed: {first}")
        expiry = seeded_at + life  # nominal: the server stops accepting the token then
        down_at = expiry - lead
        recovered_at = down_at + window
        until = recovered_at + tail
        timers = [
            threading.Timer(down_at - time.monotonic(), server.set_token_fault, ("500",)),
            threading.Timer(recovered_at - time.monotonic(), server.clear_token_fault),
        ]
        for timer in timers:
            timer.daemon = True
            timer.start()
        try:
            results = run_threads(
                threads,
                lambda i: paced_loop(
                    client.session, server.resource_url, until, OUTAGE_PACE_SECONDS
                ),
                until - time.monotonic(),
            )
        finally:
            for timer in timers:
                timer.join(5)
            client.close()
        calls = [c for r in results for c in r]
        arrivals = [a for a in server.token_arrivals if down_at <= a < recovered_at]
    return _row(calls, arrivals, down_at, expiry, recovered_at, window)


def _row(
    calls: list[tuple[float, float, str]],
    token_arrivals: list[float],
    down_at: float,
    expiry: float,
    recovered_at: float,
    window: float,
) -> dict[str, Any]:
    valid = [o for (t, _, o) in calls if down_at <= t < expiry]
    no_token = [o for (t, _, o) in calls if expiry <= t < recovered_at]
    after = [o for (t, _, o) in calls if t >= recovered_at]
    # the first call answered 200 after the recovery: the old token had expired by then, so
    # it carried a new one (a call that waited for it may have started long before)
    ends = [t + d for (t, d, o) in calls if o == "200" and t + d >= recovered_at]
    first_success: Optional[float] = round(min(ends) - recovered_at, 2) if ends else None
    return {
        "failed_valid": f"{failed(valid)} of {len(valid)}",
        "failed_no_token": f"{failed(no_token)} of {len(no_token)}",
        "token_rate": round(len(token_arrivals) / window, 1),
        "recovery_seconds": first_success,
        "failed_after": failed(after),
        "longest_seconds": round(max((d for (_, d, _) in calls), default=0.0), 2),
        "failed_valid_count": failed(valid),
        "failed_no_token_count": failed(no_token),
        "calls_no_token": len(no_token),
        "token_requests": len(token_arrivals),
    }

"""The scenarios. Each runs every library through the same situation against the testing
server over loopback and returns a :class:`Table` of counts and ratios.

Every loop is bounded twice: by a request count and by a deadline.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
import timeit
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import requests

from ._libraries import (
    BASELINE,
    OURS,
    OURS_INLINE,
    Client,
    ConstantHeader,
    Library,
    google_threshold,
    insecure_loopback,
    margin_seconds,
)
from ._servers import TimedAuthServer, password_token, server_process

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
    latency_threads: int
    latency_lifetime_seconds: int
    token_latency_seconds: float = 0.3
    expiries: int = 3
    store_processes: int = 8
    pace_seconds: float = 0.01


FULL = Params(
    repetitions=5,
    overhead_requests=2000,
    fast_path_calls=20_000,
    stampede_threads=64,
    rotation_threads=16,
    rotation_lifetime_seconds=2,
    sequential_calls=10,
    outage_lifetime_seconds=2,
    outage_window_seconds=3.0,
    outage_tail_seconds=1.5,
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
    outage_window_seconds=1.5,
    outage_tail_seconds=0.5,
    latency_threads=8,
    latency_lifetime_seconds=1,
    expiries=2,
    store_processes=2,
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
    consider expiring ``expires_in_seconds`` from now."""
    token = server.issue_token(
        "app", scopes=("read",), lifetime_seconds=lifetime, refresh=True, user="alice"
    )
    token["expires_at"] = time.time() + expires_in_seconds
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


# -- the scenarios -----------------------------------------------------------------------------


def overhead(libraries: Sequence[Library], p: Params) -> Table:
    """8 threads, a fixed number of requests, a long-lived token; the server runs in a
    child process so the clients' own cost shows. Interleaved, median of the repetitions."""
    table = Table(
        "overhead",
        "Overhead: throughput as a ratio to a bare session",
        f"8 threads send {p.overhead_requests} requests with a 1 h token; the server runs in "
        f"another process. Throughput ratio to a bare requests.Session with a static header "
        f"(1.00 = no overhead), median of {p.repetitions} interleaved repetitions.",
        [("ratio", "throughput vs bare"), ("failed", "failed requests")],
    )
    installed = [lib for lib in (BASELINE, *libraries) if lib.version is not None]
    threads = 8
    per_thread = max(1, p.overhead_requests // threads)
    with insecure_loopback(), server_process() as url:
        token = password_token(url)
        clients = {
            lib.name: lib.build(url, token if lib.refresh_tokens else None, 5.0)
            for lib in installed
        }
        resource = url + "/resource"

        def burst(client: Client, count: int) -> tuple[float, int]:
            started = time.perf_counter()
            results = run_threads(
                threads, lambda i: [outcome(client.session, resource) for _ in range(count)], 120
            )
            elapsed = time.perf_counter() - started
            return elapsed, sum(failed(r) if isinstance(r, list) else count for r in results)

        for client in clients.values():
            burst(client, 2)  # connections, and requests-auth's first token
        ratios: dict[str, list[float]] = {name: [] for name in clients}
        fails: Counter[str] = Counter()
        names = list(clients)
        for rep in range(p.repetitions):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            rps: dict[str, float] = {}
            for name in order:
                elapsed, bad = burst(clients[name], per_thread)
                rps[name] = threads * per_thread / elapsed
                fails[name] += bad
            for name in names:
                ratios[name].append(rps[name] / rps[BASELINE.name])
        for client in clients.values():
            client.close()
    for lib in (BASELINE, *libraries):
        if lib.name not in ratios:
            table.rows.append({"library": lib.name, "skipped": "not installed"})
            continue
        table.rows.append(
            {
                "library": lib.name,
                "ratio": round(statistics.median(ratios[lib.name]), 2),
                "failed": fails[lib.name],
                "ratios": [round(r, 3) for r in ratios[lib.name]],
            }
        )
    return table


def fast_path(libraries: Sequence[Library], p: Params) -> Table:
    """The cost of stamping one request (the auth work alone, no IO), as a ratio to a
    trivial AuthBase that sets a constant header."""
    table = Table(
        "fast_path",
        "Fast-path cost: the auth call alone",
        f"timeit of the per-request auth work with a valid token, stamping an https request "
        f"({p.fast_path_calls} calls, median of {p.repetitions}), as a ratio to a trivial "
        "AuthBase setting a constant header.",
        [("ratio", "cost vs trivial AuthBase"), ("us", "us per call (this machine)")],
    )
    with insecure_loopback(), google_threshold(), TimedAuthServer() as server:
        token = seeded_token(server, 3600, 3600)
        stampers: dict[str, Callable[[], object]] = {}
        trivial = requests.Request("GET", server.resource_url).prepare()
        constant = ConstantHeader("Bearer x")
        stampers["trivial"] = lambda: constant(trivial)
        clients = []
        for lib in libraries:
            if lib.version is None:
                continue
            client = lib.build(server.url, token if lib.refresh_tokens else None, 5.0)
            clients.append(client)
            client.stamp()  # requests-auth fetches its first token here
            stampers[lib.name] = client.stamp
        costs: dict[str, list[float]] = {name: [] for name in stampers}
        names = list(stampers)
        for rep in range(p.repetitions):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                seconds = timeit.timeit(stampers[name], number=p.fast_path_calls)
                costs[name].append(seconds / p.fast_path_calls)
        for client in clients:
            client.close()
    base = statistics.median(costs["trivial"])
    for lib in libraries:
        if lib.name not in costs:
            table.rows.append({"library": lib.name, "skipped": "not installed"})
            continue
        cost = statistics.median(costs[lib.name])
        table.rows.append(
            {"library": lib.name, "ratio": round(cost / base, 1), "us": round(cost * 1e6, 2)}
        )
    return table


def stampede(libraries: Sequence[Library], p: Params) -> Table:
    """Many threads released at once on an expired token, against a 300 ms endpoint."""
    n = p.stampede_threads
    table = Table(
        "stampede",
        "Stampede at expiry",
        f"{n} threads released by a barrier on an expired token (requests-auth: on first use); "
        f"the token endpoint takes {p.token_latency_seconds * 1000:.0f} ms.",
        [
            ("token_requests", "token requests"),
            ("failed", "failed requests"),
            ("outcomes", "outcomes"),
        ],
    )

    def run(lib: Library) -> dict[str, Any]:
        with TimedAuthServer(token_latency_seconds=p.token_latency_seconds) as server:
            token = seeded_token(server, 3600, -1) if lib.refresh_tokens else None
            client = lib.build(server.url, token, margin_seconds(3600))
            results = run_threads(n, lambda i: outcome(client.session, server.resource_url), 60)
            client.close()
            return {
                "token_requests": server.token_requests,
                "failed": failed(results),
                "outcomes": summary(results),
            }

    return per_library(libraries, table, run)


def rotation(libraries: Sequence[Library], p: Params) -> Table:
    """Rotating refresh tokens: a used refresh token is dead; several threads across expiries."""
    life, n = p.rotation_lifetime_seconds, p.rotation_threads
    table = Table(
        "rotation",
        "Rotating refresh tokens",
        f"{n} threads, one request each every {p.pace_seconds * 1000:.0f} ms, across "
        f"{p.expiries} expiries of a {life} s token; each refresh returns a new refresh token "
        "and the old one stops working.",
        [
            ("requests", "requests"),
            ("failed", "failed requests"),
            ("invalid_grant", "invalid_grant answers"),
            ("token_requests", "token requests"),
        ],
    )

    def run(lib: Library) -> dict[str, Any]:
        with TimedAuthServer(token_lifetime_seconds=life, rotate_refresh_tokens=True) as server:
            client = lib.build(server.url, seeded_token(server, life, life), margin_seconds(life))
            until = time.monotonic() + p.expiries * life + 0.5
            results = run_threads(
                n,
                lambda i: paced_loop(client.session, server.resource_url, until, p.pace_seconds),
                p.expiries * life + 1,
            )
            client.close()
            outcomes = [o for r in results for (_, _, o) in r]
            return {
                "requests": len(outcomes),
                "failed": failed(outcomes),
                "invalid_grant": server.token_errors.get("invalid_grant", 0),
                "token_requests": server.token_requests,
            }

    return per_library(libraries, table, run, needs_refresh_tokens=True)


def _sequential(
    lib: Library, p: Params, break_it: Callable[[TimedAuthServer], None]
) -> dict[str, Any]:
    with TimedAuthServer() as server:
        client = lib.build(
            server.url, seeded_token(server, 3600, 3600) if lib.refresh_tokens else None, 5.0
        )
        first = outcome(client.session, server.resource_url)
        if first != "200":
            raise RuntimeError(f"the warm-up request failed: {first}")
        server.reset_counters()
        break_it(server)
        outcomes = [outcome(client.session, server.resource_url) for _ in range(p.sequential_calls)]
        client.close()
        k = len(outcomes)
        return {
            "caller_gets": outcomes[0],
            "outcomes": summary(outcomes),
            "resource_per_call": round(server.resource_requests / k, 2),
            "token_per_call": round(server.token_requests / k, 2),
        }


_SEQUENTIAL_COLUMNS = [
    ("caller_gets", "caller gets"),
    ("outcomes", "all calls"),
    ("resource_per_call", "resource requests / call"),
    ("token_per_call", "token requests / call"),
]


def revocation(libraries: Sequence[Library], p: Params) -> Table:
    """Every access token revoked server-side while still valid by its expiry."""
    table = Table(
        "revocation",
        "Token revoked server-side",
        f"After one successful call, the server revokes every access token; then "
        f"{p.sequential_calls} calls, one after another.",
        list(_SEQUENTIAL_COLUMNS),
    )
    return per_library(libraries, table, lambda lib: _sequential(lib, p, lambda s: s.revoke_all()))


def storm(libraries: Sequence[Library], p: Params) -> Table:
    """A resource that answers 401 to every token (a wrong audience, say)."""
    table = Table(
        "storm",
        "401 storm",
        f"After one successful call, the resource answers 401 to every token; then "
        f"{p.sequential_calls} calls, one after another.",
        list(_SEQUENTIAL_COLUMNS),
    )

    def always_401(server: TimedAuthServer) -> None:
        server.always_401 = True

    return per_library(libraries, table, lambda lib: _sequential(lib, p, always_401))


def outage(libraries: Sequence[Library], p: Params) -> Table:
    """The token endpoint answers 503 for a window that outlasts the current token."""
    life, window, tail = p.outage_lifetime_seconds, p.outage_window_seconds, p.outage_tail_seconds
    threads = 4
    table = Table(
        "outage",
        "Token endpoint outage",
        f"The token endpoint answers 503 for {window:g} s, starting when the current {life} s "
        f"token has its whole life ahead; {threads} threads send a request every 20 ms. "
        f"Then the endpoint recovers and the run goes on for {tail:g} s.",
        [
            ("requests", "requests during"),
            ("failed", "failed during"),
            ("token_requests", "token requests during"),
            ("failed_after", "failed after recovery"),
        ],
    )

    def run(lib: Library) -> dict[str, Any]:
        with TimedAuthServer(token_lifetime_seconds=life) as server:
            token = seeded_token(server, life, life) if lib.refresh_tokens else None
            client = lib.build(server.url, token, margin_seconds(life))
            if token is None:
                first = outcome(client.session, server.resource_url)  # requests-auth's token
                if first != "200":
                    raise RuntimeError(f"the warm-up request failed: {first}")
            server.reset_counters()
            server.set_token_fault("503")
            start = time.monotonic()
            recovered_at = start + window
            stopper = threading.Timer(window, server.clear_token_fault)
            stopper.start()
            counts: list[int] = []

            def count_at_recovery() -> None:
                counts.append(server.token_requests)

            snap = threading.Timer(window - 0.01, count_at_recovery)
            snap.start()
            results = run_threads(
                threads,
                lambda i: paced_loop(
                    client.session, server.resource_url, recovered_at + tail, 0.02
                ),
                window + tail,
            )
            stopper.join(5)
            snap.join(5)
            client.close()
            during = [o for r in results for (t, _, o) in r if t < recovered_at]
            after = [o for r in results for (t, _, o) in r if t >= recovered_at]
            return {
                "requests": len(during),
                "failed": failed(during),
                "token_requests": counts[0] if counts else None,
                "failed_after": failed(after),
            }

    return per_library(libraries, table, run)


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
        [
            ("p50", "p50"),
            ("p99", "p99"),
            ("max", "max"),
            ("near_p50", "p50 near expiry"),
            ("near_p99", "p99 near expiry"),
            ("near_max", "max near expiry"),
            ("waited", "waited"),
            ("failed", "failed"),
            ("token_requests", "token requests"),
        ],
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
            moments = [
                seeded_at + life,
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
                "token_requests": server.token_requests,
            }

    ours = (OURS, OURS_INLINE) if OURS in libraries else ()
    return per_library((*ours, *(lib for lib in libraries if lib is not OURS)), table, run)


def _ms(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 1)


def shared_stores(libraries: Sequence[Library], p: Params) -> Table:
    """Processes with and without a shared store (``benchmarks.stores``): token requests on
    first use and per expiry for the whole fleet."""
    from . import stores

    n = p.store_processes
    table = Table(
        "stores",
        "Processes sharing a store",
        f"{n} worker processes share one client (client credentials); every token expires "
        f"{p.expiries} times. Token requests made by the whole fleet (see benchmarks/stores.py).",
        [
            ("first_use", "token requests on first use"),
            ("per_expiry", "token requests per expiry"),
            ("failed", "failed requests"),
        ],
    )
    result = stores.run(n, p.expiries)
    names = {"none": "no store (each process alone)", "file": "FileStore", "redis": "RedisStore"}
    for kind, row in result["stores"].items():
        label = f"{OURS.name}, {names.get(kind, kind)}"
        if "skipped" in row:
            table.rows.append({"library": label, "skipped": row["skipped"]})
            continue
        table.rows.append(
            {
                "library": label,
                "first_use": row["first_use"],
                "per_expiry": ", ".join(str(c) for c in row["per_expiry"]),
                "failed": row["failed_requests"],
            }
        )
    return table


#: Every scenario, in report order: name -> function(libraries, params).
SCENARIOS: dict[str, Callable[[Sequence[Library], Params], Table]] = {
    "overhead": overhead,
    "fast_path": fast_path,
    "stampede": stampede,
    "rotation": rotation,
    "revocation": revocation,
    "storm": storm,
    "outage": outage,
    "latency": latency,
}

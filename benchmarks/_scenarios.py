"""The scenarios. Each runs every library through the same situation against the testing
server over loopback and returns a :class:`Table` of counts and ratios. The outage
scenarios live in :mod:`benchmarks._outage`, latency at expiry in
:mod:`benchmarks._latency`, the building blocks in :mod:`benchmarks._harness`.
"""

from __future__ import annotations

import statistics
import time
import timeit
from collections import Counter
from collections.abc import Sequence
from typing import Any, Callable

import requests

from ._harness import (
    FULL,
    JOIN_GRACE_SECONDS,
    QUICK,
    WAITED_MS,
    Params,
    Table,
    failed,
    outcome,
    paced_loop,
    per_library,
    percentile,
    ratio_row,
    run_threads,
    seeded_token,
    summary,
)
from ._latency import latency
from ._libraries import (
    BASELINE,
    OURS,
    Client,
    ConstantHeader,
    Library,
    google_threshold,
    insecure_loopback,
    margin_seconds,
)
from ._outage import long_outage, outage
from ._servers import TimedAuthServer, password_token, server_process

__all__ = [  # the harness names are re-exported: tests and plug-in scenarios import them here
    "FULL",
    "JOIN_GRACE_SECONDS",
    "QUICK",
    "SCENARIOS",
    "WAITED_MS",
    "Params",
    "Table",
    "failed",
    "outcome",
    "paced_loop",
    "per_library",
    "percentile",
    "run_threads",
    "seeded_token",
    "shared_stores",
    "summary",
]


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
        table.rows.append(ratio_row(lib.name, ratios[lib.name], fails[lib.name]))
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
    "outage_long": long_outage,
    "latency": latency,
}

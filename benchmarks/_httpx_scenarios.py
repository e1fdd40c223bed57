"""The httpx scenarios: requests-tokenauth's ``httpx.TokenAuth`` beside Authlib's
``OAuth2Client`` / ``AsyncOAuth2Client`` and httpx-auth, each with ``httpx.Client``
(threads) and ``httpx.AsyncClient`` (tasks on one loop), against the same loopback testing
server in the same run as the requests scenarios. Plugged into ``python -m benchmarks`` by
:data:`benchmarks.EXTRA_SCENARIO_MODULES`; ``--scenario httpx`` runs only these.

Here: throughput vs a bare client, stampede, rotation, revocation. Outage and latency at
expiry are in :mod:`benchmarks._httpx_timed`, event-loop lag in :mod:`benchmarks._loop_lag`,
how each library is configured in :mod:`benchmarks._httpx_libraries`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any, Callable, Optional

from ._harness import Params, Table, failed, ratio_row, seeded_token, summary
from ._httpx_harness import Driver, driving, only_ours, per_httpx_library
from ._httpx_libraries import BARE_ASYNC, BARE_SYNC, HTTPX_LIBRARIES, HttpxLibrary
from ._httpx_timed import httpx_latency, httpx_outage
from ._libraries import insecure_loopback, margin_seconds
from ._loop_lag import httpx_loop_lag
from ._servers import TimedAuthServer, password_token, server_process

#: Workers (threads, or tasks) of the throughput scenario.
THROUGHPUT_WORKERS = 8


def httpx_overhead(libraries: Sequence[HttpxLibrary], p: Params) -> Table:
    """Throughput with a long-lived token, as a ratio to a bare client of the same flavour;
    the server runs in a child process. Interleaved, median of the repetitions."""
    n = THROUGHPUT_WORKERS
    table = Table(
        "httpx_overhead",
        "httpx: throughput as a ratio to a bare client",
        f"{n} threads (Client) or {n} tasks on one loop (AsyncClient) send "
        f"{p.overhead_requests} requests with a 1 h token; the server runs in another process. "
        "Throughput ratio to a bare client of the same flavour with a static header (1.00 = no "
        f"overhead), median of {p.repetitions} interleaved repetitions.",
        [("ratio", "throughput vs bare"), ("failed", "failed requests")],
    )
    per_worker = max(1, p.overhead_requests // n)
    ratios: dict[str, list[float]] = {}
    fails: Counter[str] = Counter()
    broken: dict[str, str] = {}
    everyone = [BARE_SYNC, BARE_ASYNC, *libraries]
    with insecure_loopback(), server_process() as url:
        token = password_token(url)
        resource = url + "/resource"
        for bare in (BARE_SYNC, BARE_ASYNC):
            flavour = [
                lib
                for lib in everyone
                if lib.asynchronous == bare.asynchronous and lib.version is not None
            ]
            with ExitStack() as stack:
                drivers: dict[str, Driver] = {}
                for lib in flavour:
                    try:
                        drivers[lib.name] = stack.enter_context(
                            driving(lib, url, token if lib.refresh_tokens else None, 5.0)
                        )
                        drivers[lib.name].repeat(n, resource, 2)  # connections, first token
                    except Exception as exc:
                        broken[lib.name] = f"failed to run: {type(exc).__name__}"
                        drivers.pop(lib.name, None)
                names = list(drivers)
                for name in names:
                    ratios[name] = []
                for rep in range(p.repetitions):
                    rps: dict[str, float] = {}
                    for name in names[rep % len(names) :] + names[: rep % len(names)]:
                        elapsed, bad = drivers[name].repeat(n, resource, per_worker)
                        rps[name] = n * per_worker / elapsed
                        fails[name] += bad
                    for name in names:
                        ratios[name].append(rps[name] / rps[bare.name])
    for lib in everyone:
        if lib.name in broken or lib.name not in ratios:
            table.rows.append(
                {"library": lib.name, "skipped": broken.get(lib.name, "not installed")}
            )
            continue
        table.rows.append(ratio_row(lib.name, ratios[lib.name], fails[lib.name]))
    return table


def httpx_stampede(libraries: Sequence[HttpxLibrary], p: Params) -> Table:
    """Many threads, or many tasks on one loop, at once on an expired token."""
    threads, tasks = p.stampede_threads, p.httpx_tasks
    table = Table(
        "httpx_stampede",
        "httpx: stampede at expiry",
        f"{threads} threads (Client) or {tasks} tasks on one loop (AsyncClient) start together "
        f"on an expired token (httpx-auth: on first use); the token endpoint takes "
        f"{p.token_latency_seconds * 1000:.0f} ms.",
        [
            ("workers", "threads / tasks"),
            ("token_requests", "token requests"),
            ("failed", "failed requests"),
            ("outcomes", "outcomes"),
        ],
    )

    def run(lib: HttpxLibrary) -> dict[str, Any]:
        n = tasks if lib.asynchronous else threads
        with TimedAuthServer(token_latency_seconds=p.token_latency_seconds) as server:
            token = seeded_token(server, 3600, -1) if lib.refresh_tokens else None
            with driving(lib, server.url, token, margin_seconds(3600)) as driver:
                results = driver.many(n, server.resource_url)
            return {
                "workers": n,
                "token_requests": server.token_requests,
                "failed": failed(results),
                "outcomes": summary(results),
            }

    return per_httpx_library(libraries, table, run, only=only_ours(p))


def httpx_rotation(libraries: Sequence[HttpxLibrary], p: Params) -> Table:
    """Rotating refresh tokens across expiries."""
    life, n = p.rotation_lifetime_seconds, p.rotation_threads
    table = Table(
        "httpx_rotation",
        "httpx: rotating refresh tokens",
        f"{n} threads (Client) or {n} tasks on one loop (AsyncClient), one request each every "
        f"{p.pace_seconds * 1000:.0f} ms, across {p.expiries} expiries of a {life} s token; "
        "each refresh returns a new refresh token and the old one stops working. httpx-auth: "
        "OAuth2ResourceOwnerPasswordCredentials (its flow without a browser that refreshes; "
        "it cannot take a saved token, so its first use sends the password grant).",
        [
            ("requests", "requests"),
            ("failed", "failed requests"),
            ("invalid_grant", "invalid_grant answers"),
            ("token_requests", "token requests"),
        ],
    )

    def run(lib: HttpxLibrary) -> dict[str, Any]:
        with TimedAuthServer(token_lifetime_seconds=life, rotate_refresh_tokens=True) as server:
            token = seeded_token(server, life, life)
            with driving(lib, server.url, token, margin_seconds(life), rotating=True) as driver:
                until = time.monotonic() + p.expiries * life + 0.5
                results = driver.paced(n, server.resource_url, until, p.pace_seconds)
            outcomes = [o for r in results for (_, _, o) in r]
            return {
                "requests": len(outcomes),
                "failed": failed(outcomes),
                "invalid_grant": server.token_errors.get("invalid_grant", 0),
                "token_requests": server.token_requests,
                "failures": summary([o for o in outcomes if o != "200"]),
            }

    def not_applicable(lib: HttpxLibrary) -> Optional[str]:
        if lib.refresh_tokens or lib.build_rotating is not None:
            return None
        return "no refresh-token support"

    only = only_ours(p, sync=False)
    return per_httpx_library(libraries, table, run, not_applicable=not_applicable, only=only)


def httpx_revocation(libraries: Sequence[HttpxLibrary], p: Params) -> Table:
    """Every access token revoked server-side while still valid by its expiry."""
    k = p.sequential_calls
    table = Table(
        "httpx_revocation",
        "httpx: token revoked server-side",
        f"After one successful call, the server revokes every access token; then {k} calls, "
        "one after another.",
        [
            ("caller_gets", "caller gets"),
            ("outcomes", "all calls"),
            ("resource_per_call", "resource requests / call"),
            ("token_per_call", "token requests / call"),
        ],
    )

    def run(lib: HttpxLibrary) -> dict[str, Any]:
        with TimedAuthServer() as server:
            token = seeded_token(server, 3600, 3600) if lib.refresh_tokens else None
            with driving(lib, server.url, token, 5.0) as driver:
                first = driver.call(server.resource_url)
                if first != "200":
                    raise RuntimeError(f"the warm-up request failed: {first}")
                server.reset_counters()
                server.revoke_all()
                outcomes = [driver.call(server.resource_url) for _ in range(k)]
            return {
                "caller_gets": outcomes[0],
                "outcomes": summary(outcomes),
                "resource_per_call": round(server.resource_requests / k, 2),
                "token_per_call": round(server.token_requests / k, 2),
            }

    return per_httpx_library(libraries, table, run)


def _with_httpx_libraries(
    scenario: Callable[[Sequence[HttpxLibrary], Params], Table],
) -> Callable[[Sequence[Any], Params], Table]:
    # the runner hands every scenario the requests libraries; these compare the httpx ones
    def run(requests_libraries: Sequence[Any], p: Params) -> Table:
        return scenario(HTTPX_LIBRARIES, p)

    run.__doc__ = scenario.__doc__
    return run


#: The httpx scenarios, in report order (``benchmarks`` picks this up).
SCENARIOS: dict[str, Callable[[Sequence[Any], Params], Table]] = {
    name: _with_httpx_libraries(scenario)
    for name, scenario in {
        "httpx_overhead": httpx_overhead,
        "httpx_stampede": httpx_stampede,
        "httpx_rotation": httpx_rotation,
        "httpx_revocation": httpx_revocation,
        "httpx_outage": httpx_outage,
        "httpx_latency": httpx_latency,
        "httpx_loop_lag": httpx_loop_lag,
    }.items()
}

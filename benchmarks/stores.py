"""A fleet on one store: N processes sharing one token, with and without a shared store.

``python -m benchmarks.stores`` (from the repository root) runs the load of issue 16 for N in
1, 4, 16, 32, 64 processes (``--processes``) and no store, a ``FileStore`` and a
``RedisStore``: 2 threads per process call the loopback server for ``--seconds`` with one
rotating refresh token of ``--lifetime`` seconds, and the table shows token requests, lock
acquisitions per renewal round, the longest lock wait and token wait, failed calls,
``invalid_grant`` and p50/p99 latencies, overall and around renewals (see
:mod:`benchmarks._fleet_load`). ``--out FILE.json`` keeps the figures.

:func:`run` (``--expiries K``) counts token requests per expiry instead: the workers' clocks
are the system clock plus an offset that this process moves past the token lifetime between
rounds, so every worker's token expires at the same moment and no one sleeps. Each round,
every worker is released from one barrier and makes its requests; the server counts the
token requests. Without a store each process fetches its own token; with a ``FileStore`` or
a ``RedisStore`` the fleet fetches one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any, Optional

import requests

from requests_tokenauth import (
    ClientCredentials,
    FileStore,
    RedisStore,
    RefreshPolicy,
    TokenAuth,
    TokenStore,
)
from requests_tokenauth._clock import SYSTEM_CLOCK
from requests_tokenauth.testing import AuthServer, OffsetClock, redis_server, redis_server_binary

from . import _fleet_load

#: Token lifetime on the server; the workers' clocks jump past it between rounds.
LIFETIME_SECONDS = 3600
#: Every wait gives up after this long.
WAIT_SECONDS = 60.0
#: The store kinds :func:`run` knows.
STORES = ("none", "file", "redis")


def _open_store(spec: Optional[dict[str, Any]]) -> Optional[TokenStore]:
    if spec is None:
        return None
    if spec["kind"] == "file":
        return FileStore(spec["path"])
    import redis

    return RedisStore(redis.Redis.from_url(spec["url"]), key_prefix=spec["prefix"])


def _worker(
    token_url: str,
    resource_url: str,
    spec: Optional[dict[str, Any]],
    rounds: int,
    calls: int,
    offset: Any,
    barrier: Any,
    failures: Any,
) -> None:
    auth = TokenAuth(
        ClientCredentials(token_url, client_id="svc", client_secret="svc-secret"),
        store=_open_store(spec),
        clock=OffsetClock(offset),
        policy=RefreshPolicy(refresh_jitter_fraction=0.0),
        refresh_ahead="inline",
    )
    session = requests.Session()
    session.trust_env = False
    session.auth = auth
    for _ in range(rounds):
        barrier.wait(WAIT_SECONDS)
        for _ in range(calls):
            try:
                ok = session.get(resource_url, timeout=WAIT_SECONDS).status_code == 200
            except requests.RequestException:
                ok = False
            if not ok:
                with failures.get_lock():
                    failures.value += 1
        barrier.wait(WAIT_SECONDS)


def _fleet(
    processes: int, expiries: int, calls: int, spec: Optional[dict[str, Any]]
) -> dict[str, Any]:
    """One fleet against a fresh server: token requests in the first round and per expiry."""
    ctx = multiprocessing.get_context("spawn")
    offset = ctx.Value("d", 0.0)
    failures = ctx.Value("i", 0)
    barrier = ctx.Barrier(processes + 1)
    rounds = expiries + 1
    with AuthServer(clock=SYSTEM_CLOCK, token_lifetime_seconds=LIFETIME_SECONDS) as server:
        workers = [
            ctx.Process(
                target=_worker,
                args=(
                    server.token_url,
                    server.resource_url,
                    spec,
                    rounds,
                    calls,
                    offset,
                    barrier,
                    failures,
                ),
                daemon=True,
            )
            for _ in range(processes)
        ]
        for p in workers:
            p.start()
        counts: list[int] = []
        started = time.monotonic()
        try:
            for round_ in range(rounds):
                if round_:
                    with offset.get_lock():
                        offset.value += LIFETIME_SECONDS + 60  # every token is now expired
                before = server.token_requests
                barrier.wait(WAIT_SECONDS)  # go
                barrier.wait(WAIT_SECONDS)  # done
                counts.append(server.token_requests - before)
        finally:
            for p in workers:
                p.join(WAIT_SECONDS)
                if p.is_alive():
                    p.kill()
                    p.join(5)
        seconds = time.monotonic() - started
    per_expiry = counts[1:]
    return {
        "first_use": counts[0],
        "per_expiry": per_expiry,
        "mean_per_expiry": sum(per_expiry) / len(per_expiry) if per_expiry else None,
        "failed_requests": int(failures.value),
        "requests": processes * calls * rounds,
        "seconds": round(seconds, 2),
    }


@contextlib.contextmanager
def _redis(url: Optional[str]) -> Iterator[tuple[Optional[str], str]]:
    """A Redis URL: the one given, ``TOKENAUTH_TEST_REDIS_URL``, or a private
    ``redis-server`` on a free loopback port; ``(None, reason)`` when there is none."""
    url = url or os.environ.get("TOKENAUTH_TEST_REDIS_URL")
    try:
        import redis  # noqa: F401
    except ImportError:
        yield None, "redis-py is not installed"
        return
    if url:
        yield url, ""
        return
    binary = redis_server_binary()
    if binary is None:
        yield None, "no Redis (pass --redis-url or install redis-server)"
        return
    with redis_server(binary) as started:
        yield started, ""


def run(
    processes: int = 8,
    expiries: int = 3,
    *,
    calls: int = 1,
    stores: tuple[str, ...] = STORES,
    redis_url: Optional[str] = None,
) -> dict[str, Any]:
    """Token requests per expiry for ``processes`` processes sharing one client.

    :param processes: worker processes in the fleet.
    :param expiries: how many times every token expires (after the first use).
    :param calls: requests per process per round.
    :param stores: which of ``"none"`` (each process on its own), ``"file"`` (a shared
        ``FileStore``) and ``"redis"`` (a shared ``RedisStore``) to run.
    :param redis_url: the Redis to use; default ``TOKENAUTH_TEST_REDIS_URL``, else a private
        ``redis-server`` when one is installed, else the Redis row is skipped.
    :returns: ``{"processes", "expiries", "calls", "stores": {kind: counts or {"skipped"}}}``.
    """
    unknown = set(stores) - set(STORES)
    if unknown:
        raise ValueError(f"unknown store kinds {sorted(unknown)}; known: {STORES}")
    out: dict[str, Any] = {"processes": processes, "expiries": expiries, "calls": calls}
    results: dict[str, Any] = {}
    for kind in stores:
        if kind == "none":
            results[kind] = _fleet(processes, expiries, calls, None)
        elif kind == "file":
            with tempfile.TemporaryDirectory(prefix="tokenauth-bench-") as directory:
                spec = {"kind": "file", "path": directory}
                results[kind] = _fleet(processes, expiries, calls, spec)
        else:
            with _redis(redis_url) as (url, reason):
                if url is None:
                    results[kind] = {"skipped": reason}
                    continue
                prefix = f"tokenauth-bench:{uuid.uuid4().hex}:"
                spec = {"kind": "redis", "url": url, "prefix": prefix}
                try:
                    results[kind] = _fleet(processes, expiries, calls, spec)
                finally:
                    _delete_prefix(url, prefix)
    out["stores"] = results
    return out


def _delete_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=100))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def table(result: dict[str, Any]) -> str:
    """The result of :func:`run` as a plain-text table."""
    lines = [
        f"{result['processes']} processes, {result['expiries']} expiries, "
        f"{result['calls']} call(s) per process per round",
        f"{'store':<8} {'first use':>9} {'per expiry':>16} {'failed':>6} {'seconds':>7}",
    ]
    for kind, row in result["stores"].items():
        if "skipped" in row:
            lines.append(f"{kind:<8} skipped: {row['skipped']}")
            continue
        per_expiry = ",".join(str(n) for n in row["per_expiry"])
        lines.append(
            f"{kind:<8} {row['first_use']:>9} {per_expiry:>16} "
            f"{row['failed_requests']:>6} {row['seconds']:>7}"
        )
    return "\n".join(lines)


#: The process counts of the load sweep, and its token lifetime, length and call pace.
SWEEP_PROCESSES = (1, 4, 16, 32, 64)
LOAD_LIFETIME_SECONDS = 3
LOAD_SECONDS = 12.0
LOAD_INTERVAL_SECONDS = 0.1


def load(
    processes: int,
    kind: str,
    *,
    seconds: float = LOAD_SECONDS,
    lifetime: int = LOAD_LIFETIME_SECONDS,
    interval: float = LOAD_INTERVAL_SECONDS,
    redis_url: Optional[str] = None,
) -> dict[str, Any]:
    """One fleet of ``processes`` x 2 threads under load with store ``kind``; the figures
    of :func:`benchmarks._fleet_load.summary` (or ``{"skipped": reason}``)."""
    if kind == "none":
        return _load_fleet(processes, None, seconds, lifetime, interval)
    if kind == "file":
        with tempfile.TemporaryDirectory(prefix="tokenauth-bench-") as directory:
            spec = {"kind": "file", "path": directory}
            return _load_fleet(processes, spec, seconds, lifetime, interval)
    with _redis(redis_url) as (url, reason):
        if url is None:
            return {"skipped": reason}
        prefix = f"tokenauth-bench:{uuid.uuid4().hex}:"
        try:
            spec = {"kind": "redis", "url": url, "prefix": prefix}
            return _load_fleet(processes, spec, seconds, lifetime, interval)
        finally:
            _delete_prefix(url, prefix)


def _load_fleet(
    processes: int, spec: Optional[dict[str, Any]], seconds: float, lifetime: int, interval: float
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    results: Any = ctx.Queue()
    with AuthServer(
        clock=SYSTEM_CLOCK, token_lifetime_seconds=lifetime, rotate_refresh_tokens=True
    ) as server:
        shared = server.issue_token("app", refresh=True, user="alice")
        workers = []
        for _ in range(processes):
            # without a store each process has a refresh token of its own (a shared one
            # would be spent by the first and refused to the others)
            seed = shared if spec else server.issue_token("app", refresh=True, user="alice")
            seed = dict(seed, expires_at=time.time() + seed["expires_in"])
            args = (server.token_url, server.resource_url, spec, seed, seconds, interval)
            workers.append(
                ctx.Process(target=_fleet_load.worker, args=(*args, barrier, results), daemon=True)
            )
        for p in workers:
            p.start()
        try:
            barrier.wait(_fleet_load.WAIT_SECONDS)  # every worker warmed up: go
            before = server.token_requests
            reports = [results.get(timeout=seconds + _fleet_load.WAIT_SECONDS) for _ in workers]
            made = server.token_requests - before
        finally:
            for p in workers:
                p.join(_fleet_load.WAIT_SECONDS)
                if p.is_alive():
                    p.kill()
                    p.join(5)
    crashes = [r["crash"] for r in reports if "crash" in r]
    if crashes:
        raise RuntimeError("a worker crashed:\n" + crashes[0])
    return _fleet_load.summary(reports, made)


#: The columns of the load table: (key of the summary, header).
LOAD_COLUMNS = (
    ("token_requests_per_round", "req/round"),
    ("rounds", "rounds"),
    ("failed_calls", "failed"),
    ("invalid_grant", "inv_grant"),
    ("lock_acquisitions_per_round", "locks/round"),
    ("longest_lock_wait_ms", "lock wait ms"),
    ("longest_get_token_ms", "get_token ms"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("around_renewals_p50_ms", "renew p50"),
    ("around_renewals_p99_ms", "renew p99"),
)


def load_table(rows: list[dict[str, Any]]) -> str:
    """The load sweep as a Markdown table, one row per (processes, store)."""
    head = ["N", "store", *(title for _, title in LOAD_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        if "skipped" in row:
            cells = [str(row["processes"]), row["store"], "skipped: " + row["skipped"]]
        else:
            cells = [str(row["processes"]), row["store"]]
            cells += [str(row.get(key)) for key, _ in LOAD_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stores", description=__doc__)
    parser.add_argument("--processes", type=int, nargs="+", default=list(SWEEP_PROCESSES))
    parser.add_argument("--store", action="append", choices=STORES, help="repeatable")
    parser.add_argument("--seconds", type=float, default=LOAD_SECONDS, help="load per fleet")
    parser.add_argument("--lifetime", type=int, default=LOAD_LIFETIME_SECONDS)
    parser.add_argument("--interval", type=float, default=LOAD_INTERVAL_SECONDS)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    parser.add_argument("--expiries", type=int, default=None, help="count per expiry instead")
    parser.add_argument("--calls", type=int, default=1, help="with --expiries: calls per round")
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args(argv)
    stores = tuple(args.store or STORES)
    if args.expiries is not None:
        for n in args.processes:
            result = run(
                n, args.expiries, calls=args.calls, stores=stores, redis_url=args.redis_url
            )
            print(table(result))
            print(json.dumps(result, indent=2))
        return 0
    rows = []
    for n in args.processes:
        for kind in stores:
            figures = load(
                n,
                kind,
                seconds=args.seconds,
                lifetime=args.lifetime,
                interval=args.interval,
                redis_url=args.redis_url,
            )
            rows.append({"processes": n, "store": kind, **figures})
            print(load_table(rows[-1:]).splitlines()[-1], flush=True)
    print(load_table(rows))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            json.dump({"seconds": args.seconds, "lifetime": args.lifetime, "rows": rows}, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

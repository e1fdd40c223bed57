"""Token requests per expiry for N processes, with and without a shared store.

Self-contained: ``python -m benchmarks.stores --processes 8 --expiries 3`` (from the
repository root) prints a table and the JSON of :func:`run`.

N worker processes (multiprocessing, spawn) share one client (``svc``, client credentials)
against the loopback testing server in this process. The workers' clocks are the system
clock plus an offset that this process moves past the token lifetime between rounds, so
every worker's token expires at the same moment and no one sleeps. Each round, every
worker is released from one barrier and makes its requests; the server counts the token
requests. Without a store each process fetches its own token; with a ``FileStore`` or a
``RedisStore`` the fleet fetches one.
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


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stores", description=__doc__)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--expiries", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1, help="requests per process per round")
    parser.add_argument("--store", action="append", choices=STORES, help="repeatable")
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args(argv)
    result = run(
        args.processes,
        args.expiries,
        calls=args.calls,
        stores=tuple(args.store or STORES),
        redis_url=args.redis_url,
    )
    print(table(result))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A fleet under load on one store (issue 16): N processes x 2 threads share one rotating
refresh token for a few seconds of calls, and every process measures what it went through.

Each worker process (spawned) makes its calls against the loopback server of the parent,
with the default policy (jitter on) and refresh ahead on a background thread, through a
:class:`MeasuredStore` that times every store-lock wait. Renewals are timed from the
manager's events; the time a call spent getting its token from a wrapper around
``TokenManager.get_token``. The parent merges what the workers report (:func:`summary`).
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any, Callable, Optional

import requests

from requests_tokenauth import FileStore, RedisStore, RefreshToken, TokenAuth, TokenEvent

#: How a process waits on the others and on the parent at most.
WAIT_SECONDS = 120.0
#: Token requests further apart than this belong to different renewal rounds.
ROUND_GAP_SECONDS = 0.5
#: A call counts as "around a renewal" when it starts this close to a round's first request.
AROUND_SECONDS = 0.5


class MeasuredStore:
    """A store proxy that records each lock wait: ``(wall time, seconds waited, whether
    the lock was taken)``; a waiter that left because a better token appeared took none."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.waits: list[tuple[float, float, bool]] = []
        self._guard = threading.Lock()

    def load(self, key: str) -> Optional[dict[str, Any]]:
        return self.store.load(key)  # type: ignore[no-any-return]

    def save(self, key: str, token: dict[str, Any]) -> None:
        self.store.save(key, token)

    def delete(self, key: str) -> None:
        self.store.delete(key)

    def _record(self, started: float, held: bool) -> None:
        with self._guard:
            self.waits.append((time.time(), time.monotonic() - started, held))

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        started = time.monotonic()
        with self.store.lock(key):
            self._record(started, True)
            yield

    @contextlib.contextmanager
    def lock_unless(self, key: str, satisfied: Callable[[], bool]) -> Iterator[bool]:
        started = time.monotonic()
        with self.store.lock_unless(key, satisfied) as held:
            self._record(started, bool(held))
            yield held


def open_store(spec: Optional[dict[str, Any]]) -> Optional[MeasuredStore]:
    if spec is None:
        return None
    if spec["kind"] == "file":
        return MeasuredStore(FileStore(spec["path"]))
    import redis

    client = redis.Redis.from_url(spec["url"], socket_timeout=WAIT_SECONDS)
    return MeasuredStore(RedisStore(client, key_prefix=spec["prefix"]))


def worker(
    token_url: str,
    resource_url: str,
    spec: Optional[dict[str, Any]],
    seed: dict[str, Any],
    seconds: float,
    interval: float,
    barrier: Any,
    results: Any,
) -> None:
    """Warm up (one call), wait for the fleet, then call from 2 threads for ``seconds``,
    one call per ``interval`` per thread; report every measurement on ``results``."""
    try:
        results.put(_load(token_url, resource_url, spec, seed, seconds, interval, barrier))
    except BaseException:
        results.put({"crash": traceback.format_exc(limit=6)})
        raise


def _load(
    token_url: str,
    resource_url: str,
    spec: Optional[dict[str, Any]],
    seed: dict[str, Any],
    seconds: float,
    interval: float,
    barrier: Any,
) -> dict[str, Any]:
    renewals: list[tuple[float, str]] = []  # (wall time the request started, error or "")

    def on_event(event: TokenEvent) -> None:
        if event.kind in ("refresh_succeeded", "refresh_failed"):
            renewals.append((time.time() - (event.duration_seconds or 0.0), event.error or ""))

    store = open_store(spec)
    grant = RefreshToken(
        token_url, client_id="app", client_secret="app-secret", refresh_token=seed["refresh_token"]
    )
    auth = TokenAuth(grant, token=seed, store=store, on_event=on_event)
    getting: list[float] = []
    manager = auth.manager
    get_token = manager.get_token

    def timed_get_token() -> Any:
        started = time.monotonic()
        try:
            return get_token()
        finally:
            getting.append(time.monotonic() - started)

    manager.get_token = timed_get_token  # type: ignore[method-assign]
    session = requests.Session()
    session.trust_env = False
    session.auth = auth
    session.get(resource_url, timeout=WAIT_SECONDS)  # warm-up: first use, not measured
    if store is not None:
        store.waits.clear()
    renewals.clear()
    getting.clear()
    calls: list[tuple[float, float, bool]] = []  # (wall start, seconds, ok)
    guard = threading.Lock()
    barrier.wait(WAIT_SECONDS)
    end = time.monotonic() + seconds

    def run() -> None:
        pause = threading.Event()
        while time.monotonic() < end:
            wall, started = time.time(), time.monotonic()
            try:
                ok = session.get(resource_url, timeout=WAIT_SECONDS).status_code == 200
            except requests.RequestException:
                ok = False
            with guard:
                calls.append((wall, time.monotonic() - started, ok))
            pause.wait(interval)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + WAIT_SECONDS)
    manager.wait_for_refresh(WAIT_SECONDS)
    return {
        "calls": calls,
        "renewals": list(renewals),
        "getting_max": max(getting, default=0.0),
        "waits": list(store.waits) if store is not None else [],
    }


def _percentile(values: list[float], fraction: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def rounds_of(starts: list[float]) -> list[float]:
    """The first request of each renewal round (requests within ROUND_GAP_SECONDS of the
    previous one belong to its round)."""
    firsts: list[float] = []
    last = None
    for at in sorted(starts):
        if last is None or at - last > ROUND_GAP_SECONDS:
            firsts.append(at)
        last = at
    return firsts


def summary(reports: list[dict[str, Any]], server_token_requests: int) -> dict[str, Any]:
    """The fleet's figures from the workers' reports."""
    calls = [c for r in reports for c in r["calls"]]
    renewals = [x for r in reports for x in r["renewals"]]
    waits = [w for r in reports for w in r["waits"]]
    firsts = rounds_of([at for at, _ in renewals])
    rounds = max(len(firsts), 1)
    latencies = [seconds for _, seconds, _ in calls]
    around = [
        seconds
        for at, seconds, _ in calls
        if any(first - AROUND_SECONDS <= at <= first + AROUND_SECONDS for first in firsts)
    ]

    def ms(value: Optional[float]) -> Optional[float]:
        return None if value is None else round(value * 1000, 1)

    return {
        "calls": len(calls),
        "failed_calls": sum(1 for _, _, ok in calls if not ok),
        "invalid_grant": sum(1 for _, error in renewals if error == "invalid_grant"),
        "rounds": len(firsts),
        "token_requests": len(renewals),
        "server_token_requests": server_token_requests,
        "token_requests_per_round": round(len(renewals) / rounds, 2),
        "lock_acquisitions_per_round": round(sum(1 for *_, held in waits if held) / rounds, 2),
        "lock_waits_left_early": sum(1 for *_, held in waits if not held),
        "longest_lock_wait_ms": ms(max((s for _, s, _ in waits), default=None)),
        "longest_get_token_ms": ms(max((r["getting_max"] for r in reports), default=None)),
        "p50_ms": ms(_percentile(latencies, 0.50)),
        "p99_ms": ms(_percentile(latencies, 0.99)),
        "around_renewals_p50_ms": ms(_percentile(around, 0.50)),
        "around_renewals_p99_ms": ms(_percentile(around, 0.99)),
    }

"""What the processes of tests/test_stores_multiprocess.py run (spawned: importable, picklable
arguments only). The authorization server lives in the parent test process."""

from __future__ import annotations

import hashlib
import threading
import time
import traceback
from contextlib import AbstractContextManager
from typing import Any, Optional

import requests

from requests_tokenauth import (
    ClientCredentials,
    FileStore,
    Grant,
    RedisStore,
    RefreshPolicy,
    RefreshToken,
    TokenAuth,
    TokenStore,
)
from requests_tokenauth.testing import OffsetClock

#: Every wait in a worker gives up after this long, so a broken test never hangs a child.
WAIT_SECONDS = 30.0

#: The refresh token the refresh-token workers are configured with (the seed in the store wins).
CONFIGURED_REFRESH = "configured-refresh-token"

#: No jitter: every process's deadlines are exact.
EXACT = RefreshPolicy(refresh_jitter_fraction=0.0)


class CountingStore:
    """A store whose lock attempts are counted in a shared value (with a condition), so the
    parent knows when every process is waiting for the lock."""

    def __init__(self, store: TokenStore, attempts: Any, changed: Any) -> None:
        self._store = store
        self._attempts = attempts
        self._changed = changed

    def load(self, key: str) -> Optional[dict[str, Any]]:
        return self._store.load(key)

    def save(self, key: str, token: dict[str, Any]) -> None:
        self._store.save(key, token)

    def lock(self, key: str) -> AbstractContextManager[None]:
        with self._changed:
            self._attempts.value += 1
            self._changed.notify_all()
        return self._store.lock(key)


def make_store(spec: dict[str, Any]) -> TokenStore:
    """``{"kind": "file", "path": ...}`` or ``{"kind": "redis", "url": ..., "prefix": ...}``,
    plus keyword arguments of the store under ``"options"``."""
    options = spec.get("options", {})
    if spec["kind"] == "file":
        return FileStore(spec["path"], **options)
    import redis

    client = redis.Redis.from_url(spec["url"], socket_timeout=10, socket_connect_timeout=5)
    return RedisStore(client, key_prefix=spec["prefix"], **options)


def make_grant(kind: str, token_url: str) -> Grant:
    if kind == "client_credentials":
        return ClientCredentials(token_url, client_id="svc", client_secret="svc-secret")
    # every process is configured with the same starting refresh token, which names the
    # user in the store key; the token they renew with is the newest one in the store
    return RefreshToken(
        token_url, client_id="app", client_secret="app-secret", refresh_token=CONFIGURED_REFRESH
    )


def fingerprint(authorization: Optional[str]) -> str:
    return hashlib.sha256((authorization or "").encode()).hexdigest()[:12]


def run_worker(
    worker: int,
    grant_kind: str,
    token_url: str,
    resource_url: str,
    spec: Optional[dict[str, Any]],
    rounds: int,
    threads: int,
    offset: Any,
    barrier: Any,
    attempts: Any,
    changed: Any,
    results: Any,
) -> None:
    """Each round: wait on ``barrier`` (the parent prepared the round), make one request on
    each of ``threads`` threads released together, report, wait on ``barrier`` again.
    Without ``spec`` the process keeps its token to itself (no shared store)."""
    try:
        store = CountingStore(make_store(spec), attempts, changed) if spec else None
        auth = TokenAuth(
            make_grant(grant_kind, token_url),
            store=store,
            clock=OffsetClock(offset),
            policy=EXACT,
            refresh_ahead="inline",
        )
        session = requests.Session()
        session.trust_env = False
        session.auth = auth
        for round_ in range(rounds):
            barrier.wait(WAIT_SECONDS)
            outcomes = _one_round(session, resource_url, threads)
            results.put((worker, round_, outcomes))
            barrier.wait(WAIT_SECONDS)
    except BaseException:
        results.put((worker, -1, [("crash", traceback.format_exc(limit=5))]))
        raise


def _one_round(session: requests.Session, url: str, threads: int) -> list[tuple[str, str]]:
    """``(status or error class, fingerprint of the Authorization sent)`` per thread."""
    start = threading.Barrier(threads)
    outcomes: list[tuple[str, str]] = [("not run", "")] * threads

    def call(i: int) -> None:
        try:
            start.wait(WAIT_SECONDS)
            response = session.get(url, timeout=WAIT_SECONDS)
            sent = response.request.headers.get("Authorization")
            outcomes[i] = (str(response.status_code), fingerprint(sent))
        except Exception as exc:
            outcomes[i] = (type(exc).__name__, "")

    pool = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(WAIT_SECONDS * 2)
    return outcomes


def hold_lock(spec: dict[str, Any], key: str, take: Any, acquired: Any) -> None:
    """When ``take`` is set, take the store lock of ``key``, set ``acquired`` and keep the
    lock until killed (at most WAIT_SECONDS)."""
    store = make_store(spec)
    if not take.wait(WAIT_SECONDS):
        return
    with store.lock(key):
        acquired.set()
        time.sleep(WAIT_SECONDS)  # the parent SIGKILLs this process long before


def get_token_once(spec: dict[str, Any], token_url: str) -> None:
    """Get a token for ``svc`` through the store of ``spec`` (the parent holds the token
    request at the server and SIGKILLs this process while it holds the store's lock)."""
    from requests_tokenauth import TokenManager

    manager = TokenManager(make_grant("client_credentials", token_url), store=make_store(spec))
    manager.get_token()

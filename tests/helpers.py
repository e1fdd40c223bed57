"""Shared pieces of the integration tests: a counting lock, barrier-released threads."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import requests
import wrapt

from requests_tokenauth import ClientCredentials, RefreshPolicy, TokenAuth
from requests_tokenauth.testing import AuthServer, FakeClock

#: No jitter: deadlines are exact. A 100 s token is stale at 70 s and expired at 95 s.
EXACT = RefreshPolicy(refresh_jitter_fraction=0.0)
LIFETIME = 100
EXPIRED_AFTER = 96


class CountingLock(wrapt.BaseObjectProxy):  # type: ignore[misc]
    """A proxy around the manager's lock that counts acquire attempts, so a test knows when
    every thread has reached the slow path before it lets the token request finish."""

    def __init__(self, lock: object) -> None:
        super().__init__(lock)
        self._self_attempts = 0
        self._self_cond = threading.Condition()

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        with self._self_cond:
            self._self_attempts += 1
            self._self_cond.notify_all()
        return bool(self.__wrapped__.acquire(*args, **kwargs))

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.__wrapped__.release()

    @property
    def attempts(self) -> int:
        with self._self_cond:
            return self._self_attempts

    def wait_for_attempts(self, n: int, timeout: float = 10.0) -> bool:
        with self._self_cond:
            return self._self_cond.wait_for(lambda: self._self_attempts >= n, timeout)


def count_lock(auth: TokenAuth) -> CountingLock:
    lock = CountingLock(auth.manager._lock)
    auth.manager._lock = lock
    return lock


def start_threads(n: int, target: Callable[[int], Any]) -> tuple[list[threading.Thread], list[Any]]:
    """Start ``n`` threads that wait on one barrier, then each run ``target(i)``; results
    (or the exception raised) land in the returned list."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait(10)
        try:
            results[i] = target(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


def join_all(threads: list[threading.Thread], timeout: float = 20.0) -> None:
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a thread did not finish"


def session_for(auth: Any, pool: int = 64) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool)
    session.mount("http://", adapter)
    session.auth = auth
    return session


def service_auth(server: AuthServer, clock: FakeClock, **kwargs: Any) -> TokenAuth:
    grant = ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")
    return TokenAuth(grant, clock=clock, policy=EXACT, random=lambda: 0.5, **kwargs)


def run_fork_scenario(name: str) -> int:
    """Run a scenario of ``tests/_fork_scenarios.py`` in a fresh interpreter; its exit code."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "tests._fork_scenarios", name], cwd=root, timeout=60, check=False
    )
    return done.returncode

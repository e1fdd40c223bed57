"""Stores shared by real processes (multiprocessing, spawn) against the loopback server in
this process: one token request per expiry for a whole fleet, rotating refresh tokens
without ``invalid_grant``, a lock holder killed with SIGKILL. Exact counts, bounded waits.

The fleet's time is the system clock plus an offset shared by every process: the parent
moves it past the token lifetime between rounds, so every process's token expires at the
same instant without anyone sleeping. The server judges expiry on the real clock (its
tokens live an hour), so only the clients' view of time moves.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import uuid
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest

from requests_tokenauth import FileStore, RedisStore, TokenStore, TokenStoreError
from requests_tokenauth._clock import SYSTEM_CLOCK
from requests_tokenauth._stores import store_key
from requests_tokenauth.testing import AuthServer

from ._store_worker import WAIT_SECONDS, fingerprint, hold_lock, make_grant, run_worker

pytestmark = pytest.mark.slow

CTX = multiprocessing.get_context("spawn")
LIFETIME = 3600
#: Moving the fleet's clocks this far expires every token it holds.
EXPIRY_STEP = LIFETIME + 60
#: Every wait in the parent gives up after this long.
WAIT = WAIT_SECONDS


@pytest.fixture
def server(auth_server_factory: Callable[..., AuthServer]) -> AuthServer:
    return auth_server_factory(clock=SYSTEM_CLOCK, token_lifetime_seconds=LIFETIME)


@pytest.fixture(params=["file", pytest.param("redis", marks=pytest.mark.redis)])
def spec(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[dict[str, Any]]:
    """How a process opens the shared store (a FileStore directory or a Redis prefix)."""
    if request.param == "file":
        yield {"kind": "file", "path": str(tmp_path / "tokens"), "options": {}}
        return
    import redis

    url = request.getfixturevalue("redis_url")
    prefix = f"tokenauth-test:{uuid.uuid4().hex}:"
    yield {"kind": "redis", "url": url, "prefix": prefix, "options": {}}
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=prefix + "*", count=100))
    if keys:
        client.delete(*keys)
    client.close()


def open_store(spec: dict[str, Any], **options: Any) -> TokenStore:
    if spec["kind"] == "file":
        return FileStore(spec["path"], **options)
    import redis

    client = redis.Redis.from_url(spec["url"], socket_timeout=10)
    return RedisStore(client, key_prefix=spec["prefix"], **options)


Outcome = tuple[str, str]


class Fleet:
    """``processes`` spawned workers with ``threads`` threads each, run round by round."""

    def __init__(
        self,
        server: AuthServer,
        grant_kind: str,
        spec: Optional[dict[str, Any]],
        *,
        processes: int,
        threads: int = 1,
        rounds: int = 1,
    ) -> None:
        self.server = server
        self.processes = processes
        self.offset = CTX.Value("d", 0.0)
        self.barrier = CTX.Barrier(processes + 1)
        self.attempts = CTX.Value("i", 0, lock=False)
        self.changed = CTX.Condition()
        self.results: Any = CTX.Queue()
        self.workers = [
            CTX.Process(
                target=run_worker,
                args=(
                    i,
                    grant_kind,
                    server.token_url,
                    server.resource_url,
                    spec,
                    rounds,
                    threads,
                    self.offset,
                    self.barrier,
                    self.attempts,
                    self.changed,
                    self.results,
                ),
                daemon=True,
            )
            for i in range(processes)
        ]

    def start(self) -> Fleet:
        for p in self.workers:
            p.start()
        return self

    def lock_attempts(self) -> int:
        with self.changed:
            return int(self.attempts.value)

    def wait_for_lock_attempts(self, n: int) -> bool:
        """Until ``n`` store-lock attempts were made, fleet-wide, since the start."""
        with self.changed:
            return bool(self.changed.wait_for(lambda: self.attempts.value >= n, WAIT))

    def advance(self, seconds: float) -> None:
        with self.offset.get_lock():
            self.offset.value += seconds

    def round(self, during: Optional[Callable[[], None]] = None) -> list[Outcome]:
        """Release every worker, run ``during`` while they work, wait until all are done,
        and return every thread's (status, fingerprint of the token it sent)."""
        try:
            self.barrier.wait(WAIT)
            if during is not None:
                during()
            self.barrier.wait(WAIT)
        except threading.BrokenBarrierError:
            pytest.fail("a worker did not reach the barrier: " + self._crashes())
        outcomes: list[Outcome] = []
        for _ in range(self.processes):
            _, round_, got = self.results.get(timeout=WAIT)
            assert round_ >= 0, got
            outcomes.extend(got)
        return outcomes

    def held_round(self, expected_requests: int) -> list[Outcome]:
        """A round in which token requests are held at the server until request number
        ``expected_requests`` has arrived and every process has tried the store lock: so
        they all compete, and a lock that let two through would show a second request."""
        before = self.lock_attempts()

        def compete() -> None:
            try:
                assert self.server.wait_for_token_requests(expected_requests, WAIT)
                assert self.wait_for_lock_attempts(before + self.processes)
            finally:
                self.server.release_token_endpoint()

        self.server.hold_token_endpoint()
        return self.round(compete)

    def _crashes(self) -> str:
        messages = []
        while True:
            try:
                _, round_, got = self.results.get(timeout=1)
            except queue.Empty:
                break
            if round_ < 0:
                messages.append(got[0][1])
        return "\n".join(messages) or "no crash report"

    def stop(self) -> None:
        for p in self.workers:
            p.join(WAIT)
        for p in self.workers:
            if p.is_alive():
                p.kill()
                p.join(5)
        self.results.close()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.barrier.abort()  # the workers stop waiting for rounds that will not come
        self.stop()
        if exc[0] is None:
            assert [p.exitcode for p in self.workers] == [0] * self.processes


def one_token(outcomes: list[Outcome]) -> str:
    """Assert every call succeeded with one and the same token; return its fingerprint."""
    assert [status for status, _ in outcomes] == ["200"] * len(outcomes)
    used = {sent for _, sent in outcomes}
    assert len(used) == 1, f"{len(used)} different tokens in one round"
    return used.pop()


def test_8_processes_released_together_at_expiry_make_exactly_1_token_request(
    server: AuthServer, spec: dict[str, Any]
) -> None:
    with Fleet(server, "client_credentials", spec, processes=8, rounds=2) as fleet:
        first = one_token(fleet.held_round(expected_requests=1))
        assert server.token_requests == 1
        fleet.advance(EXPIRY_STEP)  # every process's token is now expired
        second = one_token(fleet.held_round(expected_requests=2))
        assert server.token_requests == 2
    assert first != second
    assert server.token_requests_by_grant == {"client_credentials": 2}
    assert server.resource_requests == 16 and server.resource_401s == 0


def test_without_a_shared_store_each_process_makes_its_own_token_request(
    server: AuthServer,
) -> None:
    """The control for the test above: same fleet, no store, one request per process."""
    with Fleet(server, "client_credentials", None, processes=4, rounds=2) as fleet:
        fleet.round()
        assert server.token_requests == 4
        fleet.advance(EXPIRY_STEP)
        fleet.round()
        assert server.token_requests == 8


def test_rotating_refresh_tokens_4_processes_x_4_threads_over_3_expiries(
    server: AuthServer, spec: dict[str, Any]
) -> None:
    server.rotate_refresh_tokens = True
    grant = make_grant("refresh_token", server.token_url)
    seed = server.issue_token("app", scopes=("read",), refresh=True, user="alice")
    seed["expires_at"] = SYSTEM_CLOCK.time() + LIFETIME
    store = open_store(spec)
    store.save(store_key(grant), seed)
    with Fleet(server, "refresh_token", spec, processes=4, threads=4, rounds=4) as fleet:
        used = [one_token(fleet.round())]  # the seeded token, taken from the store
        assert used[0] == fingerprint("Bearer " + seed["access_token"])
        assert server.token_requests == 0
        for expiry in range(1, 4):
            fleet.advance(EXPIRY_STEP)
            used.append(one_token(fleet.held_round(expected_requests=expiry)))
            assert server.token_requests == expiry
    assert server.token_requests_by_grant == {"refresh_token": 3}
    assert server.token_errors == {}  # no invalid_grant: no refresh token was used twice
    assert len(set(used)) == 4
    assert server.resource_requests == 64 and server.resource_401s == 0
    final = store.load(store_key(grant))
    assert final is not None and fingerprint("Bearer " + final["access_token"]) == used[-1]
    assert final["refresh_token"] != seed["refresh_token"]


def test_a_lock_holder_killed_with_sigkill_does_not_block_the_others(
    server: AuthServer, spec: dict[str, Any]
) -> None:
    """The holder takes the lock and is killed holding it while two processes wait for it:
    FileStore's flock dies with the process; Redis drops the lock when its lease ends."""
    key = store_key(make_grant("client_credentials", server.token_url))
    holder_spec = dict(spec, options={"lock_lease_seconds": 4.0} if spec["kind"] == "redis" else {})
    take, acquired = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=hold_lock, args=(holder_spec, key, take, acquired), daemon=True)
    holder.start()
    probe = open_store(spec, lock_timeout_seconds=0)

    def kill_the_holder_while_both_wait() -> None:
        assert fleet.wait_for_lock_attempts(2)
        with pytest.raises(TokenStoreError), probe.lock(key):  # still held
            pass
        assert server.token_requests == 0
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        holder.join(WAIT)
        assert holder.exitcode == -signal.SIGKILL

    try:
        with Fleet(server, "client_credentials", spec, processes=2) as fleet:
            _wait_until(lambda: fleet.barrier.n_waiting == fleet.processes)
            take.set()
            assert acquired.wait(WAIT)
            outcomes = fleet.round(kill_the_holder_while_both_wait)
    finally:
        if holder.is_alive():
            holder.kill()
            holder.join(5)
    one_token(outcomes)
    assert server.token_requests == 1


def _wait_until(condition: Callable[[], bool]) -> None:
    """Poll a cross-process condition that has no event to wait on (bounded)."""
    done = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        done.wait(0.01)
    pytest.fail("condition not reached in time")

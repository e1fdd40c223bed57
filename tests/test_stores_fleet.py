"""A fleet on one store (issue 16): a stale process reads the store before it locks and
adopts a newer token without the lock; processes queued behind a renewal leave the queue
when it saves; a holder killed in the middle of its token request blocks nobody; a slow
renewal makes the next refresh ahead start earlier. Real directories, a real Redis, the
loopback server. (The Redis lock's waiters: test_redis_lock_wake.py; the lead's table:
test_renewal_lead.py.)"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest

from requests_tokenauth import (
    ClientCredentials,
    FileStore,
    RedisStore,
    RefreshToken,
    TokenManager,
    TokenStoreError,
)
from requests_tokenauth._clock import SYSTEM_CLOCK
from requests_tokenauth._policy import (
    RefreshPolicy,
)
from requests_tokenauth._stores import store_key
from requests_tokenauth._token import Token
from requests_tokenauth.testing import AuthServer, FakeClock

from ._store_worker import get_token_once
from .helpers import EXACT, EXPIRED_AFTER

WAIT = 10.0
CTX = multiprocessing.get_context("spawn")
#: A 100 s token (EXACT policy) turns stale here; the next one is 100 s newer.
STALE_AFTER = 75


class LockCounter:
    """A store proxy counting lock attempts and acquisitions (``lock`` and ``lock_unless``),
    with a condition, so a test knows when a manager is waiting for the lock."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.attempts = 0
        self.acquired = 0
        self._changed = threading.Condition()

    def load(self, key: str) -> Optional[dict[str, Any]]:
        return self.store.load(key)  # type: ignore[no-any-return]

    def save(self, key: str, token: dict[str, Any]) -> None:
        self.store.save(key, token)

    def delete(self, key: str) -> None:
        self.store.delete(key)

    def _attempt(self) -> None:
        with self._changed:
            self.attempts += 1
            self._changed.notify_all()

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        self._attempt()
        with self.store.lock(key):
            self.acquired += 1
            yield

    @contextlib.contextmanager
    def lock_unless(self, key: str, satisfied: Callable[[], bool]) -> Iterator[bool]:
        self._attempt()
        with self.store.lock_unless(key, satisfied) as held:
            self.acquired += int(held)
            yield held

    def wait_for_attempts(self, n: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.attempts >= n, WAIT)


class SharedStore:
    """One shared store: :meth:`open` makes another handle on it, as another process
    would; :attr:`spec` says how a spawned process opens it (tests/_store_worker.py)."""

    def __init__(self, spec: dict[str, Any], clock: FakeClock) -> None:
        self.spec = spec
        self._clock = clock
        self.clients: list[Any] = []

    def open(self, **options: Any) -> Any:
        if self.spec["kind"] == "file":
            return FileStore(self.spec["path"], **options)
        import redis

        self.clients.append(redis.Redis.from_url(self.spec["url"], socket_timeout=WAIT + 70))
        options.setdefault("clock", self._clock)
        return RedisStore(self.clients[-1], key_prefix=self.spec["prefix"], **options)

    def is_redis(self) -> bool:
        return bool(self.spec["kind"] == "redis")


@pytest.fixture(params=["file", pytest.param("redis", marks=pytest.mark.redis)])
def shared(
    request: pytest.FixtureRequest, tmp_path: Any, fake_clock: FakeClock
) -> Iterator[SharedStore]:
    if request.param == "file":
        yield SharedStore({"kind": "file", "path": str(tmp_path / "tokens")}, fake_clock)
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"tokenauth-test:{uuid.uuid4().hex}:"
    store = SharedStore({"kind": "redis", "url": url, "prefix": prefix}, fake_clock)
    yield store
    if store.clients:
        keys = list(store.clients[0].scan_iter(match=prefix + "*", count=100))
        if keys:
            store.clients[0].delete(*keys)
    for client in store.clients:
        client.close()


def manager(server: AuthServer, clock: Any, store: Any, **kw: Any) -> TokenManager:
    grant = ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")
    kw.setdefault("policy", EXACT)
    kw.setdefault("random", lambda: 0.5)
    return TokenManager(grant, store=store, clock=clock, **kw)


def _run(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(target())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _wait_until(condition: Callable[[], bool]) -> bool:
    """Poll a condition that has no event to wait on (bounded)."""
    pause = threading.Event()
    for _ in range(int(WAIT / 0.005)):
        if condition():
            return True
        pause.wait(0.005)
    return False


# -- read before lock -------------------------------------------------------------------


def test_a_stale_process_adopts_the_newer_stored_token_without_taking_the_lock(
    auth_server: AuthServer, fake_clock: FakeClock, shared: SharedStore
) -> None:
    auth_server.token_lifetime_seconds = 100
    renewing = manager(auth_server, fake_clock, shared.open(), refresh_ahead="inline")
    counted = LockCounter(shared.open())
    reading = manager(auth_server, fake_clock, counted, refresh_ahead="inline")
    first = renewing.get_token()
    read_not_renewed = reading.get_token().access_token == first.access_token
    assert read_not_renewed  # (bare flags: an assertion message must not show a token)
    fake_clock.advance(STALE_AFTER)
    renewing.get_token()  # stale: it renews ahead and saves token 2
    second = renewing.token
    renewed = second is not None and second.access_token != first.access_token
    assert renewed
    reading.get_token()  # stale too: it reads token 2 from the store
    adopted = reading.token
    took_it = adopted is not None and adopted.access_token == second.access_token
    assert took_it
    assert auth_server.token_requests == 2
    assert (counted.attempts, counted.acquired) == (0, 0)


def test_a_stored_token_as_stale_as_ones_own_is_not_adopted_and_one_renewal_follows(
    auth_server: AuthServer, fake_clock: FakeClock, shared: SharedStore
) -> None:
    """Nothing better in the store: the process takes the lock and renews, once."""
    auth_server.token_lifetime_seconds = 100
    counted = LockCounter(shared.open())
    alone = manager(auth_server, fake_clock, counted, refresh_ahead="inline")
    first = alone.get_token()
    fake_clock.advance(STALE_AFTER)
    alone.get_token()
    renewed = alone.token is not None and alone.token.access_token != first.access_token
    assert renewed
    assert auth_server.token_requests == 2
    assert (counted.attempts, counted.acquired) == (2, 2)


def test_its_own_token_read_back_from_the_store_is_not_a_better_one(
    auth_server: AuthServer, fake_clock: FakeClock, shared: SharedStore
) -> None:
    """Stale at 70 s (jitter draw 0); read back, the same token would be stale only at 75 s
    (draw 1): adopting it would only put the renewal off and cost a lock. It renews."""
    auth_server.token_lifetime_seconds = 100
    draws = iter([0.0])
    jittered = RefreshPolicy(refresh_jitter_fraction=0.2)
    alone = manager(
        auth_server,
        fake_clock,
        shared.open(),
        policy=jittered,
        refresh_ahead="inline",
        random=lambda: next(draws, 1.0),
    )
    first = alone.get_token()
    fake_clock.advance(72)
    alone.get_token()
    renewed = alone.token is not None and alone.token.access_token != first.access_token
    assert renewed
    assert auth_server.token_requests == 2


class FailingSaves(LockCounter):
    """Its next ``fail_saves`` saves fail (a full disk, a Redis failover)."""

    fail_saves = 0

    def save(self, key: str, token: dict[str, Any]) -> None:
        if self.fail_saves:
            self.fail_saves -= 1
            raise TokenStoreError("disk full")
        super().save(key, token)


def test_reading_before_the_lock_never_goes_back_to_a_token_whose_refresh_was_spent(
    auth_server: AuthServer, fake_clock: FakeClock, shared: SharedStore
) -> None:
    """Token 2 could not be saved: the store still holds token 1, whose refresh token the
    rotating server already spent. A 401 on token 2 must not adopt token 1 from the store
    (read without the lock, it looks valid and newer than the rejected one): it renews from
    token 2, and no refresh token is ever refused."""
    auth_server.token_lifetime_seconds = 100
    auth_server.rotate_refresh_tokens = True
    first = auth_server.issue_token("app", refresh=True, user="alice")
    store = FailingSaves(shared.open())
    grant = RefreshToken(auth_server.token_url, client_id="app", client_secret="app-secret")
    renewing = TokenManager(
        grant,
        token=first,
        store=store,
        store_key="alice",
        clock=fake_clock,
        policy=EXACT,
        refresh_ahead="inline",
    )
    renewing.get_token()  # token 1, seeded into the store
    fake_clock.advance(80)
    store.fail_saves = 1
    renewing.get_token()  # stale: renewed ahead to token 2, which is not saved
    second = renewing.token
    assert second is not None
    stored = store.load("alice")
    store_kept_first = stored is not None and stored["access_token"] == first["access_token"]
    assert store_kept_first
    third = renewing.replace(second)  # a 401 on token 2
    assert third is not None
    is_new = third.access_token not in (first["access_token"], second.access_token)
    assert is_new  # (bare flags: an assertion message must not show a token)
    fake_clock.advance(EXPIRED_AFTER)
    renewing.get_token()  # the next renewal spends a live refresh token
    assert auth_server.token_errors == {}
    assert auth_server.token_requests == 3


def test_two_processes_finding_nothing_better_make_one_renewal_and_the_waiter_no_lock(
    auth_server: AuthServer, fake_clock: FakeClock, shared: SharedStore
) -> None:
    """Both expired, nothing better stored: the first holds the lock through its (held)
    token request, the second waits for the lock; when the first saves, the second takes
    the saved token. With Redis it is woken by the release message (no poll: the poll
    interval is far longer than the test) and never holds the lock."""
    auth_server.token_lifetime_seconds = 100
    first_store = LockCounter(shared.open())
    waiter_handle = shared.open(**({"lock_poll_seconds": 60} if shared.is_redis() else {}))
    waiter_store = LockCounter(waiter_handle)
    renewing = manager(auth_server, fake_clock, first_store)
    waiting = manager(auth_server, fake_clock, waiter_store)
    renewing.get_token()
    waiting.get_token()  # read from the store, no lock
    fake_clock.advance(EXPIRED_AFTER)
    auth_server.hold_token_endpoint()
    try:
        one, got_one = _run(renewing.get_token)
        assert auth_server.wait_for_token_requests(2, WAIT)  # it holds the lock
        two, got_two = _run(waiting.get_token)
        assert waiter_store.wait_for_attempts(1)
        if isinstance(waiter_handle, RedisStore):
            channel = waiter_handle.lock_key(renewing._key)
            client = waiter_handle._client
            assert _wait_until(lambda: dict(client.pubsub_numsub(channel))[_raw(channel)] == 1)
    finally:
        auth_server.release_token_endpoint()
    one.join(WAIT)
    two.join(WAIT)
    assert isinstance(got_one[0], Token) and isinstance(got_two[0], Token)
    same = got_one[0].access_token == got_two[0].access_token
    assert same
    assert auth_server.token_requests == 2  # the first use, then one renewal
    assert first_store.acquired == 2
    if isinstance(waiter_handle, RedisStore):
        assert waiter_store.acquired == 0
        # woken by the release message, or it saw the save right after subscribing; never
        # by a poll (a minute apart: the test would have failed long before)
        assert waiter_handle.lock_wait_counts["polled"] == 0
        assert waiter_handle.lock_wait_counts["woken"] <= 1
    else:
        assert waiter_store.acquired <= 1  # a flock retry may just win after the save


def _raw(channel: str) -> Any:
    return channel.encode("utf-8")


# -- a holder killed in the middle of its renewal --------------------------------------------


def test_a_holder_killed_during_its_token_request_blocks_nobody(
    auth_server_factory: Callable[..., AuthServer], shared: SharedStore
) -> None:
    """A process takes the lock and is SIGKILLed while its token request is held at the
    server; another process, waiting for the lock, gets it (flock: at the kill; Redis: when
    the lease ends) and renews: one valid token in the store, made by the survivor."""
    server = auth_server_factory(clock=SYSTEM_CLOCK, token_lifetime_seconds=3600)
    probe = shared.open(**({"clock": SYSTEM_CLOCK} if shared.is_redis() else {}))
    if shared.is_redis():
        spec = dict(shared.spec, options={"lock_lease_seconds": 1.0})
        survivor_store = LockCounter(shared.open(lock_poll_seconds=0.05, clock=SYSTEM_CLOCK))
    else:
        spec = dict(shared.spec, options={})
        survivor_store = LockCounter(shared.open())
    server.hold_token_endpoint()
    holder = CTX.Process(target=get_token_once, args=(spec, server.token_url), daemon=True)
    holder.start()
    try:
        assert server.wait_for_token_requests(1, WAIT)  # the holder has the lock
        survivor = manager(server, SYSTEM_CLOCK, survivor_store)
        thread, out = _run(survivor.get_token)
        assert survivor_store.wait_for_attempts(1)
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        holder.join(WAIT)
        assert holder.exitcode == -signal.SIGKILL
    finally:
        server.release_token_endpoint()
        if holder.is_alive():
            holder.kill()
            holder.join(5)
    thread.join(WAIT + 5)
    assert len(out) == 1 and isinstance(out[0], Token)
    assert server.token_requests == 2  # the killed one's, then the survivor's
    assert survivor_store.acquired == 1
    stored = probe.load(store_key(survivor.grant))
    the_survivors = stored is not None and stored["access_token"] == out[0].access_token
    assert the_survivors


# -- a refresh ahead early enough for the fleet ----------------------------------------------


def test_a_slow_renewal_makes_the_next_refresh_ahead_start_earlier(
    auth_server: AuthServer, fake_clock: FakeClock, shared: SharedStore
) -> None:
    """The renewal (held at the server while the clock moves 10 s) took 10 s: the tokens
    this process obtains or reads afterwards turn stale 30 s before expiry, not 25 s."""
    auth_server.token_lifetime_seconds = 100
    slow = manager(auth_server, fake_clock, shared.open())
    auth_server.hold_token_endpoint()
    try:
        thread, out = _run(slow.get_token)
        assert auth_server.wait_for_token_requests(1, WAIT)
        fake_clock.advance(10)
    finally:
        auth_server.release_token_endpoint()
    thread.join(WAIT)
    assert isinstance(out[0], Token)
    assert slow._store is not None and slow._store.renewal_seconds == pytest.approx(10)
    fake_clock.advance(EXPIRED_AFTER)
    token = slow.get_token()  # a quick renewal now: its token already has the 30 s lead
    entry = slow._entry
    assert entry is not None and entry.token is token
    expired = token.obtained_monotonic + 100 - 5
    assert entry.deadlines.stale_monotonic == pytest.approx(expired - 30)

"""What the manager hands to ``on_token``/``on_event``, and when: in the order tokens were
obtained, outside its locks, again after a failed save, before the process exits; and what a
shared store may not undo (an older stored token, a revocation of the wrong token).

Deterministic: FakeClock, events as gates, exact counts, a timeout on every wait."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

import pytest
import requests

from requests_tokenauth import (
    ClientCredentials,
    FileStore,
    MemoryStore,
    RefreshPolicy,
    RefreshToken,
    TokenAuth,
    TokenManager,
    TokenStoreError,
)
from requests_tokenauth.testing import AuthServer, FakeClock

from ._scripted import ScriptedGrant
from .helpers import EXACT, session_for

POLICY = RefreshPolicy(refresh_jitter_fraction=0.0)  # 100 s token: stale at 70, expired at 95


def make(grant: ScriptedGrant, clock: FakeClock, **kw: Any) -> TokenManager:
    return TokenManager(grant, clock=clock, policy=POLICY, random=lambda: 1.0, **kw)


class SlowSave:
    """An ``on_token`` that records what it saved and can hold one token's save (an fsync,
    a database write) until the test releases it."""

    def __init__(self, hold: Optional[str] = None) -> None:
        self.hold = hold
        self.saved: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, token: dict[str, Any]) -> None:
        if token["access_token"] == self.hold:
            self.entered.set()
            assert self.release.wait(10), "test never released the save"
        self.saved.append(token["access_token"])


def saving_token_2_held() -> tuple[TokenManager, SlowSave]:
    """A manager whose refresh ahead obtained token-2 on its own thread and is now inside
    ``on_token`` for it, held there until the test sets ``save.release``."""
    clock, grant = FakeClock(), ScriptedGrant()
    save = SlowSave(hold="token-2")
    manager = make(grant, clock, on_token=save)
    manager.get_token()
    clock.advance(80)  # stale: a refresh ahead obtains token-2 on its own thread
    manager.get_token()
    assert save.entered.wait(10)  # the token request is done, its save is not
    return manager, save


# -- 1. order ------------------------------------------------------------------------------


def test_a_slow_save_of_an_older_token_never_lands_after_a_newer_one() -> None:
    manager, save = saving_token_2_held()
    second = manager.token
    assert second is not None and second.access_token == "token-2"
    # a 401 on token-2: this thread obtains token-3 (its refresh token spends token-2's)
    third = manager.replace(second)
    assert third is not None and third.access_token == "token-3"
    assert save.saved == ["token-1"]  # token-3 waits for token-2's save instead of passing it
    save.release.set()
    assert manager.wait_for_refresh()
    assert save.saved == ["token-1", "token-2", "token-3"]  # the last save is the newest


# -- 2. redelivery -------------------------------------------------------------------------


def test_a_failed_on_token_is_retried_with_backoff_and_reported() -> None:
    clock, grant = FakeClock(), ScriptedGrant()
    events: list = []
    attempts: list[str] = []
    disk_full = [True]

    def save(token: dict[str, Any]) -> None:
        attempts.append(token["access_token"])
        if disk_full[0]:
            raise OSError("disk full")

    manager = make(grant, clock, on_token=save, on_event=events.append)
    manager.get_token()
    assert attempts == ["token-1"]
    for _ in range(5):  # fresh path, retry not yet due (1 s): no call
        manager.get_token()
    assert attempts == ["token-1"]
    clock.advance(1.0)
    manager.get_token()  # retried; fails again: next in 2 s
    assert attempts == ["token-1"] * 2
    clock.advance(1.9)
    manager.get_token()
    assert len(attempts) == 2
    disk_full[0] = False
    clock.advance(0.1)
    manager.get_token()
    assert attempts == ["token-1"] * 3
    clock.advance(30)
    manager.get_token()  # saved: no more retries
    assert len(attempts) == 3 and grant.calls == 1
    delivery = [
        (e.kind, e.attempt, e.next_attempt_in_seconds, e.error)
        for e in events
        if e.kind in ("delivery_failed", "token_redelivered")
    ]
    assert delivery == [
        ("delivery_failed", 1, 1.0, "OSError"),
        ("delivery_failed", 2, 2.0, "OSError"),
        ("token_redelivered", 1, None, None),
    ]


def test_a_failed_save_is_not_retried_once_a_newer_token_is_saved() -> None:
    clock, grant = FakeClock(), ScriptedGrant()
    attempts: list[str] = []

    def save(token: dict[str, Any]) -> None:
        attempts.append(token["access_token"])
        if token["access_token"] == "token-1":
            raise OSError("disk full")

    manager = make(grant, clock, on_token=save)
    manager.get_token()
    clock.advance(96)  # expired before the retry: token-2 is obtained and saved
    manager.get_token()
    clock.advance(10)
    manager.get_token()
    assert attempts == ["token-1", "token-2"]


# -- 5. delivery before wait_for_refresh() returns, and before the process exits ------------


def test_wait_for_refresh_covers_the_on_token_of_a_refresh_ahead() -> None:
    manager, save = saving_token_2_held()
    assert not manager.wait_for_refresh(timeout=0.05)
    save.release.set()
    assert manager.wait_for_refresh()
    assert save.saved == ["token-1", "token-2"]


def run_exit_scenario(name: str) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        [sys.executable, "-m", "tests._exit_scenarios", name],
        cwd=root,
        timeout=60,
        check=False,
        capture_output=True,
        text=True,
    )


def test_exit_waits_for_a_refresh_ahead_to_save_its_token() -> None:
    # the scenario exits while the refresh ahead's token request is in flight; the server
    # answers (rotating) as atexit runs: the new token must still reach on_token
    done = run_exit_scenario("exit_during_refresh_ahead")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["saved token-1", "saved token-2"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_forked_during_an_on_token_call_delivers_its_own_tokens() -> None:
    done = run_exit_scenario("fork_during_on_token")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["child exit 0"]


def test_exit_wait_is_bounded_when_a_save_hangs(caplog: pytest.LogCaptureFixture) -> None:
    from requests_tokenauth._delivery import _flush_all_at_exit

    manager, save = saving_token_2_held()
    try:
        with caplog.at_level(logging.WARNING, logger="requests_tokenauth"):
            _flush_all_at_exit(budget_seconds=0.05)
        assert "exiting while a token refresh or on_token delivery is still running" in (
            caplog.text
        )
    finally:
        save.release.set()
    assert manager.wait_for_refresh()


# -- 9. callbacks run with no lock held ----------------------------------------------------


@pytest.mark.parametrize("store", [None, "file"])
def test_a_callback_that_makes_a_request_on_refresh_started_costs_one_token_request(
    auth_server: AuthServer, fake_clock: FakeClock, tmp_path: Path, store: Optional[str]
) -> None:
    # with a FileStore, a callback under the manager's lock also waited for the store's
    # file lock (held by its own thread) until the lock timeout, at every level
    auth_server.token_lifetime_seconds = 100
    statuses: list[int] = []
    session = requests.Session()

    def on_event(event: Any) -> None:
        if event.kind == "refresh_started":
            statuses.append(session.get(auth_server.resource_url, timeout=10).status_code)
            statuses.append(int(bool(auth.get_token())))

    auth = TokenAuth(
        ClientCredentials(auth_server.token_url, client_id="svc", client_secret="svc-secret"),
        clock=fake_clock,
        policy=EXACT,
        on_event=on_event,
        store=FileStore(tmp_path, lock_timeout_seconds=5) if store else None,
    )
    session = session_for(auth)
    assert session.get(auth_server.resource_url).status_code == 200  # no token yet: one renewal
    assert auth_server.token_requests == 1
    assert statuses == [200, 1]


# -- 3. a failed store save, then a 401 ----------------------------------------------------


class FlakyStore(MemoryStore):
    """A MemoryStore whose next ``fail_saves`` saves fail (a full disk, a Redis failover)."""

    fail_saves = 0

    def save(self, key: str, token: dict[str, Any]) -> None:
        if self.fail_saves:
            self.fail_saves -= 1
            raise TokenStoreError("disk full")
        super().save(key, token)


def rotating_server(factory: Any, clock: FakeClock) -> AuthServer:
    server: AuthServer = factory(clock=clock, rotate_refresh_tokens=True)
    server.token_lifetime_seconds = 100
    return server


def refresh_auth(server: AuthServer, clock: FakeClock, **kw: Any) -> TokenAuth:
    grant = RefreshToken(
        server.token_url,
        client_id="app",
        client_secret="app-secret",
        revocation_url=server.url + "/revoke",
    )
    if kw.get("store") is not None:  # a refresh token given only as token= names no user
        kw.setdefault("store_key", "tests:app:alice")
    return TokenAuth(grant, clock=clock, policy=EXACT, random=lambda: 1.0, **kw)


def test_a_401_after_a_failed_store_save_does_not_go_back_to_the_older_stored_token(
    auth_server_factory: Any, fake_clock: FakeClock
) -> None:
    server = rotating_server(auth_server_factory, fake_clock)
    store = FlakyStore()
    first = server.issue_token("app", refresh=True, user="alice")
    auth = refresh_auth(server, fake_clock, token=first, store=store, refresh_ahead="inline")
    session = session_for(auth)
    assert session.get(server.resource_url).status_code == 200  # token 1, seeded in the store
    fake_clock.advance(80)
    store.fail_saves = 1
    assert session.get(server.resource_url).status_code == 200  # refreshed: token 2, not saved
    second = auth.token
    assert second is not None
    rotated = second.refresh_token != first["refresh_token"]
    assert rotated
    stored = store.load(auth.manager._key)
    store_kept_first = stored is not None and stored["refresh_token"] == first["refresh_token"]
    assert store_kept_first
    server.fail_resource(401)  # token 2 is rejected once
    assert session.get(server.resource_url).status_code == 200
    third = auth.token
    assert third is not None
    is_new = third.access_token not in (first["access_token"], second.access_token)
    assert is_new  # (a bare flag: an assertion message must not show a token)
    fake_clock.advance(96)  # and the next renewal spends a live refresh token
    assert session.get(server.resource_url).status_code == 200
    assert server.token_errors == {}


def test_two_failed_saves_in_a_row_still_renew_from_the_token_in_memory() -> None:
    clock, grant, store = FakeClock(), ScriptedGrant(), FlakyStore()
    manager = make(grant, clock, store=store)
    current = manager.get_token()  # token-1, saved
    store.fail_saves = 2
    for _ in range(3):  # 401s (each after the cooldown): token-2 and -3 unsaved, -4 saved
        clock.advance(30)
        new = manager.replace(current)
        assert new is not None
        current = new
    assert grant.refreshed_from == [None, "token-1", "token-2", "token-3"]
    stored = store.load(manager._key)
    assert stored is not None and stored["access_token"] == "token-4"


# -- 4. revoke() with a shared store -------------------------------------------------------


def test_revoke_with_a_shared_store_revokes_the_newest_refresh_token(
    auth_server_factory: Any, fake_clock: FakeClock
) -> None:
    server = rotating_server(auth_server_factory, fake_clock)
    store = MemoryStore()
    first = refresh_auth(
        server, fake_clock, token=server.issue_token("app", refresh=True, user="alice"), store=store
    )
    other = refresh_auth(server, fake_clock, store=store)  # another process, same key
    old = first.get_token()
    assert other.get_token() is not None
    newest = other.manager.replace(old)  # a 401 there: rotated, saved; `first` still holds old
    assert newest is not None
    rotated = newest.refresh_token != old.refresh_token
    assert rotated
    assert first.token is old
    assert first.revoke() is True
    assert store.load(first.manager._key) is None
    # the refresh token that was live (the newest) is dead at the server now
    refresh = requests.post(
        server.token_url,
        data={"grant_type": "refresh_token", "refresh_token": newest.refresh_token},
        auth=("app", "app-secret"),
        timeout=10,
    )
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"

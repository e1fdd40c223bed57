"""TokenManager over a scripted grant: fresh/stale/expired paths, single flight, backoff,
serve-stale, the 401 replacement and its cooldown. Deterministic: FakeClock, barriers,
events, exact counts, a timeout on every wait."""

from __future__ import annotations

import os
import pickle
import threading

import pytest

from requests_tokenauth import (
    ClientCredentials,
    InvalidGrantError,
    RefreshPolicy,
    TokenEndpointError,
    TokenManager,
)
from requests_tokenauth.testing import FakeClock

from ._scripted import ScriptedGrant
from .helpers import CountingLock, join_all, run_fork_scenario, start_threads

POLICY = RefreshPolicy(refresh_jitter_fraction=0.0)  # 100 s token: stale at 70, expired at 95


def make(grant: ScriptedGrant, clock: FakeClock, **kw) -> TokenManager:
    return TokenManager(grant, clock=clock, policy=POLICY, random=lambda: 1.0, **kw)


def run_threads(n: int, target) -> tuple[list[threading.Thread], list]:
    return start_threads(n, lambda i: target())


def test_first_call_fetches_then_the_fresh_path_reuses() -> None:
    clock, grant = FakeClock(), ScriptedGrant()
    manager = make(grant, clock)
    first = manager.get_token()
    clock.advance(69)
    assert manager.get_token() is first
    assert grant.calls == 1


def test_expired_token_single_flight_across_32_threads() -> None:
    clock, grant = FakeClock(), ScriptedGrant()
    manager = make(grant, clock)
    manager.get_token()
    clock.advance(96)  # expired
    lock = CountingLock(manager._lock)
    manager._lock = lock
    grant.gate.clear()
    threads, results = run_threads(32, manager.get_token)
    assert grant.entered.acquire(timeout=10)  # one thread is inside the token request
    assert lock.wait_for_attempts(32)  # and every other thread is at the lock
    grant.gate.set()
    join_all(threads)
    assert grant.calls == 2
    assert {r.access_token for r in results} == {"token-2"}


def test_stale_token_is_refreshed_in_the_background_and_nobody_waits() -> None:
    clock, grant = FakeClock(), ScriptedGrant()
    events: list = []
    manager = make(grant, clock, on_event=events.append)
    old = manager.get_token()
    clock.advance(80)  # stale, still valid
    grant.gate.clear()  # the token endpoint hangs...
    # ...yet the caller that starts the refresh, and 16 more, get the valid token at once
    assert manager.get_token() is old
    assert grant.entered.acquire(timeout=10)  # the refresh is in flight on its own thread
    assert [manager.get_token() for _ in range(16)] == [old] * 16
    assert not manager.wait_for_refresh(timeout=0.01)
    grant.gate.set()
    assert manager.wait_for_refresh()
    assert grant.calls == 2
    assert manager.get_token().access_token == "token-2"
    kinds = [(e.kind, e.cause) for e in events]
    assert kinds == [
        ("refresh_started", "missing"),
        ("refresh_succeeded", "missing"),
        ("refresh_started", "ahead"),
        ("refresh_succeeded", "ahead"),
    ]
    assert events[-1].fingerprint == manager.token.fingerprint


def test_inline_refresh_ahead_runs_on_the_caller() -> None:
    clock, grant = FakeClock(), ScriptedGrant()
    manager = make(grant, clock, refresh_ahead="inline")
    old = manager.get_token()
    clock.advance(80)
    assert manager.get_token() is old  # refreshed before returning; the old one is still valid
    assert grant.calls == 2
    assert manager.get_token().access_token == "token-2"


def test_failed_refresh_ahead_costs_callers_nothing_and_backs_off() -> None:
    clock, grant = (
        FakeClock(),
        ScriptedGrant(100.0, TokenEndpointError("down"), TokenEndpointError("down")),
    )
    events: list = []
    manager = make(grant, clock, refresh_ahead="inline", on_event=events.append)
    old = manager.get_token()
    clock.advance(80)
    assert manager.get_token() is old  # refresh failed; nobody noticed
    assert grant.calls == 2
    # backoff after 1 failure with draw 1.0: 1 s; calls inside it make no token request
    for _ in range(10):
        assert manager.get_token() is old
    assert grant.calls == 2
    clock.advance(1.0)
    assert manager.get_token() is old  # second failure; next wait 2 s
    assert grant.calls == 3
    clock.advance(1.9)
    manager.get_token()
    assert grant.calls == 3
    clock.advance(0.1)
    assert manager.get_token() is old
    assert manager.get_token().access_token == "token-4"
    assert grant.calls == 4
    failed = [e for e in events if e.kind == "refresh_failed"]
    assert [(e.attempt, e.next_attempt_in_seconds, e.retryable) for e in failed] == [
        (1, 1.0, True),
        (2, 2.0, True),
    ]


def test_no_valid_token_and_endpoint_down_fails_fast_until_the_backoff_passes() -> None:
    clock, grant = FakeClock(), ScriptedGrant(TokenEndpointError("down", status_code=503))
    manager = make(grant, clock, max_wait_seconds=0)  # fail fast; the probe is 0.5 s away
    with pytest.raises(TokenEndpointError, match="down"):
        manager.get_token()
    for _ in range(5):
        with pytest.raises(TokenEndpointError, match=r"next attempt in 0\.50s") as info:
            manager.get_token()
        assert info.value.status_code == 503
        assert info.value.next_attempt_in_seconds == pytest.approx(0.5)
    assert grant.calls == 1
    clock.advance(0.5)
    assert manager.get_token().access_token == "token-2"


def test_terminal_error_is_raised_once_per_attempt_not_looped() -> None:
    clock, grant = FakeClock(), ScriptedGrant(InvalidGrantError("revoked", error="invalid_grant"))
    manager = make(grant, clock)
    with pytest.raises(InvalidGrantError):
        manager.get_token()
    with pytest.raises(InvalidGrantError):
        manager.get_token()
    assert grant.calls == 1


def test_replace_refreshes_only_the_current_token() -> None:
    clock, grant = FakeClock(), ScriptedGrant()
    manager = make(grant, clock)
    first = manager.get_token()
    second = manager.replace(first)
    assert second is not None and second.access_token == "token-2"
    assert grant.refreshed_from == [None, "token-1"]
    # a late 401 for the first token: the newer one, no token request
    assert manager.replace(first) is second
    assert grant.calls == 2


def test_concurrent_401s_for_one_token_make_one_token_request() -> None:
    clock, grant = FakeClock(), ScriptedGrant()
    manager = make(grant, clock)
    rejected = manager.get_token()
    grant.gate.clear()
    threads, results = run_threads(16, lambda: manager.replace(rejected))
    assert grant.entered.acquire(timeout=10)
    grant.gate.set()
    join_all(threads)
    assert grant.calls == 2
    assert {r.access_token for r in results} == {"token-2"}


def test_token_obtained_after_a_401_is_not_replaced_again_within_the_cooldown() -> None:
    clock, grant = FakeClock(), ScriptedGrant()
    manager = make(grant, clock)
    first = manager.get_token()
    second = manager.replace(first)
    assert second is not None
    assert manager.replace(second) is None  # rejected again: no storm
    clock.advance(29)
    assert manager.replace(second) is None
    assert grant.calls == 2
    clock.advance(1)
    third = manager.replace(second)
    assert third is not None and third.access_token == "token-3"


def test_on_token_once_per_new_token_and_a_failing_callback_does_not_fail_the_call(caplog) -> None:
    clock, grant = FakeClock(), ScriptedGrant()
    seen: list[dict] = []
    manager = make(grant, clock, on_token=seen.append)
    manager.get_token()
    manager.get_token()
    clock.advance(96)
    manager.get_token()
    assert [d["access_token"] for d in seen] == ["token-1", "token-2"]

    def broken(_: dict) -> None:
        raise OSError("disk full")

    manager2 = make(ScriptedGrant(), clock, on_token=broken)
    assert manager2.get_token().access_token == "token-1"
    assert "on_token callback raised OSError" in caplog.text


def test_given_token_is_used_without_a_request_and_refreshed_with_its_refresh_token() -> None:
    clock, grant = FakeClock(), ScriptedGrant()
    saved = {"access_token": "saved", "refresh_token": "rt-saved", "expires_in": 100}
    manager = make(grant, clock, token=saved)
    assert manager.get_token().access_token == "saved"
    assert grant.calls == 0
    clock.advance(96)
    manager.get_token()
    assert grant.refreshed_from == ["saved"]


def test_pickle_drops_the_lock_and_the_token() -> None:
    grant = ClientCredentials("https://idp.test/token", client_id="svc", client_secret="s")
    manager = TokenManager(grant, token={"access_token": "secret", "expires_in": 60})
    copy = pickle.loads(pickle.dumps(manager))
    assert manager.token is not None and copy.token is None
    assert copy.grant.client_id == "svc"
    assert copy._lock.acquire(blocking=False)
    copy._lock.release()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_child_after_fork_has_a_fresh_lock_even_if_the_parent_held_it() -> None:
    assert run_fork_scenario("scripted") == 0

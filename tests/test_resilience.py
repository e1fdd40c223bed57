"""Resilience against the real loopback server: outages with and without a valid token
(exact backoff schedules, callers riding out an outage on the FakeClock), every
malformed-response fault, fork and pickle safety."""

from __future__ import annotations

import os
import pickle
import threading
from typing import Any

import pytest
import requests

from requests_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    InvalidGrantError,
    MalformedTokenResponseError,
    TokenAdapter,
    TokenAuth,
    TokenEndpointError,
    UnsupportedTokenTypeError,
)
from requests_tokenauth.testing import AuthServer, FakeClock

from .helpers import EXACT, LIFETIME, join_all, run_fork_scenario, session_for, start_threads

STALE_AT = 70.0  # a 100 s token with EXACT policy: stale at 70 s, expired at 95 s


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    auth_server.token_lifetime_seconds = LIFETIME
    return auth_server


def make_auth(server: AuthServer, clock: FakeClock, **kw: Any) -> TokenAuth:
    grant = ClientCredentials(
        server.token_url,
        client_id="svc",
        client_secret="svc-secret",
        timeout=kw.pop("timeout", 5.0),
    )
    kw.setdefault("refresh_ahead", "inline")
    kw.setdefault("random", lambda: 1.0)  # full jitter at its maximum: exact schedules
    return TokenAuth(grant, clock=clock, policy=kw.pop("policy", EXACT), **kw)


def burst(session: requests.Session, url: str, n: int = 32) -> list[Any]:
    threads, results = start_threads(n, lambda i: session.get(url))
    join_all(threads)
    return results


def test_outage_with_a_valid_token_costs_callers_nothing_and_follows_the_backoff(
    server: AuthServer, fake_clock: FakeClock
) -> None:
    events: list = []
    auth = make_auth(server, fake_clock, on_event=events.append)
    session = session_for(auth)
    session.get(server.resource_url)
    first = auth.token
    server.set_token_fault("500")
    start = fake_clock.monotonic()
    attempts_at: list[float] = []
    # attempts are due at 70 (first stale call), then +1, +2, +4, +8 (base 1 s, doubling)
    for t in (70.0, 70.5, 71.0, 72.0, 73.0, 76.9, 77.0, 80.0, 84.9):
        fake_clock.advance(start + t - fake_clock.monotonic())
        before = server.token_requests
        results = burst(session, server.resource_url)
        assert [r.status_code for r in results] == [200] * 32, f"callers saw errors at t={t}"
        attempts_at += [t] * (server.token_requests - before)
    assert attempts_at == [70.0, 71.0, 73.0, 77.0]
    assert auth.token is first  # the old token kept serving
    server.clear_token_fault()
    fake_clock.advance(start + 85.0 - fake_clock.monotonic())
    burst(session, server.resource_url)
    assert server.token_requests == 1 + 5  # the first attempt after the window succeeded
    assert auth.token is not first
    failed = [(e.attempt, e.next_attempt_in_seconds) for e in events if e.kind == "refresh_failed"]
    assert failed == [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)]


def test_outage_with_an_expired_token_and_max_wait_0_fails_fast_one_attempt_per_step(
    server: AuthServer, fake_clock: FakeClock
) -> None:
    auth = make_auth(server, fake_clock, max_wait_seconds=0)
    session = session_for(auth)
    session.get(server.resource_url)
    server.set_token_fault("503", retry_after=10)
    fake_clock.advance(LIFETIME)  # expired, nominally too
    base = server.token_requests
    results = burst(session, server.resource_url)
    assert all(isinstance(r, TokenEndpointError) for r in results)
    assert {r.status_code for r in results} == {503}
    assert server.token_requests == base + 1  # 32 callers, one attempt
    retry_later = [r for r in results if r.next_attempt_in_seconds is not None]
    assert len(retry_later) == 31 and {r.next_attempt_in_seconds for r in retry_later} == {10.0}
    fake_clock.advance(9.9)  # Retry-After: 10 wins over the 1 s step
    results = burst(session, server.resource_url)
    assert all(isinstance(r, TokenEndpointError) for r in results)
    assert server.token_requests == base + 1
    server.clear_token_fault()
    fake_clock.advance(0.1)
    results = burst(session, server.resource_url)
    assert [r.status_code for r in results] == [200] * 32
    assert server.token_requests == base + 2


def test_invalid_grant_is_terminal_one_request_no_loop(
    server: AuthServer, fake_clock: FakeClock
) -> None:
    auth = make_auth(server, fake_clock)
    session = session_for(auth)
    server.set_token_fault("invalid_client")
    for _ in range(5):
        with pytest.raises(InvalidGrantError) as info:
            session.get(server.resource_url)
        assert info.value.error == "invalid_client" and not info.value.retryable
    assert server.token_requests == 1
    assert server.resource_requests == 0


FAULTS = [
    ("500", TokenEndpointError, "500"),
    ("503", TokenEndpointError, "503"),
    ("429", TokenEndpointError, "429"),
    ("drop", TokenEndpointError, "ConnectionError"),
    ("slow", TokenEndpointError, "ReadTimeout"),
    ("non_json", MalformedTokenResponseError, "not a token response|without an access_token"),
    ("no_access_token", MalformedTokenResponseError, "without an access_token"),
    ("wrong_token_type", UnsupportedTokenTypeError, "token_type 'mac'"),
    ("negative_expires_in", MalformedTokenResponseError, "expires_in must not be negative"),
    ("string_expires_in", MalformedTokenResponseError, "expires_in"),
    ("invalid_grant", InvalidGrantError, "invalid_grant"),
    ("invalid_client", InvalidGrantError, "invalid_client"),
]


@pytest.mark.parametrize(("kind", "error_type", "names"), FAULTS, ids=[f[0] for f in FAULTS])
def test_each_fault_gives_a_typed_error_naming_it_and_keeps_a_valid_token(
    server: AuthServer, fake_clock: FakeClock, kind: str, error_type: type, names: str
) -> None:
    server.slow_seconds = 5.0
    auth = make_auth(server, fake_clock, timeout=(2.0, 0.3), max_wait_seconds=0)
    session = session_for(auth)
    # with no token at all: the typed error, naming the problem, with no secret in it
    server.set_token_fault(kind, count=1)
    with pytest.raises(error_type, match=names) as info:
        session.get(server.resource_url)
    text = f"{info.value} {info.value!r} {info.value.body}"
    assert "svc-secret" not in text
    assert not any(s.authorization and s.authorization.split()[-1] in text for s in server.seen)
    # with a valid token that is due for refresh: the failed refresh costs nothing
    fake_clock.advance(60)  # past the remembered failure's backoff
    assert session.get(server.resource_url).status_code == 200
    token = auth.token
    fake_clock.advance(STALE_AT)
    server.set_token_fault(kind, count=1)
    assert session.get(server.resource_url).status_code == 200
    assert auth.token is token


def test_background_refresh_failure_is_invisible_to_callers(
    server: AuthServer, fake_clock: FakeClock
) -> None:
    auth = make_auth(server, fake_clock, refresh_ahead="background")
    session = session_for(auth)
    session.get(server.resource_url)
    token = auth.token
    fake_clock.advance(STALE_AT)
    server.set_token_fault("500", count=1)
    assert session.get(server.resource_url).status_code == 200
    assert auth.manager.wait_for_refresh()
    assert auth.token is token and server.token_requests == 2
    fake_clock.advance(1.0)  # the backoff step passed: the next stale call refreshes
    assert session.get(server.resource_url).status_code == 200
    assert auth.manager.wait_for_refresh()
    assert auth.token is not token and server.token_requests == 3


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_gets_a_token_while_the_parent_is_mid_refresh() -> None:
    # a parent thread holds the lock inside a token request; the child gets a token and a 200
    assert run_fork_scenario("server") == 0


def test_sessions_with_token_auth_or_adapter_pickle(server: AuthServer) -> None:
    grant = ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")
    with_auth = requests.Session()
    with_auth.trust_env = False
    with_auth.auth = TokenAuth(grant)
    with_adapter = requests.Session()
    with_adapter.trust_env = False
    with_adapter.mount("http://127.0.0.1", TokenAdapter(TokenAuth(grant), origins=[server.url]))
    for session in (with_auth, with_adapter):
        assert session.get(server.resource_url).status_code == 200
        copy: requests.Session = pickle.loads(pickle.dumps(session))
        assert copy.get(server.resource_url).status_code == 200
    assert with_auth.auth.token is not None
    assert pickle.loads(pickle.dumps(with_auth)).auth.token is None  # tokens are not pickled
    assert server.token_requests == 4  # each original and each copy obtained its own


def test_retry_after_http_date_is_honoured(server: AuthServer, fake_clock: FakeClock) -> None:
    from email.utils import formatdate

    auth = make_auth(server, fake_clock, max_wait_seconds=0)
    when = formatdate(fake_clock.time() + 30, usegmt=True)
    server.set_token_fault("429", retry_after=when)
    with pytest.raises(TokenEndpointError) as info:
        auth.get_token()
    assert info.value.retry_after_seconds == pytest.approx(30, abs=1)
    fake_clock.advance(28)
    with pytest.raises(TokenEndpointError, match="next attempt"):
        auth.get_token()
    assert server.token_requests == 1


# -- riding out an outage: the token until its nominal expiry, then waiting callers -----------


def test_failing_renewal_inside_the_skew_serves_the_token_until_its_nominal_expiry(
    server: AuthServer, fake_clock: FakeClock
) -> None:
    auth = make_auth(server, fake_clock, max_wait_seconds=0)
    session = session_for(auth)
    session.get(server.resource_url)
    first, start = auth.token, fake_clock.monotonic()
    fake_clock.advance(96)  # past the skewed expiry (95), before the nominal one (100)
    server.set_token_fault("500")
    results = burst(session, server.resource_url, n=8)
    assert [r.status_code for r in results] == [200] * 8  # the server still accepts it
    assert server.token_requests == 2  # one blocking attempt, failed; nobody waited on it
    fake_clock.advance(start + 99.9 - fake_clock.monotonic())  # the next attempt is due
    results = burst(session, server.resource_url, n=8)
    assert [r.status_code for r in results] == [200] * 8
    assert server.token_requests == 3
    sent = {s.authorization for s in server.seen if s.authorization.startswith("Bearer")}
    assert sent == {first.authorization}
    fake_clock.advance(0.1)  # nominal expiry: no token left, and max_wait 0 fails fast
    results = burst(session, server.resource_url, n=8)
    assert all(isinstance(r, TokenEndpointError) for r in results)


def park(clock: FakeClock, n: int) -> None:
    """Wait until ``n`` callers wait on ``clock`` for the next attempt."""
    assert clock.wait_for_sleepers(n), "the callers did not all wait for the next attempt"


def test_waiting_callers_make_one_attempt_per_probe_and_the_first_success_releases_all(
    server: AuthServer, fake_clock: FakeClock
) -> None:
    events: list = []
    auth = make_auth(server, fake_clock, on_event=events.append)  # default max wait: 5 s
    session = session_for(auth)
    session.get(server.resource_url)
    fake_clock.advance(LIFETIME)  # nominally expired
    server.set_token_fault("500")
    base = server.token_requests
    threads, results = start_threads(8, lambda i: session.get(server.resource_url))
    park(fake_clock, 8)  # one attempt failed; all 8 wait for the next, none failed
    assert server.token_requests == base + 1 and results == [None] * 8
    for step in (2, 3, 4):
        fake_clock.advance(0.5)  # the probe interval (random 1.0: its top)
        park(fake_clock, 8)
        assert server.token_requests == base + step, "one attempt per step, not per caller"
    server.clear_token_fault()
    fake_clock.advance(0.5)
    join_all(threads)
    assert [r.status_code for r in results] == [200] * 8
    assert server.token_requests == base + 5
    failed = [(e.attempt, e.next_attempt_in_seconds) for e in events if e.kind == "refresh_failed"]
    assert failed == [(1, 0.5), (2, 0.5), (3, 0.5), (4, 0.5)]
    assert [e.kind for e in events][-1] == "refresh_succeeded"


def test_the_wait_bound_raises_the_typed_error_saying_how_long_and_when_next(
    server: AuthServer, fake_clock: FakeClock
) -> None:
    auth = make_auth(server, fake_clock, max_wait_seconds=1.0)
    fake_clock.advance(10)
    server.set_token_fault("500")
    threads, results = start_threads(3, lambda i: auth.get_token())
    park(fake_clock, 3)  # attempt 1 failed; attempt 2 is due within the second
    fake_clock.advance(0.5)
    park(fake_clock, 3)  # attempt 2 failed; attempt 3 is due exactly at the bound
    fake_clock.advance(0.5)
    join_all(threads)  # attempt 3 failed: the next one is past every caller's bound
    assert server.token_requests == 3
    for error in results:
        assert isinstance(error, TokenEndpointError) and error.status_code == 500
        assert error.waited_seconds == 1.0 and error.next_attempt_in_seconds == 0.5
        assert "waited 1.00s for a token; next attempt in 0.50s" in str(error)
    fake_clock.advance(0.5)  # a later caller waits afresh, for the next attempt only
    server.clear_token_fault()
    assert auth.get_token() is auth.token and server.token_requests == 4


def test_retry_after_longer_than_the_bound_fails_at_once_and_is_never_shortened(
    server: AuthServer, fake_clock: FakeClock
) -> None:
    auth = make_auth(server, fake_clock)  # default max wait: 5 s
    server.set_token_fault("503", retry_after=10)
    with pytest.raises(TokenEndpointError) as info:
        auth.get_token()  # no waiting: nothing can change before the bound
    assert info.value.retry_after_seconds == 10.0 and info.value.waited_seconds is None
    with pytest.raises(TokenEndpointError, match=r"next attempt in 10\.00s") as info:
        auth.get_token()
    assert info.value.waited_seconds is None and server.token_requests == 1
    fake_clock.advance(6)  # now the attempt is 4 s away, within the bound: a caller waits
    server.clear_token_fault()
    done = threading.Event()
    got: list[Any] = []
    caller = threading.Thread(target=lambda: (got.append(auth.get_token()), done.set()))
    caller.daemon = True
    caller.start()
    park(fake_clock, 1)
    fake_clock.advance(3.9)
    park(fake_clock, 1)  # woken, still before the Retry-After instant: waits again
    assert server.token_requests == 1 and not done.is_set()
    fake_clock.advance(0.1)
    assert done.wait(10) and got == [auth.token]
    assert server.token_requests == 2


def test_a_401_during_an_outage_waits_for_the_next_attempt_and_is_retried(
    server: AuthServer, fake_clock: FakeClock
) -> None:
    auth = make_auth(server, fake_clock)
    session = session_for(auth)
    session.get(server.resource_url)
    server.revoke_all()  # the resource now rejects the current token...
    server.set_token_fault("500")  # ...and no new one can be had for now
    threads, results = start_threads(1, lambda i: session.get(server.resource_url))
    park(fake_clock, 1)  # the replacement failed; the caller waits for the next attempt
    assert server.token_requests == 2 and results == [None]
    server.clear_token_fault()
    fake_clock.advance(1.0)  # the first backoff step (the refused token is not expired)
    join_all(threads)
    assert results[0].status_code == 200 and len(results[0].history) == 1
    assert server.token_requests == 3


@pytest.mark.parametrize("bad", [-1, float("inf"), float("nan")])
def test_max_wait_seconds_must_be_a_finite_number_not_below_0(
    server: AuthServer, fake_clock: FakeClock, bad: float
) -> None:
    with pytest.raises(ConfigurationError, match="max_wait_seconds"):
        make_auth(server, fake_clock, max_wait_seconds=bad)

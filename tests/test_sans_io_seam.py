"""The seam drivers plug into: ``TokenManager.token_nowait`` (never waits, never runs a
callback on the caller's thread) and the sender chosen per context (``sending_with``, the
manager's default ``sender=``), which a refresh ahead inherits. Real grants against the
testing server where a request is sent; a scripted grant where none is."""

from __future__ import annotations

import threading
from typing import Optional

import pytest
import requests

from requests_tokenauth import ClientCredentials, RefreshPolicy, TokenEndpointError, TokenManager
from requests_tokenauth._grants._wire import (
    Bounds,
    OutgoingRequest,
    answer,
    current_sender,
    sending_by_default,
    sending_with,
)
from requests_tokenauth.testing import FakeClock

from ._scripted import ScriptedGrant

POLICY = RefreshPolicy(refresh_jitter_fraction=0.0)  # 100 s token: stale at 70, expired at 95


def make(grant: ClientCredentials, clock: FakeClock, **kw) -> TokenManager:
    return TokenManager(grant, clock=clock, policy=POLICY, random=lambda: 1.0, **kw)


class RecordingSender:
    """Sends with requests (a plain session) and records what it was asked to send, and on
    which thread."""

    def __init__(self) -> None:
        self.sent: list[tuple[OutgoingRequest, str]] = []

    def send(self, request: OutgoingRequest, bounds: Bounds) -> requests.Response:
        self.sent.append((request, threading.current_thread().name))
        assert bounds.remaining() > 0
        with requests.Session() as session:
            session.trust_env = False
            got = session.post(request.url, data=request.body, headers=request.headers)
        return answer(got.status_code, got.headers, got.content, got.url)


# -- token_nowait: one table of states -----------------------------------------------------


@pytest.mark.parametrize(
    ("advance", "refresh_ahead", "expect_token", "expect_calls"),
    [
        (None, "background", False, 0),  # no token yet: the caller must wait elsewhere
        (0, "background", True, 1),  # fresh
        (69, "background", True, 1),  # still fresh
        (80, "background", True, 2),  # stale: served, a refresh ahead runs on its own thread
        (80, "inline", False, 1),  # stale, inline refresh: that is a wait, so None
        (96, "background", False, 1),  # expired
    ],
)
def test_token_nowait_serves_what_needs_no_wait(
    advance: Optional[float], refresh_ahead: str, expect_token: bool, expect_calls: int
) -> None:
    clock, grant = FakeClock(), ScriptedGrant()
    manager = make(grant, clock, refresh_ahead=refresh_ahead)
    first = None
    if advance is not None:
        first = manager.get_token()
        clock.advance(advance)
    got = manager.token_nowait()
    assert manager.wait_for_refresh()
    assert (got is first and got is not None) if expect_token else got is None
    assert grant.calls == expect_calls


def test_token_nowait_serves_inside_the_skew_while_renewal_fails() -> None:
    clock = FakeClock()
    grant = ScriptedGrant(100.0, TokenEndpointError("down"))
    manager = make(grant, clock, max_wait_seconds=0)
    old = manager.get_token()
    clock.advance(96)  # expired by the skew, still before the nominal expiry (100 s)
    assert manager.token_nowait() is None  # renewal is due: the caller must renew
    assert manager.get_token() is old  # renewal failed; served until the nominal expiry
    assert manager.token_nowait() is old  # within the backoff: served without waiting
    assert grant.calls == 2


def test_a_due_on_token_retry_runs_on_the_refresh_thread_not_the_callers() -> None:
    clock, grant = FakeClock(), ScriptedGrant()
    threads: list[str] = []
    fail = [True]

    def on_token(token: dict) -> None:
        threads.append(threading.current_thread().name)
        if fail[0]:
            fail[0] = False
            raise OSError("disk full")

    manager = make(grant, clock, on_token=on_token)
    token = manager.get_token()  # delivered on this thread, and it fails
    assert threads == [threading.current_thread().name]
    clock.advance(1.0)  # the first retry is due after 1 s
    assert manager.token_nowait() is token
    assert manager.wait_for_refresh()
    assert threads[1:] == ["tokenauth-refresh"]
    assert manager._outbox.undelivered is None


# -- the sender: per context, the manager's default, inherited by a refresh ahead -------------


@pytest.fixture
def grant(auth_server) -> ClientCredentials:
    return ClientCredentials(auth_server.token_url, client_id="svc", client_secret="svc-secret")


def test_the_managers_default_sender_sends_token_requests(auth_server, grant) -> None:
    sender = RecordingSender()
    manager = TokenManager(grant, sender=sender)
    assert manager.get_token().access_token
    [(request, _)] = sender.sent
    assert (request.method, request.url, request.what) == ("POST", grant.token_url, "token request")
    assert request.direct  # plain http to loopback: no proxy may carry it
    assert b"grant_type=client_credentials" in request.body
    assert "svc-secret" not in repr(request)
    assert auth_server.token_requests == 1


def test_a_sender_named_by_the_context_wins_over_the_default(auth_server, grant) -> None:
    default, chosen = RecordingSender(), RecordingSender()
    manager = TokenManager(grant, sender=default)
    with sending_with(chosen):
        manager.get_token()
        with sending_by_default(default):  # a default never overrides a context's choice
            assert current_sender() is chosen
    assert current_sender() is None
    assert (len(chosen.sent), len(default.sent)) == (1, 0)


def test_without_a_sender_the_grant_sends_with_requests(auth_server, grant) -> None:
    assert current_sender() is None
    TokenManager(grant).get_token()
    assert auth_server.token_requests == 1


def test_a_refresh_ahead_sends_with_the_sender_of_the_caller_that_started_it(
    auth_server, grant
) -> None:
    clock, sender = FakeClock(), RecordingSender()
    manager = make(grant, clock)
    manager.get_token()  # with requests: no sender in this context
    clock.advance(3600 - 60)  # stale, not expired (the testing server issues 3600 s tokens)
    with sending_with(sender):
        manager.token_nowait()  # starts the refresh ahead on its own thread
    assert manager.wait_for_refresh()
    assert [(r.what, thread) for r, thread in sender.sent] == [
        ("token request", "tokenauth-refresh")
    ]
    assert auth_server.token_requests == 2

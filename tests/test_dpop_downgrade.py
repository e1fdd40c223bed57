"""DPoP downgrade: with ``TokenAuth(dpop=...)``, a token endpoint that answers with an
unbound ``Bearer`` token (the testing server's ``bind_dpop_tokens = False``) gets a terminal
:class:`DPoPDowngradeError` and the token is never sent; ``allow_dpop_downgrade=True`` uses
it with a warning."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import requests

pytest.importorskip("cryptography")

from requests_tokenauth import (
    ClientCredentials,
    DPoPDowngradeError,
    DPoPKey,
    InvalidGrantError,
    MemoryStore,
    Password,
    TokenAuth,
    TokenEvent,
)
from requests_tokenauth.testing import AuthServer, FakeClock

from .helpers import EXACT, LIFETIME


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    auth_server.token_lifetime_seconds = LIFETIME
    return auth_server


def service_grant(server: AuthServer) -> ClientCredentials:
    return ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")


def session_with(auth: TokenAuth) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.auth = auth
    return session


def test_an_unbound_token_is_refused_and_never_sent(server, fake_clock) -> None:
    server.bind_dpop_tokens = False
    events: list[TokenEvent] = []
    auth = TokenAuth(
        service_grant(server),
        clock=fake_clock,
        policy=EXACT,
        random=lambda: 0.5,
        dpop=DPoPKey.generate(),
        on_event=events.append,
    )
    with pytest.raises(DPoPDowngradeError) as caught:
        session_with(auth).get(server.resource_url)
    assert isinstance(caught.value, InvalidGrantError)  # terminal: the server must change
    assert caught.value.retryable is False
    assert "allow_dpop_downgrade" in str(caught.value)
    assert auth.token is None
    assert server.resource_requests == 0
    # remembered like any terminal failure: the next call gets it without a token request
    with pytest.raises(DPoPDowngradeError):
        session_with(auth).get(server.resource_url)
    assert server.token_requests == 1
    failed = [e for e in events if e.kind == "refresh_failed"]
    assert [(e.error, e.retryable) for e in failed] == [("DPoPDowngradeError", False)]


def test_a_refresh_answered_with_an_unbound_token_is_refused(server, fake_clock) -> None:
    grant = Password(
        server.token_url,
        client_id="app",
        client_secret="app-secret",
        username="alice",
        password="wonderland",
    )
    auth = TokenAuth(
        grant, clock=fake_clock, policy=EXACT, refresh_ahead="inline", dpop=DPoPKey.generate()
    )
    session = session_with(auth)
    assert session.get(server.resource_url).status_code == 200
    first = auth.token
    assert first is not None and first.token_type == "DPoP" and first.refresh_token
    server.bind_dpop_tokens = False
    fake_clock.advance(LIFETIME)  # past the nominal expiry: the bound token is no use now
    with pytest.raises(DPoPDowngradeError):
        session.get(server.resource_url)
    assert server.token_requests_by_grant == {"password": 1, "refresh_token": 1}
    assert [s.authorization.split()[0] for s in server.seen if s.path == "/resource"] == ["DPoP"]


def test_allow_dpop_downgrade_uses_the_bearer_token_with_a_warning(
    server, fake_clock, caplog: pytest.LogCaptureFixture
) -> None:
    server.bind_dpop_tokens = False
    auth = TokenAuth(
        service_grant(server),
        clock=fake_clock,
        policy=EXACT,
        dpop=DPoPKey.generate(),
        allow_dpop_downgrade=True,
    )
    with caplog.at_level(logging.WARNING, logger="requests_tokenauth"):
        response = session_with(auth).get(server.resource_url)
    assert response.status_code == 200
    assert response.request.headers["Authorization"].startswith("Bearer ")
    assert "DPoP" not in response.request.headers
    assert "allow_dpop_downgrade" in caplog.text
    assert auth.token is not None and auth.token.access_token not in caplog.text


def test_bound_tokens_are_unaffected(server, fake_clock: FakeClock) -> None:
    auth: Any = TokenAuth(
        service_grant(server), clock=fake_clock, policy=EXACT, dpop=DPoPKey.generate()
    )
    assert session_with(auth).get(server.resource_url).status_code == 200
    assert auth.token.token_type == "DPoP"


# -- tokens this client did not request with a proof: token= and a shared store ----------------


def assert_no_secret(text: str, token: dict[str, Any]) -> None:
    assert token["access_token"] not in text
    assert token.get("refresh_token", "unset-refresh") not in text


def test_a_bearer_token_given_as_token_is_refused(server, fake_clock) -> None:
    saved = server.issue_token("svc", refresh=True)  # e.g. saved before DPoP was turned on
    with pytest.raises(DPoPDowngradeError) as caught:
        TokenAuth(service_grant(server), token=saved, clock=fake_clock, dpop=DPoPKey.generate())
    message = str(caught.value)
    assert "token=" in message and "allow_dpop_downgrade" in message
    assert_no_secret(message + repr(caught.value), saved)
    assert server.token_requests == 0 and server.resource_requests == 0


def auth_over_stored_bearer(
    server: AuthServer, clock: FakeClock, **options: Any
) -> tuple[TokenAuth, dict[str, Any]]:
    """A DPoP ``TokenAuth`` over a shared store that holds a Bearer token (saved by another
    client that does not use DPoP), and that token."""
    store = MemoryStore()
    saved = server.issue_token("svc", refresh=True)
    store.save("shared", saved)
    auth = TokenAuth(
        service_grant(server),
        store=store,
        store_key="shared",
        clock=clock,
        policy=EXACT,
        dpop=DPoPKey.generate(),
        **options,
    )
    return auth, saved


def test_a_bearer_token_from_the_store_is_refused_and_never_sent(server, fake_clock) -> None:
    auth, saved = auth_over_stored_bearer(server, fake_clock)
    session = session_with(auth)
    for _ in range(2):  # every request that would carry it: nothing is sent
        with pytest.raises(DPoPDowngradeError) as caught:
            session.get(server.resource_url)
        message = str(caught.value)
        assert "token store" in message and "allow_dpop_downgrade" in message
        assert_no_secret(message + repr(caught.value), saved)
    assert server.resource_requests == 0 and server.token_requests == 0


@pytest.mark.parametrize("source", ["token=", "store"])
def test_an_unbound_token_is_used_with_one_warning_when_allowed(
    server, fake_clock, caplog: pytest.LogCaptureFixture, source: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="requests_tokenauth"):
        if source == "store":
            auth, saved = auth_over_stored_bearer(server, fake_clock, allow_dpop_downgrade=True)
        else:
            saved = server.issue_token("svc")
            auth = TokenAuth(
                service_grant(server),
                token=saved,
                clock=fake_clock,
                policy=EXACT,
                dpop=DPoPKey.generate(),
                allow_dpop_downgrade=True,
            )
        session = session_with(auth)
        for _ in range(2):
            response = session.get(server.resource_url)
            assert response.status_code == 200
            assert response.request.headers["Authorization"] == f"Bearer {saved['access_token']}"
            assert "DPoP" not in response.request.headers
    warnings = [r for r in caplog.records if "allow_dpop_downgrade" in r.getMessage()]
    assert len(warnings) == 1  # once per token, not once per request
    assert_no_secret(caplog.text, saved)
    assert server.token_requests == 0

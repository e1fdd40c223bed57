"""Migrating to TokenAuth: from a requests-oauthlib ``OAuth2Session`` (built the ways its own
docs build them) and from an Authlib-style token saver that finds its row by the old refresh
token (issue 12). Against the loopback server, with rotating refresh tokens."""

from __future__ import annotations

import logging
import pickle
import time
from typing import Any, Optional

import pytest
from oauthlib.oauth2 import BackendApplicationClient, MobileApplicationClient
from requests_oauthlib import OAuth2Session
from requests_oauthlib.compliance_fixes import ebay_compliance_fix, slack_compliance_fix

from requests_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    RefreshToken,
    TokenAuth,
)
from requests_tokenauth._on_token import PreviousTokenCallback, wants_previous
from requests_tokenauth.testing import AuthServer, FakeClock

from .helpers import EXACT, EXPIRED_AFTER, LIFETIME, session_for


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    auth_server.token_lifetime_seconds = LIFETIME
    auth_server.rotate_refresh_tokens = True
    return auth_server


def web_application_session(server: AuthServer, saved: dict, updates: list) -> OAuth2Session:
    """requests-oauthlib's "refreshing tokens" example: a saved token, automatic refresh
    with the client credentials in ``auto_refresh_kwargs``, and a token saver."""
    extra = {"client_id": "app", "client_secret": "app-secret"}
    return OAuth2Session(
        "app",
        token=saved,
        auto_refresh_url=server.token_url,
        auto_refresh_kwargs=extra,
        token_updater=updates.append,
    )


def test_web_application_session_renews_with_rotation_and_calls_token_updater(
    server, fake_clock
) -> None:
    saved = server.issue_token("app", scopes=("read",), refresh=True, user="alice")
    updates: list[dict] = []
    oauth = web_application_session(server, saved, updates)
    auth = TokenAuth.from_oauth2_session(oauth, clock=fake_clock, policy=EXACT)
    assert isinstance(auth.manager.grant, RefreshToken)
    assert auth.manager.grant.auth_method == "client_secret_post"  # as requests-oauthlib sent it
    session = session_for(auth)
    assert session.get(server.resource_url).json()["user"] == "alice"
    assert server.token_requests == 0  # the saved token is used as it is
    for _ in range(3):
        fake_clock.advance(EXPIRED_AFTER)
        assert session.get(server.resource_url).status_code == 200
    assert server.token_requests_by_grant == {"refresh_token": 3}
    refresh_tokens = [saved["refresh_token"]] + [u["refresh_token"] for u in updates]
    assert len(updates) == 3 and len(set(refresh_tokens)) == 4
    assert updates[-1]["access_token"] == auth.token.access_token
    # the last saved refresh token is the live one: a restart from it works
    fresh = TokenAuth.from_oauth2_session(
        web_application_session(server, updates[-1], []), clock=fake_clock, policy=EXACT
    )
    fake_clock.advance(EXPIRED_AFTER)
    assert fresh.get_token().refresh_token not in refresh_tokens


def test_backend_application_session(server, monkeypatch) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # requests-oauthlib wants https
    # requests-oauthlib logs whole token responses at DEBUG (the conftest guard catches it)
    monkeypatch.setattr(logging.getLogger("requests_oauthlib.oauth2_session"), "disabled", True)
    clock = FakeClock(time=time.time())  # requests-oauthlib stamps expires_at with time.time()
    server.clock = clock
    client = BackendApplicationClient(client_id="svc")
    oauth = OAuth2Session(client=client)
    oauth.fetch_token(token_url=server.token_url, client_id="svc", client_secret="svc-secret")
    assert server.token_requests == 1
    auth = TokenAuth.from_oauth2_session(
        oauth, token_url=server.token_url, client_secret="svc-secret", clock=clock, policy=EXACT
    )
    assert isinstance(auth.manager.grant, ClientCredentials)
    assert auth.manager.grant.auth_method == "client_secret_basic"
    session = session_for(auth)
    assert session.get(server.resource_url).json()["client_id"] == "svc"
    assert server.token_requests == 1  # requests-oauthlib's token, as it was
    clock.advance(EXPIRED_AFTER)
    assert session.get(server.resource_url).status_code == 200
    assert server.token_requests_by_grant == {"client_credentials": 2}


def test_backend_application_without_a_token_url_is_a_clear_error() -> None:
    oauth = OAuth2Session(client=BackendApplicationClient(client_id="svc"))
    with pytest.raises(ConfigurationError, match="token_url="):
        TokenAuth.from_oauth2_session(oauth)


def test_tls_proxies_and_compliance_hooks_are_carried_over(server, fake_clock) -> None:
    server.token_type = "User Access Token"
    saved = server.issue_token("app", scopes=("read",), refresh=True, user="alice")
    oauth = web_application_session(server, saved, [])
    oauth.verify = "/etc/ssl/certs/ca-certificates.crt"
    oauth.cert = ("client.pem", "client.key")
    oauth.proxies = {"https": "http://proxy.internal:3128"}
    ebay_compliance_fix(oauth)
    auth = TokenAuth.from_oauth2_session(oauth, clock=fake_clock, policy=EXACT)
    grant = auth.manager.grant
    private = grant._transport.session()
    assert private is not oauth
    assert (private.verify, private.cert, private.proxies) == (
        oauth.verify,
        oauth.cert,
        oauth.proxies,
    )
    assert len(grant.compliance_hooks.registered("refresh_token_response")) == 1
    private.proxies = {}  # the proxy does not exist here; the hooks are what is tested
    private.cert = None
    fake_clock.advance(EXPIRED_AFTER)
    assert auth.get_token().token_type == "Bearer"  # "User Access Token" fixed by the hook


def test_a_protected_request_hook_reading_the_sessions_token_is_refused(server) -> None:
    saved = server.issue_token("app", scopes=("read",), refresh=True, user="alice")
    oauth = slack_compliance_fix(web_application_session(server, saved, []))
    with pytest.raises(ConfigurationError, match="protected_request"):
        TokenAuth.from_oauth2_session(oauth)


def test_an_implicit_grant_session_cannot_be_renewed() -> None:
    oauth = OAuth2Session(client=MobileApplicationClient(client_id="spa"))
    with pytest.raises(ConfigurationError, match="MobileApplicationClient"):
        TokenAuth.from_oauth2_session(oauth)


def test_requests_oauthlib_is_imported_only_when_used() -> None:
    import subprocess
    import sys

    code = (
        "import sys, requests_tokenauth; assert 'requests_oauthlib' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- an Authlib-style saver: the row is found by the token it replaces ---------------------


class TokenTable:
    """A stand-in for the application's OAuth2Token table (one row per user)."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.rows = [dict(row)]

    def find(self, **where: str) -> Optional[dict[str, Any]]:
        return next((r for r in self.rows if all(r.get(k) == v for k, v in where.items())), None)


def test_authlib_style_saver_keeps_the_row_current_across_3_rotations(server, fake_clock) -> None:
    saved = server.issue_token("app", scopes=("read",), refresh=True, user="alice")
    table = TokenTable({"name": "idp", "user": "alice", **saved})

    # Authlib's documented update_token, unchanged...
    def update_token(token, refresh_token=None, access_token=None):
        if refresh_token:
            item = table.find(name="idp", refresh_token=refresh_token)
        elif access_token:
            item = table.find(name="idp", access_token=access_token)
        else:
            return
        item["access_token"] = token["access_token"]
        item["refresh_token"] = token.get("refresh_token")
        item["expires_at"] = token["expires_at"]

    # ...called the way Authlib calls it, from an on_token that asks for ``previous``
    def save(token, previous=None):
        if previous is not None:
            update_token(
                token,
                refresh_token=previous.get("refresh_token"),
                access_token=previous["access_token"],
            )

    grant = RefreshToken(server.token_url, client_id="app", client_secret="app-secret")
    auth = TokenAuth(grant, token=saved, on_token=save, clock=fake_clock, policy=EXACT)
    session = session_for(auth)
    for _ in range(3):
        fake_clock.advance(EXPIRED_AFTER)
        assert session.get(server.resource_url).status_code == 200
        assert table.rows[0]["refresh_token"] == auth.token.refresh_token
        assert table.rows[0]["access_token"] == auth.token.access_token
    assert server.token_requests_by_grant == {"refresh_token": 3}
    # a restart from the row refreshes without invalid_grant
    restart = TokenAuth(
        RefreshToken(server.token_url, client_id="app", client_secret="app-secret"),
        token={k: v for k, v in table.rows[0].items() if k not in ("name", "user")},
        clock=fake_clock,
        policy=EXACT,
    )
    fake_clock.advance(EXPIRED_AFTER)
    assert restart.get_token().access_token != auth.token.access_token


def test_a_failed_save_keeps_previous_at_what_the_row_still_holds(server, fake_clock) -> None:
    saved = server.issue_token("app", scopes=("read",), refresh=True, user="alice")
    calls: list[tuple[str, Optional[str]]] = []
    fail = [True]

    def save(token, previous=None):
        calls.append((token["refresh_token"], previous and previous["refresh_token"]))
        if fail.pop(0) if fail else False:
            raise OSError("database down")

    grant = RefreshToken(server.token_url, client_id="app", client_secret="app-secret")
    auth = TokenAuth(grant, token=saved, on_token=save, clock=fake_clock, policy=EXACT)
    for _ in range(2):
        fake_clock.advance(EXPIRED_AFTER)
        auth.get_token()
    (_, first_previous), (second, second_previous) = calls
    assert first_previous == saved["refresh_token"]
    assert second_previous == saved["refresh_token"]  # the first save failed
    assert second == auth.token.refresh_token


def test_one_argument_callbacks_are_called_as_before(server, fake_clock) -> None:
    got: list[dict] = []
    grant = RefreshToken(server.token_url, client_id="app", client_secret="app-secret")
    saved = server.issue_token("app", scopes=("read",), refresh=True, user="alice")
    auth = TokenAuth(grant, token=saved, on_token=got.append, clock=fake_clock, policy=EXACT)
    assert auth.manager._outbox._on_token == got.append  # not wrapped
    fake_clock.advance(EXPIRED_AFTER)
    auth.get_token()
    assert [t["access_token"] for t in got] == [auth.token.access_token]


@pytest.mark.parametrize(
    ("callback", "wanted"),
    [
        (lambda token, previous=None: None, True),
        (lambda token, *, previous: None, True),
        (lambda token: None, False),
        (lambda token, **kwargs: None, False),
        (lambda token, refresh_token=None, access_token=None: None, False),
        (print, False),
    ],
)
def test_wants_previous(callback, wanted) -> None:
    assert wants_previous(callback) is wanted


def test_previous_token_callback_pickles_without_tokens() -> None:
    wrapped = PreviousTokenCallback(print, {"access_token": "SECRET-AT"})
    copy = pickle.loads(pickle.dumps(wrapped))
    assert copy.callback is print
    assert "SECRET-AT" not in repr(pickle.dumps(wrapped))

"""The flows around the grants, over real HTTP: device polling (pending, slow_down, expiry,
denial), the authorization code's state and PKCE checks, falling back to the original
grant when a refresh token is rejected, token exchange, and revocation."""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from dataclasses import replace
from typing import Any

import pytest
import requests

from requests_tokenauth import (
    AccessDeniedError,
    AuthorizationCode,
    ClientCredentials,
    ConfigurationError,
    DeviceAuthorization,
    DeviceCode,
    DeviceCodeExpiredError,
    InvalidGrantError,
    JWTBearer,
    MemoryStore,
    Password,
    StateMismatchError,
    TokenAuth,
    TokenExchange,
)
from requests_tokenauth.testing import AuthServer, FakeClock

from .helpers import EXACT, LIFETIME, session_for

pytest.importorskip("jwt")

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    auth_server.token_lifetime_seconds = LIFETIME
    return auth_server


def make_auth(grant: Any, clock: FakeClock, **kwargs: Any) -> TokenAuth:
    return TokenAuth(grant, clock=clock, policy=EXACT, random=lambda: 0.5, **kwargs)


def password_grant(server: AuthServer, **kwargs: Any) -> Password:
    return Password(
        server.token_url,
        client_id="app",
        client_secret="app-secret",
        username="alice",
        password="wonderland",
        revocation_url=server.url + "/revoke",
        **kwargs,
    )


# -- device flow ----------------------------------------------------------------------------


class Person:
    """Sleeps by advancing the fake clock, and approves after a given number of polls."""

    def __init__(self, server: AuthServer, clock: FakeClock, approve_after: int = 0) -> None:
        self.server, self.clock, self.approve_after = server, clock, approve_after
        self.sleeps: list[float] = []
        self.shown: list[DeviceAuthorization] = []

    def on_user_code(self, authorization: DeviceAuthorization) -> None:
        self.shown.append(authorization)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)
        if len(self.sleeps) == self.approve_after:
            self.server.approve_device(self.shown[0].user_code, "alice")

    def grant(self, **kwargs: Any) -> DeviceCode:
        return DeviceCode(
            self.server.token_url,
            client_id="device",
            auth_method="none",
            device_authorization_url=self.server.url + "/device_authorization",
            on_user_code=self.on_user_code,
            sleep=self.sleep,
            **kwargs,
        )


def test_device_pending_then_slow_down_then_success(server, fake_clock) -> None:
    person = Person(server, fake_clock, approve_after=3)
    server.set_device_responses("authorization_pending", "slow_down")
    auth = make_auth(person.grant(), fake_clock)
    assert requests.get(server.resource_url, auth=auth, timeout=10).json()["user"] == "alice"
    # the interval is 5 s, and 5 s more for good after slow_down
    assert person.sleeps == [5.0, 5.0, 10.0]
    assert server.token_requests_by_grant == {DEVICE: 3}
    assert server.token_errors == {"authorization_pending": 1, "slow_down": 1}
    shown = person.shown[0]
    assert shown.verification_uri == server.url + "/device"
    assert shown.user_code in (shown.verification_uri_complete or "")


def test_device_polling_faster_than_the_interval_is_slowed_down_by_the_server(
    server, fake_clock
) -> None:
    person = Person(server, fake_clock, approve_after=3)
    server.device_interval_seconds = 7.0  # the server will enforce 7 s...
    grant = person.grant()
    real_sleep = person.sleep

    def impatient(seconds: float) -> None:  # ...but the first wait comes up 1 s short
        real_sleep(seconds - 1 if len(person.sleeps) == 1 else seconds)

    grant._sleep = impatient
    assert make_auth(grant, fake_clock).get_token() is not None
    # the early poll got slow_down: client and server both wait 7 + 5 s from then on
    assert person.sleeps == [7.0, 6.0, 12.0]
    assert server.token_requests_by_grant == {DEVICE: 3}
    assert server.token_errors == {"authorization_pending": 1, "slow_down": 1}


def test_device_expired_token_is_a_typed_error(server, fake_clock) -> None:
    person = Person(server, fake_clock)
    server.set_device_responses("authorization_pending", "expired_token")
    with pytest.raises(DeviceCodeExpiredError) as caught:
        make_auth(person.grant(), fake_clock).get_token()
    assert isinstance(caught.value, InvalidGrantError) and caught.value.error == "expired_token"
    assert server.token_requests_by_grant == {DEVICE: 2}


def test_device_code_lifetime_ends_polling_without_asking_again(server, fake_clock) -> None:
    person = Person(server, fake_clock)  # nobody approves
    server.device_code_lifetime_seconds = 12
    with pytest.raises(DeviceCodeExpiredError):
        make_auth(person.grant(), fake_clock).get_token()
    assert person.sleeps == [5.0, 5.0, 5.0]  # polled at 5 and 10; at 15 the code is dead
    assert server.token_requests_by_grant == {DEVICE: 2}


def test_device_access_denied_is_a_typed_error(server, fake_clock) -> None:
    person = Person(server, fake_clock)
    grant = person.grant()
    grant._on_user_code = lambda a: server.deny_device(a.user_code)
    with pytest.raises(AccessDeniedError) as caught:
        make_auth(grant, fake_clock).get_token()
    assert caught.value.error == "access_denied"
    assert server.token_requests_by_grant == {DEVICE: 1}


def test_device_default_prompt_prints_where_to_go(server, fake_clock, capsys) -> None:
    grant = DeviceCode(
        server.token_url,
        client_id="device",
        auth_method="none",
        device_authorization_url=server.url + "/device_authorization",
        sleep=fake_clock.advance,
    )
    server.set_device_responses("access_denied")
    with pytest.raises(AccessDeniedError):
        make_auth(grant, fake_clock).get_token()
    out = capsys.readouterr().out
    assert f"visit {server.url}/device and enter the code " in out


def test_device_refresh_rejected_is_terminal(server, fake_clock) -> None:
    person = Person(server, fake_clock, approve_after=1)
    auth = make_auth(person.grant(), fake_clock)
    auth.get_token()
    fake_clock.advance(LIFETIME + 1)
    server.set_token_fault("invalid_grant", count=1)
    with pytest.raises(InvalidGrantError):
        auth.get_token()
    assert server.token_requests_by_grant == {DEVICE: 1, "refresh_token": 1}
    assert server.device_authorization_requests == 1  # no new device flow without a person


# -- authorization code ---------------------------------------------------------------------


def web_grant(server: AuthServer, **kwargs: Any) -> AuthorizationCode:
    return AuthorizationCode(
        server.token_url,
        client_id="web",
        client_secret="web-secret",
        authorization_url=server.url + "/authorize",
        redirect_uri="http://127.0.0.1:9/callback",
        **kwargs,
    )


def authorize(request_url: str) -> str:
    response = requests.get(request_url, allow_redirects=False, timeout=10)
    assert response.status_code == 302
    return response.headers["Location"]


def test_authorization_url_carries_state_and_an_s256_challenge(server) -> None:
    request = web_grant(server, scope=["read"]).prepare_authorization(prompt="consent")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))
    digest = hashlib.sha256(request.code_verifier.encode()).digest()
    assert query == {
        "response_type": "code",
        "client_id": "web",
        "redirect_uri": "http://127.0.0.1:9/callback",
        "state": request.state,
        "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        "scope": "read",
        "prompt": "consent",
    }
    assert request.code_verifier not in repr(request)
    assert web_grant(server).prepare_authorization().state != request.state


def test_state_mismatch_is_refused_before_any_token_request(server, fake_clock) -> None:
    grant = web_grant(server)
    mine, other = grant.prepare_authorization(), grant.prepare_authorization()
    with pytest.raises(StateMismatchError):
        grant.exchange(mine, authorize(other.url), clock=fake_clock)
    location = authorize(mine.url)
    without_state = location.replace(f"state={mine.state}", "")
    with pytest.raises(StateMismatchError):
        grant.exchange(mine, without_state, clock=fake_clock)
    assert server.token_requests == 0
    assert grant.exchange(mine, location, clock=fake_clock)["access_token"]


def test_denied_authorization_raises_access_denied(server, fake_clock) -> None:
    server.authorize_user = None
    grant = web_grant(server)
    request = grant.prepare_authorization()
    with pytest.raises(AccessDeniedError):
        grant.exchange(request, authorize(request.url), clock=fake_clock)
    assert server.token_requests == 0


def test_a_forged_redirect_error_cannot_forge_a_log_line_or_message(server, fake_clock) -> None:
    grant = web_grant(server)
    request = grant.prepare_authorization()
    forged = urllib.parse.urlencode(
        {"state": request.state, "error": "x\nINFO forged line", "error_description": "d\r\n"}
    )
    with pytest.raises(InvalidGrantError) as caught:
        grant.exchange(request, f"{grant.redirect_uri}?{forged}", clock=fake_clock)
    assert "\n" not in str(caught.value) and "\r" not in str(caught.value)
    assert caught.value.error is not None and "\n" not in caught.value.error
    assert server.token_requests == 0


def test_pkce_is_checked_by_the_server(server, fake_clock) -> None:
    grant = web_grant(server)
    request = grant.prepare_authorization()
    location = authorize(request.url)
    forged = replace(request, code_verifier="x" * 64)
    with pytest.raises(InvalidGrantError) as caught:
        grant.exchange(forged, location, clock=fake_clock)
    assert caught.value.error == "invalid_grant"
    assert server.token_errors == {"invalid_grant": 1}


def test_a_code_is_good_once(server, fake_clock) -> None:
    grant = web_grant(server)
    request = grant.prepare_authorization()
    location = authorize(request.url)
    grant.exchange(request, location, clock=fake_clock)
    with pytest.raises(InvalidGrantError):
        grant.exchange(request, location, clock=fake_clock)


def test_authorization_code_without_refresh_token_needs_the_person(server, fake_clock) -> None:
    server.add_client("once", "once-secret", grant_types=("authorization_code",))
    grant = web_grant(server)
    grant.client_id, grant._client_secret = "once", "once-secret"
    request = grant.prepare_authorization()
    token = grant.exchange(request, authorize(request.url), clock=fake_clock)
    assert "refresh_token" not in token
    auth = make_auth(grant, fake_clock, token=token)
    fake_clock.advance(LIFETIME + 1)
    with pytest.raises(InvalidGrantError) as caught:
        auth.get_token()
    assert caught.value.error == "interaction_required"
    assert server.token_requests == 1


# -- invalid_grant on refresh: fall back to the grant, once, when no person is needed ------------


def test_client_credentials_recover_from_a_rejected_refresh_token(server, fake_clock) -> None:
    saved = server.issue_token("svc", refresh=True, lifetime_seconds=LIFETIME)
    grant = ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")
    session = session_for(make_auth(grant, fake_clock, token=saved))
    fake_clock.advance(LIFETIME + 1)
    server.set_token_fault("invalid_grant", count=1)
    assert session.get(server.resource_url).status_code == 200
    assert server.token_requests_by_grant == {"refresh_token": 1, "client_credentials": 1}


def test_password_recovers_from_a_rejected_refresh_token(server, fake_clock) -> None:
    grant = password_grant(server)
    session = session_for(make_auth(grant, fake_clock))
    session.get(server.resource_url)
    fake_clock.advance(LIFETIME + 1)
    server.set_token_fault("invalid_grant", count=1)
    assert session.get(server.resource_url).json()["user"] == "alice"
    assert server.token_requests_by_grant == {"password": 2, "refresh_token": 1}


def test_jwt_bearer_recovers_from_a_rejected_refresh_token(server, fake_clock) -> None:
    server.add_client("robot", "robot-secret", grant_types=(JWT_BEARER, "refresh_token"))
    grant = JWTBearer(
        server.token_url,
        client_id="robot",
        client_secret="robot-secret",
        issuer="robot",
        subject="robot",
        key=server.private_key_pem(),
    )
    session = session_for(make_auth(grant, fake_clock))
    session.get(server.resource_url)
    fake_clock.advance(LIFETIME + 1)
    server.set_token_fault("invalid_grant", count=1)
    assert session.get(server.resource_url).status_code == 200
    assert server.token_requests_by_grant == {JWT_BEARER: 2, "refresh_token": 1}


def test_authorization_code_refresh_rejected_is_terminal(server, fake_clock) -> None:
    grant = web_grant(server)
    request = grant.prepare_authorization()
    token = grant.exchange(request, authorize(request.url), clock=fake_clock)
    session = session_for(make_auth(grant, fake_clock, token=token))
    fake_clock.advance(LIFETIME + 1)
    server.set_token_fault("invalid_grant", count=1)
    with pytest.raises(InvalidGrantError) as caught:
        session.get(server.resource_url)
    assert caught.value.error == "invalid_grant"
    assert server.token_requests_by_grant == {"authorization_code": 1, "refresh_token": 1}


def test_only_invalid_grant_triggers_the_fallback(server, fake_clock) -> None:
    grant = password_grant(server)
    auth = make_auth(grant, fake_clock)
    auth.get_token()
    fake_clock.advance(LIFETIME + 1)
    server.set_token_fault("invalid_client", count=1)
    with pytest.raises(InvalidGrantError) as caught:
        auth.get_token()
    assert caught.value.error == "invalid_client"
    assert server.token_requests_by_grant == {"password": 1, "refresh_token": 1}


# -- token exchange -------------------------------------------------------------------------


def test_token_exchange_with_an_actor_and_a_live_subject(server, fake_clock) -> None:
    server.add_client("gateway", "gateway-secret", grant_types=(TOKEN_EXCHANGE,))
    user = make_auth(
        password_grant(server),
        fake_clock,
    )
    actor = server.issue_token("svc", lifetime_seconds=10 * LIFETIME)
    grant = TokenExchange(
        server.token_url,
        client_id="gateway",
        client_secret="gateway-secret",
        subject_token=lambda: user.get_token().access_token,  # always the current one
        actor_token=actor["access_token"],
        actor_token_type="urn:ietf:params:oauth:token-type:access_token",
        resource="https://orders.example",
    )
    session = session_for(make_auth(grant, fake_clock))
    assert session.get(server.resource_url).json()["user"] == "alice (via svc)"
    assert server.last_token_exchange == {
        "audience": None,
        "resource": "https://orders.example",
        "actor": True,
    }
    fake_clock.advance(LIFETIME + 1)  # both the user's and the exchanged token expired
    assert session.get(server.resource_url).status_code == 200
    assert server.token_requests_by_grant == {"password": 1, "refresh_token": 1, TOKEN_EXCHANGE: 2}


def test_token_exchange_of_a_dead_subject_is_refused(server, fake_clock) -> None:
    server.add_client("gateway", "gateway-secret", grant_types=(TOKEN_EXCHANGE,))
    grant = TokenExchange(
        server.token_url,
        client_id="gateway",
        client_secret="gateway-secret",
        subject_token="not-a-token-of-this-server",
    )
    with pytest.raises(InvalidGrantError) as caught:
        make_auth(grant, fake_clock).get_token()
    assert caught.value.error == "invalid_grant"


def test_token_exchange_arguments_are_checked() -> None:
    with pytest.raises(ConfigurationError):
        TokenExchange("https://idp.example/token", client_id="c", subject_token="")
    with pytest.raises(ConfigurationError):
        TokenExchange(
            "https://idp.example/token", client_id="c", subject_token="s", actor_token="a"
        )


# -- revocation (RFC 7009) ------------------------------------------------------------------


def test_revoke_revokes_the_refresh_token_and_forgets_the_token(server, fake_clock) -> None:
    auth = make_auth(password_grant(server), fake_clock)
    session = session_for(auth)
    session.get(server.resource_url)
    old = auth.token
    assert old is not None and old.refresh_token
    assert auth.revoke() is True
    assert auth.token is None
    assert server.revocation_requests == 1
    # the server revoked the refresh token and, with it, the access token
    header = {"Authorization": old.authorization}
    assert requests.get(server.resource_url, headers=header, timeout=10).status_code == 401
    refresh = requests.post(
        server.token_url,
        data={"grant_type": "refresh_token", "refresh_token": old.refresh_token},
        auth=("app", "app-secret"),
        timeout=10,
    )
    assert refresh.json()["error"] == "invalid_grant"
    # the next request signs in again
    assert session.get(server.resource_url).status_code == 200
    assert server.token_requests_by_grant == {"password": 2, "refresh_token": 1}
    assert auth.revoke() is True and auth.revoke() is False
    assert server.revocation_requests == 2


def test_revoke_removes_the_token_from_a_shared_store(server, fake_clock) -> None:
    store = MemoryStore()
    first = make_auth(password_grant(server), fake_clock, store=store)
    second = make_auth(password_grant(server), fake_clock, store=store)
    session_for(first).get(server.resource_url)
    assert first.revoke() is True
    assert store.load(first.manager._key) is None  # no sharer picks up the revoked token
    assert session_for(second).get(server.resource_url).status_code == 200
    assert server.token_requests_by_grant == {"password": 2}
    assert server.token_errors == {}


def test_revoke_revokes_the_access_token_when_there_is_no_refresh_token(server, fake_clock) -> None:
    grant = ClientCredentials(
        server.token_url,
        client_id="svc",
        client_secret="svc-secret",
        revocation_url=server.url + "/revoke",
    )
    auth = make_auth(grant, fake_clock)
    token = auth.get_token()
    assert token.refresh_token is None
    assert auth.revoke() is True
    header = {"Authorization": token.authorization}
    assert requests.get(server.resource_url, headers=header, timeout=10).status_code == 401


def test_revoke_with_a_jwt_authenticated_client(server, fake_clock) -> None:
    auth = make_auth(
        password_grant(
            server, auth_method="private_key_jwt", client_key=server.private_key_pem("ES256")
        ),
        fake_clock,
    )
    auth.get_token()
    assert auth.revoke() is True
    assert server.revocation_requests == 1 and server.token_errors == {}


def test_revoke_refused_for_a_wrong_client_secret_is_typed_and_still_forgets(
    server, fake_clock
) -> None:
    auth = make_auth(password_grant(server), fake_clock)
    auth.get_token()
    auth.manager.grant._client_secret = "wrong"
    with pytest.raises(InvalidGrantError) as caught:
        auth.revoke()
    assert caught.value.error == "invalid_client"
    assert auth.token is None


def test_revoke_without_an_endpoint_is_a_configuration_error(server, fake_clock) -> None:
    grant = ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")
    auth = make_auth(grant, fake_clock)
    assert auth.revoke() is False  # nothing to revoke yet: no request, no error
    auth.get_token()
    with pytest.raises(ConfigurationError, match="revocation"):
        auth.revoke()
    assert server.revocation_requests == 0

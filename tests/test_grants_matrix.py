"""Every grant x every client-authentication method it supports, over real HTTP: obtain a
token, call the resource, let the token expire, and watch the renewal, counting token
requests exactly (by grant type, on the server)."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import requests

from requests_tokenauth import (
    AuthorizationCode,
    ClientCredentials,
    DeviceAuthorization,
    DeviceCode,
    Grant,
    JWTBearer,
    Password,
    TokenAuth,
    TokenExchange,
)
from requests_tokenauth.testing import AuthServer, FakeClock

from .helpers import EXACT, LIFETIME

pytest.importorskip("jwt")

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
DEVICE = "urn:ietf:params:oauth:grant-type:device_code"

#: Long enough for HS256 (RFC 7518 §3.2: a key at least as long as the hash).
SECRET = "matrix-secret-0123456789-abcdefghijklmnop"

METHODS = [
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt:RS256",
    "private_key_jwt:ES256",
    "none",
]


class Recorder:
    """A token session that remembers the body of every request it sent."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.session.trust_env = False
        self.bodies: list[str] = []
        self.session.hooks["response"].append(self._record)

    def _record(self, response: requests.Response, **kwargs: Any) -> None:
        body = response.request.body
        self.bodies.append(body.decode() if isinstance(body, bytes) else str(body or ""))


def client_for(
    server: AuthServer, method: str, grant_types: tuple[str, ...], recorder: Recorder
) -> dict[str, Any]:
    """Register a client for ``method`` and return the grant keyword arguments."""
    name, _, algorithm = method.partition(":")
    client_id = f"client-{name}"
    server.add_client(client_id, None if name == "none" else SECRET, grant_types=grant_types)
    kwargs: dict[str, Any] = {"client_id": client_id, "auth_method": name}
    if name == "private_key_jwt":
        kwargs["client_key"] = server.private_key_pem(algorithm)
    elif name != "none":
        kwargs["client_secret"] = SECRET
    kwargs["session"] = recorder.session
    return kwargs


def check_client_authentication(server: AuthServer, method: str, recorder: Recorder) -> None:
    """Each token request carried exactly the client authentication of ``method``."""
    name = method.partition(":")[0]
    sent = [s.authorization for s in server.seen if s.path == "/token"]
    assert sent and all(
        (a or "").startswith("Basic ") == (name == "client_secret_basic") for a in sent
    )
    assert recorder.bodies
    for body in recorder.bodies:
        assert ("client_secret=" in body) == (name == "client_secret_post")
        assert ("client_assertion=" in body) == name.endswith("_jwt")
        assert ("client_id=" in body) == (name != "client_secret_basic")


def run_and_renew(
    server: AuthServer, clock: FakeClock, grant: Grant, **auth_kwargs: Any
) -> tuple[requests.Response, requests.Response, TokenAuth]:
    auth = TokenAuth(grant, clock=clock, policy=EXACT, random=lambda: 0.5, **auth_kwargs)
    session = requests.Session()
    session.trust_env = False
    session.auth = auth
    first = session.get(server.resource_url)
    old = auth.token
    clock.advance(LIFETIME + 1)  # expired for the client and the server alike
    second = session.get(server.resource_url)
    assert auth.token is not old and auth.token is not None and old is not None
    assert auth.token.access_token != old.access_token
    assert server.resource_401s == 0  # renewed before use, not after a rejection
    return first, second, auth


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    auth_server.token_lifetime_seconds = LIFETIME
    return auth_server


@pytest.mark.parametrize("method", [m for m in METHODS if m != "none"])
def test_client_credentials(server: AuthServer, fake_clock: FakeClock, method: str) -> None:
    recorder = Recorder()
    kwargs = client_for(server, method, ("client_credentials",), recorder)
    first, second, _ = run_and_renew(
        server, fake_clock, ClientCredentials(server.token_url, **kwargs)
    )
    assert first.json()["client_id"] == second.json()["client_id"] == kwargs["client_id"]
    assert server.token_requests_by_grant == {"client_credentials": 2}  # re-run, no refresh token
    check_client_authentication(server, method, recorder)


@pytest.mark.parametrize("method", METHODS)
def test_password(server: AuthServer, fake_clock: FakeClock, method: str) -> None:
    recorder = Recorder()
    kwargs = client_for(server, method, ("password", "refresh_token"), recorder)
    grant = Password(server.token_url, username="alice", password="wonderland", **kwargs)
    first, second, _ = run_and_renew(server, fake_clock, grant)
    assert first.json()["user"] == second.json()["user"] == "alice"
    assert server.token_requests_by_grant == {"password": 1, "refresh_token": 1}
    check_client_authentication(server, method, recorder)


@pytest.mark.parametrize("method", METHODS)
def test_jwt_bearer(server: AuthServer, fake_clock: FakeClock, method: str) -> None:
    recorder = Recorder()
    kwargs = client_for(server, method, (JWT_BEARER,), recorder)
    grant = JWTBearer(
        server.token_url,
        issuer="https://workload.example",
        subject="robot-7",
        key=server.private_key_pem("ES256"),
        **kwargs,
    )
    first, second, _ = run_and_renew(server, fake_clock, grant)
    assert first.json()["user"] == second.json()["user"] == "robot-7"
    # no refresh token: renewal signs a fresh assertion (a replayed jti would be refused)
    assert server.token_requests_by_grant == {JWT_BEARER: 2}
    check_client_authentication(server, method, recorder)


@pytest.mark.parametrize("method", METHODS)
def test_token_exchange(server: AuthServer, fake_clock: FakeClock, method: str) -> None:
    recorder = Recorder()
    kwargs = client_for(server, method, (TOKEN_EXCHANGE,), recorder)
    subject = server.issue_token("svc", user="alice", lifetime_seconds=10 * LIFETIME)
    grant = TokenExchange(
        server.token_url, subject_token=subject["access_token"], audience="orders", **kwargs
    )
    first, second, auth = run_and_renew(server, fake_clock, grant)
    assert first.json()["user"] == second.json()["user"] == "alice"
    assert first.json()["client_id"] == kwargs["client_id"]
    assert auth.token is not None
    assert auth.token.extra["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert server.last_token_exchange == {"audience": "orders", "resource": None, "actor": False}
    assert server.token_requests_by_grant == {TOKEN_EXCHANGE: 2}
    check_client_authentication(server, method, recorder)


@pytest.mark.parametrize("method", METHODS)
def test_authorization_code(server: AuthServer, fake_clock: FakeClock, method: str) -> None:
    recorder = Recorder()
    kwargs = client_for(server, method, ("authorization_code", "refresh_token"), recorder)
    grant = AuthorizationCode(
        server.token_url,
        authorization_url=server.url + "/authorize",
        redirect_uri="http://127.0.0.1:9/callback",
        scope="read",
        **kwargs,
    )
    request = grant.prepare_authorization()
    redirect = requests.get(request.url, allow_redirects=False, timeout=10)  # auto-approved
    assert redirect.status_code == 302
    token = grant.exchange(request, redirect.headers["Location"], clock=fake_clock)
    assert server.token_requests_by_grant == {"authorization_code": 1}
    first, second, _ = run_and_renew(server, fake_clock, grant, token=token)
    assert first.json()["user"] == second.json()["user"] == "alice"
    assert second.json()["scope"] == "read"
    assert server.token_requests_by_grant == {"authorization_code": 1, "refresh_token": 1}
    check_client_authentication(server, method, recorder)


def approving(server: AuthServer, clock: FakeClock) -> tuple[Callable[..., None], list[float]]:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)

    return sleep, sleeps


@pytest.mark.parametrize("method", METHODS)
def test_device_code(server: AuthServer, fake_clock: FakeClock, method: str) -> None:
    recorder = Recorder()
    kwargs = client_for(server, method, (DEVICE, "refresh_token"), recorder)
    shown: list[DeviceAuthorization] = []

    def on_user_code(authorization: DeviceAuthorization) -> None:
        shown.append(authorization)
        server.approve_device(authorization.user_code, "alice")  # the person approves

    sleep, sleeps = approving(server, fake_clock)
    grant = DeviceCode(
        server.token_url,
        device_authorization_url=server.url + "/device_authorization",
        on_user_code=on_user_code,
        sleep=sleep,
        **kwargs,
    )
    first, second, _ = run_and_renew(server, fake_clock, grant)
    assert first.json()["user"] == second.json()["user"] == "alice"
    assert len(shown) == 1 and sleeps == [5.0]
    assert server.device_authorization_requests == 1
    assert server.token_requests_by_grant == {DEVICE: 1, "refresh_token": 1}
    check_client_authentication(server, method, recorder)

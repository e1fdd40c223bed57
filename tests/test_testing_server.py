"""The loopback OAuth 2.0 server of ``requests_tokenauth.testing``, driven with plain requests."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, quote_plus

import pytest
import requests

from requests_tokenauth.testing import TOKEN_FAULTS, AuthServer, FakeClock, SeenRequest

REALM = 'Bearer realm="testing"'
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def _loopback_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)


def new_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with new_session() as session:
        yield session


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client_credentials(http: requests.Session, server: AuthServer, **data: str) -> Any:
    form = {"grant_type": "client_credentials", **data}
    return http.post(server.token_url, data=form, auth=("svc", "svc-secret"), timeout=10)


def password_grant(http: requests.Session, server: AuthServer, **data: str) -> Any:
    form = {"grant_type": "password", "username": "alice", "password": "wonderland", **data}
    return http.post(server.token_url, data=form, auth=("app", "app-secret"), timeout=10)


def refresh(http: requests.Session, server: AuthServer, token: str, **data: str) -> Any:
    form = {"grant_type": "refresh_token", "refresh_token": token, **data}
    return http.post(server.token_url, data=form, auth=("app", "app-secret"), timeout=10)


# -- token endpoint ----------------------------------------------------------------------


def test_client_credentials_with_basic_auth(
    auth_server: AuthServer, http: requests.Session
) -> None:
    response = client_credentials(http, auth_server)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    token = response.json()
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["scope"] == "read write"
    assert "refresh_token" not in token
    resource = http.get(auth_server.resource_url, headers=bearer(token["access_token"]))
    assert resource.status_code == 200
    assert resource.json()["client_id"] == "svc"
    assert resource.json()["user"] is None
    assert auth_server.token_requests == 1
    assert auth_server.token_requests_by_grant == {"client_credentials": 1}
    assert auth_server.token_errors == {}
    assert (auth_server.resource_requests, auth_server.resource_401s) == (1, 0)


def test_client_credentials_with_post_auth(auth_server: AuthServer, http: requests.Session) -> None:
    form = {"grant_type": "client_credentials", "client_id": "svc", "client_secret": "svc-secret"}
    response = http.post(auth_server.token_url, data={**form, "scope": "read"})
    assert response.status_code == 200
    assert response.json()["scope"] == "read"
    assert auth_server.seen[-1].authorization is None
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ


def test_rejected_token_requests_are_counted_by_error(
    auth_server: AuthServer, http: requests.Session
) -> None:
    url = auth_server.token_url
    cc = {"grant_type": "client_credentials"}
    assert http.post(url, data=cc, auth=("svc", "wrong")).status_code == 401
    assert (
        http.post(url, data={**cc, "client_id": "nobody", "client_secret": "x"}).status_code == 401
    )
    both = {**cc, "client_secret": "svc-secret"}  # two authentication methods at once
    assert http.post(url, data=both, auth=("svc", "svc-secret")).status_code == 401
    assert http.post(url, data=cc, auth=("app", "app-secret")).status_code == 400
    assert client_credentials(http, auth_server, scope="admin").status_code == 400
    assert password_grant(http, auth_server, password="wrong").status_code == 400
    assert http.get(url).status_code == 405  # only POST /token is a token request
    assert auth_server.token_errors == {
        "invalid_client": 3,
        "unauthorized_client": 1,
        "invalid_scope": 1,
        "invalid_grant": 1,
    }
    assert auth_server.token_requests == 6
    assert auth_server.token_requests_by_grant == {"client_credentials": 5, "password": 1}


def test_basic_auth_form_encodes_id_and_secret(
    auth_server: AuthServer, http: requests.Session
) -> None:
    client_id, secret = "we:ird%id+ü", "s:e%c+r ét/="
    auth_server.add_client(client_id, secret, grant_types=("client_credentials",))
    encoded = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    good = {"Authorization": "Basic " + base64.b64encode(encoded).decode()}
    raw = {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}
    form = {"grant_type": "client_credentials"}

    response = http.post(auth_server.token_url, data=form, headers=good)
    assert response.status_code == 200
    token = response.json()["access_token"]
    assert (
        http.get(auth_server.resource_url, headers=bearer(token)).json()["client_id"] == client_id
    )
    assert http.post(auth_server.token_url, data=form, headers=raw).status_code == 401
    assert auth_server.token_errors == {"invalid_client": 1}


def test_password_grant_then_refresh(auth_server: AuthServer, http: requests.Session) -> None:
    first = password_grant(http, auth_server).json()
    assert first["scope"] == "read write"
    refresh_token = first["refresh_token"]
    who = http.get(auth_server.resource_url, headers=bearer(first["access_token"])).json()
    assert (who["client_id"], who["user"]) == ("app", "alice")

    narrowed = refresh(http, auth_server, refresh_token, scope="read").json()
    assert narrowed["scope"] == "read"
    assert narrowed["access_token"] != first["access_token"]
    assert narrowed.get("refresh_token", refresh_token) == refresh_token
    # Without rotation the refresh token keeps working, with its original scope.
    again = refresh(http, auth_server, refresh_token).json()
    assert again["scope"] == "read write"
    who = http.get(auth_server.resource_url, headers=bearer(again["access_token"])).json()
    assert (who["user"], who["scope"]) == ("alice", "read write")
    assert refresh(http, auth_server, refresh_token, scope="admin").status_code == 400
    assert auth_server.token_requests_by_grant == {"password": 1, "refresh_token": 3}
    assert auth_server.token_errors == {"invalid_scope": 1}


def test_rotated_refresh_tokens_work_once(auth_server: AuthServer, http: requests.Session) -> None:
    auth_server.rotate_refresh_tokens = True
    first = password_grant(http, auth_server).json()["refresh_token"]
    second_response = refresh(http, auth_server, first, scope="read").json()
    second = second_response["refresh_token"]
    assert second != first
    assert second_response["scope"] == "read"

    reuse = refresh(http, auth_server, first)
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    assert auth_server.token_errors == {"invalid_grant": 1}
    third = refresh(http, auth_server, second).json()  # the rotated token kept the full scope
    assert third["scope"] == "read write"
    assert third["refresh_token"] not in (first, second)
    assert auth_server.token_requests_by_grant == {"password": 1, "refresh_token": 3}


def test_public_client_sends_only_its_id(auth_server: AuthServer, http: requests.Session) -> None:
    auth_server.add_client("cli", grant_types=("password", "refresh_token"), scopes=("read",))
    form = {"grant_type": "password", "username": "alice", "password": "wonderland"}
    token = http.post(auth_server.token_url, data={**form, "client_id": "cli"}).json()
    assert token["scope"] == "read"
    form = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    assert http.post(auth_server.token_url, data={**form, "client_id": "cli"}).status_code == 200
    # A confidential client must authenticate; a public one may not use client_credentials.
    app_form = {**form, "client_id": "app"}
    assert http.post(auth_server.token_url, data=app_form).status_code == 401
    cc = {"grant_type": "client_credentials", "client_id": "cli"}
    assert http.post(auth_server.token_url, data=cc).status_code == 400
    assert auth_server.token_errors == {"invalid_client": 1, "unauthorized_client": 1}


def test_issue_token_and_lifetime(
    auth_server: AuthServer, fake_clock: FakeClock, http: requests.Session
) -> None:
    minted = auth_server.issue_token("app", scopes=("read",), refresh=True, user="alice")
    assert minted["expires_in"] == 3600
    assert http.get(auth_server.resource_url, headers=bearer(minted["access_token"])).ok
    assert refresh(http, auth_server, minted["refresh_token"]).json()["scope"] == "read"
    assert auth_server.token_requests == 1  # minting is not a token request
    with pytest.raises(ValueError, match="unknown client"):
        auth_server.issue_token("nobody")

    auth_server.token_lifetime_seconds = 5
    token = client_credentials(http, auth_server).json()
    assert token["expires_in"] == 5
    short = auth_server.issue_token(lifetime_seconds=1)["access_token"]
    fake_clock.advance(4.5)
    assert http.get(auth_server.resource_url, headers=bearer(token["access_token"])).ok
    assert http.get(auth_server.resource_url, headers=bearer(short)).status_code == 401
    fake_clock.advance(0.5)
    assert (
        http.get(auth_server.resource_url, headers=bearer(token["access_token"])).status_code == 401
    )


# -- protected resource -------------------------------------------------------------------


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


@pytest.mark.parametrize("kind", ["bytesio", "generator", "empty"])
def test_resource_reports_the_full_body(
    auth_server: AuthServer, http: requests.Session, kind: str
) -> None:
    payload = b"" if kind == "empty" else os.urandom(5000) + b"\r\n0\r\n\r\n"
    body: Any = io.BytesIO(payload) if kind == "bytesio" else _chunks(payload)
    token = auth_server.issue_token()["access_token"]
    url = auth_server.resource_url + "/items/7?x=1"
    response = http.put(url, data=body, headers=bearer(token))
    assert response.status_code == 200
    if kind == "generator":
        assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.json() == {
        "client_id": "svc",
        "user": None,
        "scope": "read",
        "method": "PUT",
        "path": "/resource/items/7?x=1",
        "body_length": len(payload),
        "body_sha256": hashlib.sha256(payload).hexdigest(),
    }
    assert auth_server.seen[-1] == SeenRequest(
        "PUT", "/resource/items/7?x=1", f"Bearer {token}", len(payload)
    )


@pytest.mark.parametrize(
    ("case", "description"),
    [
        ("no_header", None),
        ("basic_scheme", None),
        ("unknown", "unknown access token"),
        ("expired", "the access token expired"),
        ("revoked", "the access token was revoked"),
        ("revoke_all", "the access token was revoked"),
        ("always_401", "this server rejects every token (always_401)"),
    ],
)
def test_resource_rejections(
    auth_server: AuthServer,
    fake_clock: FakeClock,
    http: requests.Session,
    case: str,
    description: str | None,
) -> None:
    token = auth_server.issue_token(lifetime_seconds=60)["access_token"]
    headers = bearer(token)
    if case == "no_header":
        headers = {}
    elif case == "basic_scheme":
        headers = {"Authorization": "Basic c3ZjOnN2Yy1zZWNyZXQ="}
    elif case == "unknown":
        headers = bearer("not-a-token")
    elif case == "expired":
        fake_clock.advance(60)
    elif case == "revoked":
        assert auth_server.revoke(token)
    elif case == "revoke_all":
        auth_server.revoke_all()
    else:
        auth_server.always_401 = True
    response = http.post(auth_server.resource_url, data=b"abc", headers=headers)
    assert response.status_code == 401
    if description is None:
        assert response.headers["WWW-Authenticate"] == REALM
    else:
        expected = f'{REALM}, error="invalid_token", error_description="{description}"'
        assert response.headers["WWW-Authenticate"] == expected
        assert response.json() == {"error": "invalid_token"}
    assert (auth_server.resource_requests, auth_server.resource_401s) == (1, 1)


def test_revoke_all_keeps_refresh_tokens(auth_server: AuthServer, http: requests.Session) -> None:
    first = password_grant(http, auth_server).json()
    auth_server.revoke_all()
    assert (
        http.get(auth_server.resource_url, headers=bearer(first["access_token"])).status_code == 401
    )
    renewed = refresh(http, auth_server, first["refresh_token"]).json()
    assert http.get(auth_server.resource_url, headers=bearer(renewed["access_token"])).ok
    assert auth_server.revoke("never-issued") is False


def test_insufficient_scope(auth_server: AuthServer, http: requests.Session) -> None:
    headers = bearer(auth_server.issue_token(scopes=("read",))["access_token"])
    assert http.get(auth_server.resource_url + "/scope/read", headers=headers).ok
    forbidden = http.get(auth_server.resource_url + "/scope/write", headers=headers)
    assert forbidden.status_code == 403
    challenge = 'Bearer error="insufficient_scope", scope="write"'
    assert forbidden.headers["WWW-Authenticate"] == challenge
    auth_server.insufficient_scope_status = 401
    unauthorized = http.get(auth_server.resource_url + "/scope/write", headers=headers)
    assert unauthorized.status_code == 401
    assert unauthorized.headers["WWW-Authenticate"] == challenge
    assert (auth_server.resource_requests, auth_server.resource_401s) == (3, 1)


def test_redirect_to_another_origin(
    auth_server: AuthServer,
    auth_server_factory: Callable[..., AuthServer],
    http: requests.Session,
) -> None:
    other = auth_server_factory()
    token = auth_server.issue_token()["access_token"]
    url = f"{auth_server.url}/redirect?to={quote(other.resource_url, safe='')}"
    response = http.get(url + "&status=307", headers=bearer(token), allow_redirects=False)
    assert response.status_code == 307
    assert response.headers["Location"] == other.resource_url
    followed = http.get(url, headers=bearer(token))  # 302, followed
    assert followed.status_code == 401  # requests dropped the token on the way
    assert other.seen == [SeenRequest("GET", "/resource", None, 0)]
    assert auth_server.seen[-1].authorization == f"Bearer {token}"
    assert http.get(f"{auth_server.url}/redirect?to=x&status=200").status_code == 400


def test_every_request_is_seen(auth_server: AuthServer, http: requests.Session) -> None:
    assert http.get(auth_server.url + "/nowhere").status_code == 404
    head = http.head(auth_server.resource_url)
    assert (head.status_code, head.content) == (401, b"")
    client_credentials(http, auth_server)
    seen = auth_server.seen
    assert [(s.method, s.path, s.body_length) for s in seen] == [
        ("GET", "/nowhere", 0),
        ("HEAD", "/resource", 0),
        ("POST", "/token", len("grant_type=client_credentials")),
    ]
    assert seen[-1].authorization == "Basic " + base64.b64encode(b"svc:svc-secret").decode()
    with pytest.raises(dataclasses.FrozenInstanceError):
        seen[0].path = "/elsewhere"  # type: ignore[misc]
    auth_server.reset_counters()
    assert (auth_server.token_requests, auth_server.resource_requests) == (0, 0)
    assert (auth_server.token_requests_by_grant, auth_server.resource_401s) == ({}, 0)
    assert len(auth_server.seen) == 3
    auth_server.clear_seen()
    assert auth_server.seen == []


# -- gating, latency and faults ---------------------------------------------------------


def _fetch_in_threads(server: AuthServer, n: int) -> tuple[list[threading.Thread], list[Any]]:
    outcomes: list[Any] = []

    def fetch() -> None:
        with new_session() as session:
            try:
                outcomes.append(client_credentials(session, server).status_code)
            except requests.RequestException as exc:
                outcomes.append(exc)

    threads = [threading.Thread(target=fetch, daemon=True) for _ in range(n)]
    for thread in threads:
        thread.start()
    return threads, outcomes


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_hold_until_released(auth_server: AuthServer) -> None:
    auth_server.hold_token_endpoint()
    threads, outcomes = _fetch_in_threads(auth_server, 6)
    assert auth_server.wait_for_token_requests(6, timeout=10)
    assert outcomes == []  # all six arrived and none was answered
    assert not auth_server.wait_for_token_requests(7, timeout=0.05)
    auth_server.release_token_endpoint()
    _join(threads)
    assert outcomes == [200] * 6
    assert auth_server.token_requests == 6
    assert auth_server.token_requests_by_grant == {"client_credentials": 6}


@pytest.mark.parametrize("stall", ["hold", "slow", "latency"])
def test_close_ends_stalled_token_requests(
    auth_server_factory: Callable[..., AuthServer], stall: str
) -> None:
    server = auth_server_factory(slow_seconds=60)
    if stall == "hold":
        server.hold_token_endpoint()
    elif stall == "slow":
        server.set_token_fault("slow")
    else:
        server.token_latency_seconds = 60
    threads, outcomes = _fetch_in_threads(server, 2)
    assert server.wait_for_token_requests(2, timeout=10)
    server.close()
    _join(threads)
    assert len(outcomes) == 2


def test_latency_and_slow_delay_answers(auth_server: AuthServer, http: requests.Session) -> None:
    auth_server.token_latency_seconds = 0.2
    started = time.monotonic()
    assert client_credentials(http, auth_server).status_code == 200
    assert time.monotonic() - started >= 0.2
    auth_server.token_latency_seconds = 0
    auth_server.slow_seconds = 0.2
    auth_server.set_token_fault("slow", count=1)
    started = time.monotonic()
    assert client_credentials(http, auth_server).status_code == 200
    assert time.monotonic() - started >= 0.2
    assert auth_server.token_requests == 2


STATUS_FAULTS = ["500", "503", "429"]
ERROR_FAULTS = [("invalid_grant", 400), ("invalid_client", 401)]
SHAPE_FAULTS = [
    ("no_access_token", lambda token: "access_token" not in token),
    ("wrong_token_type", lambda token: token["token_type"] == "mac"),
    ("negative_expires_in", lambda token: token["expires_in"] == -5),
    ("string_expires_in", lambda token: token["expires_in"] == "soon"),
]


def test_every_fault_kind_is_tested() -> None:
    tested = {"slow", "drop", "non_json", *STATUS_FAULTS}  # slow: test_latency_and_slow_...
    tested |= {"drip", "huge_body", "endless_body", "raw"}  # tests/test_hostile_endpoints.py
    assert tested | {kind for kind, _ in ERROR_FAULTS + SHAPE_FAULTS} == TOKEN_FAULTS


@pytest.mark.parametrize("kind", STATUS_FAULTS)
def test_fault_statuses_for_count_requests(
    auth_server: AuthServer, http: requests.Session, kind: str
) -> None:
    auth_server.set_token_fault(kind, count=2, retry_after=7)
    for _ in range(2):
        response = client_credentials(http, auth_server)
        assert response.status_code == int(kind)
        assert response.headers.get("Retry-After") == (None if kind == "500" else "7")
    assert client_credentials(http, auth_server).status_code == 200
    assert auth_server.token_requests == 3
    assert auth_server.token_requests_by_grant == {"client_credentials": 3}
    assert auth_server.token_errors == {}


def test_fault_until_cleared(auth_server: AuthServer, http: requests.Session) -> None:
    auth_server.set_token_fault("503")
    assert [client_credentials(http, auth_server).status_code for _ in range(3)] == [503] * 3
    assert "Retry-After" not in client_credentials(http, auth_server).headers
    auth_server.clear_token_fault()
    assert client_credentials(http, auth_server).status_code == 200
    assert auth_server.token_requests == 5
    with pytest.raises(ValueError, match="bad fault"):
        auth_server.set_token_fault("teapot")
    with pytest.raises(ValueError, match="bad fault"):
        auth_server.set_token_fault("500", count=0)


def test_fault_drop_and_non_json(auth_server: AuthServer, http: requests.Session) -> None:
    auth_server.set_token_fault("drop", count=1)
    with pytest.raises(requests.ConnectionError):
        client_credentials(http, auth_server)
    assert client_credentials(http, auth_server).status_code == 200
    auth_server.set_token_fault("non_json", count=1)
    response = client_credentials(http, auth_server)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html"
    with pytest.raises(ValueError):  # noqa: PT011
        response.json()
    assert auth_server.token_requests == 3
    assert auth_server.seen[0].body_length == len("grant_type=client_credentials")


@pytest.mark.parametrize(("kind", "check"), SHAPE_FAULTS)
def test_fault_reshapes_token_responses(
    auth_server: AuthServer, http: requests.Session, kind: str, check: Callable[[Any], bool]
) -> None:
    auth_server.set_token_fault(kind, count=1)
    response = client_credentials(http, auth_server)
    assert response.status_code == 200
    assert check(response.json())
    assert client_credentials(http, auth_server).json()["token_type"] == "Bearer"
    assert auth_server.token_requests == 2
    assert auth_server.token_errors == {}


@pytest.mark.parametrize(("kind", "status"), ERROR_FAULTS)
def test_fault_oauth_errors(
    auth_server: AuthServer, http: requests.Session, kind: str, status: int
) -> None:
    auth_server.set_token_fault(kind, count=1)
    response = password_grant(http, auth_server)
    assert response.status_code == status
    assert response.json()["error"] == kind
    assert password_grant(http, auth_server).status_code == 200
    assert auth_server.token_errors == {kind: 1}
    assert auth_server.token_requests_by_grant == {"password": 2}


# -- lifecycle ------------------------------------------------------------------------------


def test_lifecycle(http: requests.Session) -> None:
    clock = FakeClock()
    with AuthServer(clock=clock) as server:
        assert server.url == f"http://127.0.0.1:{server.server_port}"
        assert server.token_url == server.url + "/token"
        assert server.resource_url == server.url + "/resource"
        assert client_credentials(http, server).status_code == 200
    with pytest.raises(requests.ConnectionError):
        client_credentials(http, server)
    server.close()  # idempotent
    with pytest.raises(RuntimeError):
        server.start()


def test_starts_without_pytest() -> None:
    code = (
        "import json, sys, urllib.request\n"
        "from requests_tokenauth.testing import AuthServer\n"
        "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
        "with AuthServer() as server:\n"
        "    req = urllib.request.Request(server.token_url, data=b'grant_type=client_credentials',"
        " headers={'Authorization': 'Basic c3ZjOnN2Yy1zZWNyZXQ='})\n"
        "    print(json.load(opener.open(req, timeout=10))['token_type'])\n"
        "print('pytest' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Bearer", "False"]
    assert result.stderr == ""

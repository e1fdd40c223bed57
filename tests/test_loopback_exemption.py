"""What the loopback exemption (plain http without ``allow_insecure_http``) covers: only
``localhost`` and numeric loopback addresses, and never a proxy in between. A real recording
proxy on loopback, set through the environment, shows that nothing carrying a secret
reaches it: not the token request (client secret), the revocation request, or a resource
request (bearer token) through ``session.auth``, ``TokenAdapter`` or a wrapped adapter."""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from requests_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    OriginNotAllowedError,
    TokenAdapter,
    TokenAuth,
    wrap_adapter,
)
from requests_tokenauth._grants import is_loopback
from requests_tokenauth._origins import parse_origins
from requests_tokenauth.testing import AuthServer, FakeClock

from .helpers import EXACT

SECRET = "svc-secret"

_BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class RecordingProxy(socketserver.ThreadingTCPServer):
    """An HTTP proxy on 127.0.0.1 that forwards nothing: it records every byte a client
    sends it and answers 502."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[bytes] = []
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def everything(self) -> bytes:
        with self.lock:
            return b"".join(self.received)


class _ProxyHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: RecordingProxy = self.server  # type: ignore[assignment]
        conn: socket.socket = self.request
        conn.settimeout(5.0)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
                data += chunk
        except OSError:
            pass
        with server.lock:
            server.received.append(data)
        with contextlib.suppress(OSError):
            conn.sendall(_BAD_GATEWAY)


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProxy]:
    """The recording proxy, named in ``HTTP_PROXY``, with no ``NO_PROXY`` at all."""
    with proxy_in_environment(monkeypatch) as server:
        yield server


@contextlib.contextmanager
def proxy_in_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProxy]:
    """A running recording proxy named in ``HTTP_PROXY``, with no ``NO_PROXY``; shut
    down on leaving."""
    server = RecordingProxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_recording_proxy_sees_what_an_ordinary_request_sends(
    proxy: RecordingProxy, auth_server: AuthServer
) -> None:
    """The fixture works: without this library, requests does send loopback traffic to the
    environment's proxy."""
    response = requests.get(auth_server.resource_url, headers={"X-Probe": "p"}, timeout=10)
    assert response.status_code == 502
    assert b"X-Probe: p" in proxy.everything()


def grant_for(server: AuthServer, **kwargs: Any) -> ClientCredentials:
    return ClientCredentials(
        server.token_url,
        client_id="svc",
        client_secret=SECRET,
        revocation_url=server.url + "/revoke",
        **kwargs,
    )


@pytest.mark.parametrize("via", ["environment", "session proxies", "ALL_PROXY"])
def test_token_and_revocation_requests_to_loopback_bypass_every_proxy(
    proxy: RecordingProxy,
    auth_server: AuthServer,
    fake_clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    via: str,
) -> None:
    session = None
    if via == "session proxies":
        monkeypatch.delenv("HTTP_PROXY")
        session = requests.Session()
        session.proxies = {"http": proxy.url}
    elif via == "ALL_PROXY":
        monkeypatch.delenv("HTTP_PROXY")
        monkeypatch.setenv("ALL_PROXY", proxy.url)
    auth = TokenAuth(grant_for(auth_server, session=session), clock=fake_clock, policy=EXACT)
    auth.get_token()
    assert auth.revoke()
    assert proxy.everything() == b""  # not a byte, so no Basic credentials either
    assert auth_server.token_requests == 1 and auth_server.revocation_requests == 1


def test_token_auth_refuses_a_loopback_request_the_environment_would_proxy(
    proxy: RecordingProxy, auth_server: AuthServer, fake_clock: FakeClock
) -> None:
    token = auth_server.issue_token()
    auth = TokenAuth(grant_for(auth_server), token=token, clock=fake_clock, policy=EXACT)
    session = requests.Session()
    session.auth = auth
    with pytest.raises(OriginNotAllowedError, match="NO_PROXY") as caught:
        session.get(auth_server.resource_url, timeout=10)
    assert_says_what_to_do(str(caught.value))
    assert proxy.url not in str(caught.value)  # a proxy URL may carry credentials
    assert proxy.everything() == b""
    assert token["access_token"].encode() not in proxy.everything()
    assert auth_server.resource_requests == 0


def assert_says_what_to_do(message: str) -> None:
    """The refusal names both ways out: the exact NO_PROXY entry, and the adapters."""
    assert "NO_PROXY=127.0.0.1" in message
    assert "TokenAdapter" in message and "authorize_session" in message


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m requests_tokenauth ...`` in this process's environment (the proxy
    fixture's ``HTTP_PROXY``, no ``NO_PROXY``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENAUTH_")}
    env.update(PYTHONWARNINGS="ignore", TOKENAUTH_CLIENT_SECRET=SECRET)
    return subprocess.run(
        [sys.executable, "-m", "requests_tokenauth", *args],
        capture_output=True,
        env=env,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_demo_runs_under_an_environment_proxy(proxy: RecordingProxy) -> None:
    """README's first command works on a machine with HTTP_PROXY set and no NO_PROXY, and
    sends nothing to the proxy (its server is plain http on loopback)."""
    result = run_cli("demo", "--seconds", "2", "--threads", "2", "--lifetime", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: every request succeeded" in result.stdout
    assert "requests failed          0" in result.stdout
    assert proxy.everything() == b""


def test_the_request_command_under_an_environment_proxy_says_what_to_do(
    proxy: RecordingProxy, auth_server: AuthServer
) -> None:
    """The command's session trusts the environment, so the request really would go through
    the proxy: it is refused before anything is sent, with a message that says what to do."""
    token_options = ("--token-url", auth_server.token_url, "--client-id", "svc")
    result = run_cli("request", "GET", auth_server.resource_url, *token_options)
    assert result.returncode != 0
    assert result.stderr.startswith("tokenauth: error: http://127.0.0.1:")
    assert_says_what_to_do(result.stderr)
    assert proxy.everything() == b""
    assert auth_server.resource_requests == 0


def test_token_auth_with_the_host_in_no_proxy_sends_directly(
    proxy: RecordingProxy,
    auth_server: AuthServer,
    fake_clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    auth = TokenAuth(grant_for(auth_server), clock=fake_clock, policy=EXACT)
    for _ in range(2):  # the second request takes the fast path (checked once per origin)
        assert requests.get(auth_server.resource_url, auth=auth, timeout=10).status_code == 200
    assert proxy.everything() == b""
    assert auth_server.resource_requests == 2


@pytest.mark.parametrize("mount", ["TokenAdapter", "wrap_adapter"])
def test_adapters_send_loopback_requests_without_the_proxy(
    proxy: RecordingProxy, auth_server: AuthServer, fake_clock: FakeClock, mount: str
) -> None:
    token = auth_server.issue_token()
    auth = TokenAuth(grant_for(auth_server), token=token, clock=fake_clock, policy=EXACT)
    session = requests.Session()
    adapter = TokenAdapter(auth) if mount == "TokenAdapter" else wrap_adapter(HTTPAdapter(), auth)
    session.mount(auth_server.url + "/", adapter)
    response = session.get(auth_server.resource_url, timeout=10)
    assert response.status_code == 200, response.text
    assert proxy.everything() == b""
    assert auth_server.resource_requests == 1


def test_with_allow_insecure_http_the_proxy_settings_apply(
    proxy: RecordingProxy, auth_server: AuthServer, fake_clock: FakeClock
) -> None:
    """The bypass belongs to the loopback exemption; with the opt-in, plain http is the
    caller's choice, proxies included."""
    token = auth_server.issue_token()
    auth = TokenAuth(
        grant_for(auth_server), token=token, clock=fake_clock, allow_insecure_http=True
    )
    assert requests.get(auth_server.resource_url, auth=auth, timeout=10).status_code == 502
    assert b"Authorization: Bearer" in proxy.everything()


# -- what counts as loopback ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("[::1]", True),
        ("::1", True),
        ("api.localhost", False),
        ("evil.example.localhost", False),
        ("localhost.example.com", False),
        ("10.0.0.1", False),
        ("", False),
        (None, False),
    ],
)
def test_only_localhost_and_numeric_loopback_are_loopback(host: Any, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_localhost_subdomain_gets_no_plain_http_exemption(fake_clock: FakeClock) -> None:
    with pytest.raises(ConfigurationError, match="allow_insecure_http"):
        ClientCredentials("http://idp.localhost/token", client_id="svc", client_secret=SECRET)
    with pytest.raises(ConfigurationError, match="allow_insecure_http"):
        parse_origins(["http://api.localhost:8080"], allow_insecure_http=False)
    grant = ClientCredentials("https://idp.example/token", client_id="svc", client_secret=SECRET)
    auth = TokenAuth(grant, clock=fake_clock)
    request = requests.Request("GET", "http://api.localhost:8080/x").prepare()
    with pytest.raises(OriginNotAllowedError, match="allow_insecure_http"):
        auth(request)
    assert "Authorization" not in request.headers


def test_an_unpickled_token_auth_checks_its_loopback_origins_again(
    proxy: RecordingProxy, auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    auth = TokenAuth(grant_for(auth_server))  # the system clock: a FakeClock has a lock
    assert requests.get(auth_server.resource_url, auth=auth, timeout=10).status_code == 200
    copy = pickle.loads(pickle.dumps(auth))  # e.g. sent to a worker with other settings
    monkeypatch.delenv("NO_PROXY")
    with pytest.raises(OriginNotAllowedError, match="NO_PROXY"):
        requests.get(auth_server.resource_url, auth=copy, timeout=10)
    assert proxy.everything() == b""

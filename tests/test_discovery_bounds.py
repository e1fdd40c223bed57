"""Discovery trusts only what it fetched itself: a document fetched under a caller's own
session is never cached for others, and the read is bounded (size per document, one
deadline for the whole discovery)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from requests_tokenauth import ClientCredentials, ConfigurationError
from requests_tokenauth._grants._discovery import (
    DEFAULT_METADATA_LIMIT_BYTES,
    clear_cache,
    discover,
)
from requests_tokenauth.testing import AuthServer, FakeClock


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


class ForgingAdapter(HTTPAdapter):
    """What a caller's session with ``verify=False`` may get from a man in the middle: a
    metadata document for the right issuer that names another token endpoint."""

    def __init__(self, issuer: str) -> None:
        super().__init__()
        self.issuer = issuer

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response.url = request.url or ""
        response.request = request
        body = {"issuer": self.issuer, "token_endpoint": "https://evil.example/token"}
        import io

        response.raw = io.BytesIO(json.dumps(body).encode())
        response.headers["Content-Type"] = "application/json"
        return response


def test_a_document_fetched_with_a_callers_session_is_not_trusted_by_later_callers(
    auth_server: AuthServer,
) -> None:
    lax = requests.Session()
    lax.mount(auth_server.url + "/", ForgingAdapter(auth_server.issuer))
    forged = ClientCredentials.from_issuer(
        auth_server.issuer, client_id="svc", client_secret="svc-secret", session=lax
    )
    assert forged.token_url == "https://evil.example/token"  # that caller's own choice
    default = ClientCredentials.from_issuer(
        auth_server.issuer, client_id="svc", client_secret="svc-secret"
    )
    assert default.token_url == auth_server.token_url
    assert auth_server.metadata_requests == 1


def test_a_callers_session_does_not_get_the_default_sessions_document_either(
    auth_server: AuthServer,
) -> None:
    ClientCredentials.from_issuer(auth_server.issuer, client_id="svc", client_secret="s")
    session = requests.Session()
    session.trust_env = False
    again = ClientCredentials.from_issuer(
        auth_server.issuer, client_id="svc", client_secret="s", session=session
    )
    assert again.token_url == auth_server.token_url
    assert auth_server.metadata_requests == 2  # fetched under that session's own trust
    ClientCredentials.from_issuer(auth_server.issuer, client_id="svc", client_secret="s")
    assert auth_server.metadata_requests == 2  # the default fetch is cached


# -- a bounded read --------------------------------------------------------------------------


class MetadataServer(ThreadingHTTPServer):
    """Serves one metadata document in a chosen shape: ``"huge"`` (declared length over
    the limit), ``"huge-undeclared"`` (no Content-Length, read until the connection
    closes) or ``"endless"`` (bytes until the client goes away)."""

    daemon_threads = True

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.stop = threading.Event()
        super().__init__(("127.0.0.1", 0), _MetadataHandler)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _MetadataHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        server: MetadataServer = self.server  # type: ignore[assignment]
        padding = "x" * (DEFAULT_METADATA_LIMIT_BYTES + 1)
        document = json.dumps(
            {
                "issuer": server.issuer,
                "token_endpoint": server.issuer + "/token",
                "padding": padding,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if server.mode == "huge":
            self.send_header("Content-Length", str(len(document)))
        self.end_headers()
        if server.mode in ("huge", "huge-undeclared"):
            self.wfile.write(document)
            return
        self.wfile.write(b'{"issuer": "' + server.issuer.encode() + b'", "padding": "')
        sent = 0
        try:
            while not server.stop.is_set() and sent < 50_000_000:  # a safety net only
                self.wfile.write(b"x" * 1024)
                sent += 1024
        except OSError:
            pass  # the client went away: what it should do


@pytest.fixture
def metadata_server(request: pytest.FixtureRequest) -> Iterator[MetadataServer]:
    server = MetadataServer(request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize("metadata_server", ["huge", "huge-undeclared"], indirect=True)
def test_a_document_over_the_size_limit_is_refused(metadata_server: MetadataServer) -> None:
    with pytest.raises(ConfigurationError, match="larger than") as caught:
        ClientCredentials.from_issuer(
            metadata_server.issuer, client_id="svc", client_secret="svc-secret"
        )
    assert "no authorization server metadata" in str(caught.value)


class TickingClock(FakeClock):
    """Each monotonic reading is one second after the last: time passes with every read,
    as it does while a server trickles bytes, without waiting for it."""

    def monotonic(self) -> float:
        self.advance(1.0)
        return super().monotonic()


@pytest.mark.parametrize("metadata_server", ["endless"], indirect=True)
def test_discovery_gives_up_at_its_deadline(metadata_server: MetadataServer) -> None:
    with pytest.raises(ConfigurationError, match="longer than 20s"):
        discover(
            metadata_server.issuer,
            clock=TickingClock(),
            deadline_seconds=20.0,
            limit_bytes=10**9,  # only the deadline can stop it
        )

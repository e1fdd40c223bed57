"""The HTTP request handler of the test server: token endpoint, resource and redirects.

HTTP plumbing: it imports only the state and the hostile senders below it; the token
endpoint, the DPoP checks and the extra endpoints above it are reached through
:class:`HandlerServer`, the protocol its server satisfies."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from email.message import Message
from hashlib import sha256
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Optional, Protocol, Union, cast
from urllib.parse import parse_qs, urlsplit

from ._hostile import RAW_FAULT, STREAM_FAULTS, HostileServer, send_hostile, send_raw
from ._state import Fault, Grant, SeenRequest

# Faults that rewrite an otherwise successful token response.
SHAPE_FAULTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "no_access_token": lambda token: token.pop("access_token", None),
    "wrong_token_type": lambda token: token.update(token_type="mac"),
    "negative_expires_in": lambda token: token.update(expires_in=-5),
    "string_expires_in": lambda token: token.update(expires_in="soon"),
}

#: The fault kinds :meth:`AuthServer.set_token_fault` accepts.
TOKEN_FAULTS = frozenset(
    {"500", "503", "429", "slow", "drop", "non_json", "invalid_grant", "invalid_client"}
    | set(SHAPE_FAULTS)
    | STREAM_FAULTS
    | {RAW_FAULT}
)

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def _seconds_text(value: Union[float, str]) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class DPoPChecks(Protocol):
    """What the handler asks of the server's DPoP checker (:class:`._dpop.DPoPVerifier`)."""

    def check_token_request(
        self, headers: Message, url: str
    ) -> tuple[Optional[str], Optional[tuple[int, dict[str, str], dict[str, str]]]]: ...

    def bind(self, response_text: str, jkt: str) -> str: ...

    def check_resource(
        self, method: str, url: str, headers: Message, path: str
    ) -> tuple[Optional[Grant], int, str, dict[str, str]]: ...


class HandlerServer(HostileServer, Protocol):
    """What the handler uses of its server (an
    :class:`~requests_tokenauth.testing.AuthServer`): the knobs it reads, the recording and
    counting it reports to, and the layers above it (token endpoint, DPoP checks, the
    extra endpoints), reached through the server so that nothing here imports them."""

    @property
    def _released(self) -> threading.Event: ...

    @property
    def token_latency_seconds(self) -> float: ...

    @property
    def slow_seconds(self) -> float: ...

    @property
    def bind_dpop_tokens(self) -> bool: ...

    @property
    def token_type(self) -> Optional[str]: ...

    @property
    def unauthorized_cookie(self) -> Optional[str]: ...

    @property
    def dpop(self) -> DPoPChecks: ...

    def _record(self, seen: SeenRequest) -> None: ...

    def _token_arrived(self, grant_type: str) -> Optional[Fault]: ...

    def _count_token_error(self, error: str) -> None: ...

    def _count_resource(self, status: int) -> None: ...

    def _take_resource_fault(self) -> Optional[int]: ...

    def _token_response(
        self, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[dict[str, str], str, int]: ...

    def _serve_extra_route(self, handler: Handler, path: str, body: bytes) -> bool: ...


class Handler(BaseHTTPRequestHandler):
    """One keep-alive connection to an :class:`AuthServer`."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "requests-tokenauth-testing"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    @property
    def _srv(self) -> HandlerServer:
        return cast(HandlerServer, self.server)

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(400, b"malformed request body", "text/plain")
            return
        srv = self._srv
        srv._record(SeenRequest(self.command, self.path, self.headers["Authorization"], len(body)))
        path = urlsplit(self.path).path
        try:
            if path == "/token" and self.command == "POST":
                self._token(body)
            elif path == "/token":
                self._send_json(405, {"error": "invalid_request"}, {"Allow": "POST"})
            elif path == "/resource" or path.startswith("/resource/"):
                self._resource(path, body)
            elif path == "/redirect":
                self._redirect()
            elif srv._serve_extra_route(self, path, body):
                pass  # authorization, device authorization, revocation, metadata
            else:
                self._send_json(404, {"error": "not_found"})
        except OSError:
            raise  # the connection broke; the server ends it quietly
        except Exception as exc:  # a bug in the server: make it visible to the test
            self._send_json(500, {"error": "server_error", "error_description": repr(exc)})

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def _read_body(self) -> bytes:
        """Read the whole request body, de-chunking it if needed.

        :raises ValueError: when the body is malformed or cut short.
        """
        if "chunked" in (self.headers["Transfer-Encoding"] or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                if not line.endswith(b"\n"):
                    raise ValueError("truncated chunk size line")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    break
                data = self.rfile.read(size + 2)
                if len(data) != size + 2 or data[-2:] != b"\r\n":
                    raise ValueError("truncated chunk")
                chunks.append(data[:size])
            while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailer fields
            return b"".join(chunks)
        length = int(self.headers["Content-Length"] or 0)
        data = self.rfile.read(length) if length > 0 else b""
        if len(data) != max(length, 0):
            raise ValueError("body shorter than Content-Length")
        return data

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": content_type, **(headers or {})}.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(
        self, status: int, payload: object, headers: Optional[Mapping[str, str]] = None
    ) -> None:
        self._send(status, json.dumps(payload).encode(), headers=headers)

    def _token(self, body: bytes) -> None:
        srv = self._srv
        grant_type = parse_qs(body.decode("latin-1")).get("grant_type", [""])[0]
        fault = srv._token_arrived(grant_type)
        srv._released.wait()
        if srv.token_latency_seconds > 0:
            srv._closing.wait(srv.token_latency_seconds)
        kind = fault.kind if fault else ""
        if kind == "drop":
            self.close_connection = True
            return
        if kind == RAW_FAULT:
            send_raw(self)
            return
        if kind == "slow":
            srv._closing.wait(srv.slow_seconds)
        if kind in ("500", "503", "429"):
            retry = fault.retry_after if fault and kind != "500" else None
            headers = {} if retry is None else {"Retry-After": _seconds_text(retry)}
            self._send(int(kind), f"injected {kind}".encode(), "text/plain", headers)
        elif kind == "non_json":
            self._send(200, b"<html><body>not a token</body></html>", "text/html")
        elif kind in ("invalid_grant", "invalid_client"):
            srv._count_token_error(kind)
            headers = {"Cache-Control": "no-store"}
            if kind == "invalid_client":
                headers["WWW-Authenticate"] = 'Basic realm="testing"'
            payload = {"error": kind, "error_description": "injected fault"}
            self._send_json(400 if kind == "invalid_grant" else 401, payload, headers)
        else:
            jkt, rejected = srv.dpop.check_token_request(self.headers, self._target_url())
            if rejected is not None:
                srv._count_token_error(rejected[1]["error"])
                self._send_json(*rejected)
                return
            headers, text, status = srv._token_response(self.path, body, dict(self.headers))
            if status == 200 and jkt is not None and srv.bind_dpop_tokens:
                text = srv.dpop.bind(text, jkt)
            if status == 200 and kind in SHAPE_FAULTS:
                token = json.loads(text)
                SHAPE_FAULTS[kind](token)
                text = json.dumps(token)
            if status == 200 and srv.token_type is not None:  # a provider that names it oddly
                text = json.dumps({**json.loads(text), "token_type": srv.token_type})
            if kind in STREAM_FAULTS:
                send_hostile(self, kind, status, text)
                return
            self._send(status, text.encode(), headers=headers)

    def _target_url(self) -> str:
        """The URL the client addressed, without query (what a DPoP proof's htu names)."""
        return f"http://{self.headers['Host']}{urlsplit(self.path).path}"

    def _resource(self, path: str, body: bytes) -> None:
        srv = self._srv
        fault = srv._take_resource_fault()
        if fault is not None:
            srv._count_resource(fault)
            self._send(fault, f"injected {fault}".encode(), "text/plain")
            return
        grant, status, challenge, extra = srv.dpop.check_resource(
            self.command, self._target_url(), self.headers, path
        )
        srv._count_resource(status)
        if grant is None:
            error = challenge.partition('error="')[2].partition('"')[0] or "unauthorized"
            if challenge:
                extra = {"WWW-Authenticate": challenge, **extra}
            if status == 401 and srv.unauthorized_cookie is not None:
                extra = {"Set-Cookie": srv.unauthorized_cookie, **extra}
            self._send_json(status, {"error": error}, extra)
            return
        if path == "/resource/redirect":  # a protected redirect: /resource/redirect?to=URL
            self._redirect()
            return
        payload = {
            "client_id": grant.client_id,
            "user": grant.user,
            "scope": " ".join(grant.scopes),
            "method": self.command,
            "path": self.path,
            "body_length": len(body),
            "body_sha256": sha256(body).hexdigest(),
        }
        if self.headers["Cookie"] is not None:
            payload["cookie"] = self.headers["Cookie"]
        self._send_json(200, payload)

    def _redirect(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        target, status_text = query.get("to", [""])[0], query.get("status", ["302"])[0]
        status = int(status_text) if status_text.isdigit() else 0
        if not target or status not in _REDIRECT_STATUSES:
            self._send_json(400, {"error": "bad_redirect"})
        else:
            self._send(status, b"", "text/plain", {"Location": target})

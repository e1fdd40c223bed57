"""A small loopback API in the shapes third-party clients expect (GitLab, Jira, a plain JSON
API) that checks each request's bearer token with the testing server: it forwards the
``Authorization`` header to the server's protected resource and answers with the server's
verdict (401 with its challenge, the 403 mode's bare 403) when the token is refused."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, cast

import requests

from requests_tokenauth.testing import AuthServer


class FakeAPI(ThreadingHTTPServer):
    """The API on ``127.0.0.1``; use as a context manager. ``calls`` lists
    ``(method, path, status, body_length)`` in arrival order."""

    daemon_threads = True

    def __init__(self, auth_server: AuthServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.auth_server = auth_server
        self.calls: list[tuple[str, str, int, int]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> FakeAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def check(self, authorization: Optional[str]) -> requests.Response:
        """The testing server's verdict on ``authorization`` (its resource's answer)."""
        with requests.Session() as checker:
            checker.trust_env = False
            headers = {"Authorization": authorization} if authorization else {}
            return checker.get(self.auth_server.resource_url, headers=headers, timeout=10)

    def record(self, call: tuple[str, str, int, int]) -> None:
        with self._lock:
            self.calls.append(call)


_UPLOAD = re.compile(r"^/api/v4/projects/(\d+)/uploads$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def _dispatch(self) -> None:
        api = cast("FakeAPI", self.server)
        body = self._read_body()
        verdict = api.check(self.headers["Authorization"])
        path = self.path.split("?", 1)[0]
        if verdict.status_code != 200:
            headers = {}
            if "WWW-Authenticate" in verdict.headers:
                headers["WWW-Authenticate"] = verdict.headers["WWW-Authenticate"]
            status = verdict.status_code
            payload: Any = {"message": f"{status} Unauthorized"}
        else:
            headers, status = {}, 200
            payload = self._route(path, body, verdict.json())
            if payload is None:
                status, payload = 404, {"message": "404 Not Found"}
        api.record((self.command, path, status, len(body)))
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    def _route(self, path: str, body: bytes, who: dict[str, Any]) -> Any:
        user = who.get("user") or who.get("client_id")
        if path == "/api/v4/user":  # GitLab
            return {"id": 1, "username": user}
        upload = _UPLOAD.match(path)
        if upload and self.command == "POST":
            if b'filename="notes.txt"' not in body:
                return {"message": "400 no file"}
            return {
                "alt": "notes.txt",
                "url": "/uploads/0123/notes.txt",
                "full_path": f"/-/project/{upload.group(1)}/uploads/0123/notes.txt",
                "markdown": "[notes.txt](/uploads/0123/notes.txt)",
            }
        if path == "/rest/api/2/myself":  # Jira
            return {"name": user, "key": user, "active": True}
        if path.startswith("/api/items/"):  # a plain JSON API
            return {"item": path.rsplit("/", 1)[1], "client_id": who.get("client_id")}
        return None

    def _read_body(self) -> bytes:
        length = self.headers["Content-Length"]
        if length is not None:
            return self.rfile.read(int(length))
        if "chunked" not in (self.headers["Transfer-Encoding"] or "").lower():
            return b""
        chunks = []
        while True:
            size = int(self.rfile.readline(65537).split(b";", 1)[0].strip(), 16)
            if size == 0:
                self.rfile.readline(65537)
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(65537)

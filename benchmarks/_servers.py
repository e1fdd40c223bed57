"""The testing server as the benchmarks use it: in this process with token-request arrival
times, or in a child process so that the overhead scenario measures the clients, not a
server competing with them for the interpreter lock."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Optional

import requests

from requests_tokenauth.testing import AuthServer

from ._libraries import APP_ID, APP_SECRET


class TimedAuthServer(AuthServer):
    """An :class:`AuthServer` that also remembers when each token request arrived
    (``time.monotonic()``), for the latency scenario's "around each refresh" windows."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token_arrivals: list[float] = []
        self._arrivals_lock = threading.Lock()

    def _token_arrived(self, grant_type: str) -> Any:
        with self._arrivals_lock:
            self.token_arrivals.append(time.monotonic())
        return super()._token_arrived(grant_type)


def _serve(conn: Any) -> None:
    with AuthServer() as server:
        conn.send(server.url)
        conn.recv()  # anything, or EOF when the parent goes away
    conn.close()


@contextmanager
def server_process() -> Iterator[str]:
    """An :class:`AuthServer` (1 h tokens) in a child process; yields its base URL."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve, args=(child,), daemon=True)
    process.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("the server process did not start within 30 s")
        yield str(parent.recv())
    finally:
        with suppress(OSError):
            parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join(5)


def password_token(base_url: str, lifetime_hint: Optional[int] = None) -> dict[str, Any]:
    """A token (with a refresh token) from a server over HTTP, by the password grant."""
    response = requests.post(
        base_url + "/token",
        data={"grant_type": "password", "username": "alice", "password": "wonderland"},
        auth=(APP_ID, APP_SECRET),
        timeout=10,
    )
    response.raise_for_status()
    token: dict[str, Any] = response.json()
    token["expires_at"] = time.time() + float(token["expires_in"])
    return token

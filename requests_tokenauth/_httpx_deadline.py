"""The sync httpx client's guard on a token request's total deadline: httpx counts its
timeouts per receive, so a server that drips its status line and headers a byte at a time
would hold a request for as many receives as it has bytes. Inside :func:`deadline`, every
connect, receive, send and TLS handshake of a guarded client's connections waits no longer
than the time left. (The async sender runs under :func:`asyncio.wait_for` instead.)"""

from __future__ import annotations

import contextlib
import contextvars
import ssl
import time
from collections.abc import Iterator
from typing import Any, Optional

import httpcore
import httpx

#: The real-time (``time.monotonic``) instant the current thread's token request must be
#: answered by, read by the guarded connections below.
_real_deadline: contextvars.ContextVar[Optional[float]] = contextvars.ContextVar(
    "requests_tokenauth_httpx_deadline", default=None
)


def _within_deadline(timeout: Optional[float]) -> Optional[float]:
    deadline = _real_deadline.get()
    if deadline is None:
        return timeout
    left = max(deadline - time.monotonic(), 0.001)  # past it: the receive times out at once
    return left if timeout is None else min(timeout, left)


class _GuardedStream(httpcore.NetworkStream):
    """A connection whose every receive, send and TLS handshake ends by the deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        return self._stream.read(max_bytes, _within_deadline(timeout))

    def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        self._stream.write(buffer, _within_deadline(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, _within_deadline(timeout))
        return _GuardedStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: Optional[float] = None,
        local_address: Optional[str] = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(
            host, port, _within_deadline(timeout), local_address, socket_options
        )
        return _GuardedStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: Optional[float] = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_unix_socket(path, _within_deadline(timeout), socket_options)
        return _GuardedStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def guard(client: httpx.Client) -> None:
    """Bound the receives of the connections ``client`` makes with httpx's own
    :class:`httpx.HTTPTransport` (its own, from the environment's proxies, or passed in:
    the guard acts only inside :meth:`HttpxSender.send`). Over another kind of transport
    only the body is bounded by the deadline, as over a :class:`requests.Session` passed
    to a grant."""
    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None) if type(transport) is httpx.HTTPTransport else None
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend) and not isinstance(
            backend, _GuardedBackend
        ):
            pool._network_backend = _GuardedBackend(backend)  # type: ignore[union-attr]


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Guard the connections of this thread's requests in the block with ``seconds`` of
    real time; yields the ``time.monotonic()`` instant it ends."""
    ends = time.monotonic() + seconds
    reset = _real_deadline.set(ends)
    try:
        yield ends
    finally:
        _real_deadline.reset(reset)

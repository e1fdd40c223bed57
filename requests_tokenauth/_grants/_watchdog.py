"""The private session's guard on a response's status line and headers: a server that drips
them a byte at a time would hold a token request far past its deadline, because socket
timeouts count per receive. Until the headers are in, a short-lived timer shuts the socket
down when the request's time is up. (After the headers, the body is read in steps that
check the deadline themselves.)"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
from collections.abc import Iterator
from typing import Any, Optional

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Watch:
    """The time left for one request's headers, and whether the timer fired."""

    __slots__ = ("fired", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False


_current: contextvars.ContextVar[Optional[Watch]] = contextvars.ContextVar(
    "requests_tokenauth_watch", default=None
)


@contextlib.contextmanager
def watching(seconds: float) -> Iterator[Watch]:
    """Guard the headers of requests this thread sends in the block (over a session from
    :func:`private_session`) with ``seconds`` of real time."""
    watch = Watch(seconds)
    reset = _current.set(watch)
    try:
        yield watch
    finally:
        _current.reset(reset)


class _HeadersGuard:
    """Mixed into urllib3's connection classes: ``getresponse`` under the current watch."""

    sock: Optional[socket.socket]

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        watch = _current.get()
        if watch is None:
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]
        timer = threading.Timer(watch.seconds, self._time_up, (watch,))
        timer.daemon = True
        timer.start()
        try:
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]
        finally:
            timer.cancel()

    def _time_up(self, watch: Watch) -> None:
        sock = self.sock
        if sock is not None:
            watch.fired = True
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the blocked receive returns at once


class _HTTPConnection(_HeadersGuard, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_HeadersGuard, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def private_session() -> requests.Session:
    """A plain :class:`requests.Session` whose direct connections honour :func:`watching`
    (through a proxy from the environment, only the body is bounded)."""
    session = requests.Session()
    session.mount("https://", _GuardedAdapter())
    session.mount("http://", _GuardedAdapter())
    return session

"""Hostile token-endpoint answers of the test server: a body that drips, a huge or endless
one, and any raw answer a test scripts. Every one is bounded on the server side too.

HTTP plumbing, below the request handler: the senders are typed against
:class:`HostileHandler` and :class:`HostileServer`, which :class:`._handler.Handler` and
:class:`~requests_tokenauth.testing.AuthServer` satisfy."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from io import BufferedIOBase
from typing import TYPE_CHECKING, Optional, Protocol, Union

from .._clock import Clock

#: Fault kinds that rewrite how a (really issued) token response is sent.
STREAM_FAULTS = frozenset({"drip", "huge_body", "endless_body"})

#: The fault kind set by :meth:`HostileKnobs.set_raw_token_response`.
RAW_FAULT = "raw"

#: An endless body stops after this many bytes even if the client keeps reading.
ENDLESS_BODY_LIMIT_BYTES = 64 << 20

_CHUNK_BYTES = 64 * 1024

#: Headers :meth:`HostileKnobs.set_raw_token_response` computes itself.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


class HostileServer(Protocol):
    """What the senders below read of the server."""

    @property
    def _raw_answer(self) -> Optional[tuple[int, dict[str, str], bytes]]: ...

    @property
    def huge_body_bytes(self) -> int: ...

    @property
    def drip_seconds(self) -> float: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def _closing(self) -> threading.Event: ...


class HostileHandler(Protocol):
    """What the senders below use of the request handler."""

    close_connection: bool

    @property
    def wfile(self) -> BufferedIOBase: ...

    @property
    def _srv(self) -> HostileServer: ...

    def send_response(self, code: int, message: Optional[str] = None) -> None: ...

    def send_header(self, keyword: str, value: str) -> None: ...

    def end_headers(self) -> None: ...


class HostileKnobs:
    """Mixed into :class:`AuthServer`: knobs for token endpoints that misbehave on purpose.
    Plain attributes, changeable at any time:

    ``drip_seconds``
        for the ``"drip"`` fault: the token response (status line, headers and body) goes
        out one byte per this many seconds. On a clock with ``advance()`` (a
        :class:`FakeClock`) the server advances the clock by that much per byte instead of
        sleeping, so a test sees a deadline pass at once and deterministically.
    ``huge_body_bytes``
        for the ``"huge_body"`` fault: the token response gets a ``padding`` field this
        long (default 2 MiB), with a ``Content-Length``.

    The ``"endless_body"`` fault sends a chunked body that never ends, until the client
    hangs up (or 64 MiB).
    """

    drip_seconds: float
    huge_body_bytes: int
    _raw_answer: Optional[tuple[int, dict[str, str], bytes]]

    def _init_hostile(self) -> None:
        self.drip_seconds = 1.0
        self.huge_body_bytes = 2 << 20
        self._raw_answer = None

    def set_raw_token_response(
        self,
        status: int,
        body: bytes,
        headers: Optional[Mapping[str, str]] = None,
        *,
        count: Optional[int] = None,
    ) -> None:
        """Make the next ``count`` token requests (all, when ``None``) get exactly this
        answer (counted, nothing issued); ``Content-Length`` is set from ``body``.

        :param status: the HTTP status, 100 to 999.
        :param body: the body bytes.
        :param headers: more header fields (framing fields are ignored).
        """
        if not 100 <= status <= 999:
            raise ValueError(f"bad status {status!r}")
        fields = {k: v for k, v in (headers or {}).items() if k.lower() not in _FRAMING_HEADERS}
        self._raw_answer = (status, fields, bytes(body))
        self.set_token_fault(RAW_FAULT, count=count)

    if TYPE_CHECKING:

        def set_token_fault(  # ._traffic.TrafficControl's
            self,
            kind: str,
            *,
            count: Optional[int] = None,
            retry_after: Optional[Union[float, str]] = None,
        ) -> None: ...


def send_raw(handler: HostileHandler) -> None:
    """The answer :meth:`HostileKnobs.set_raw_token_response` scripted."""
    answer = handler._srv._raw_answer
    status, headers, body = answer if answer is not None else (500, {}, b"no raw answer set")
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def send_hostile(handler: HostileHandler, kind: str, status: int, text: str) -> None:
    """Send the token response ``text`` the way fault ``kind`` says."""
    srv = handler._srv
    if kind == "huge_body" and status == 200:
        token = json.loads(text)
        token["padding"] = "x" * srv.huge_body_bytes
        text = json.dumps(token)
    body = text.encode()
    if kind == "drip":
        head = (
            f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        _drip(handler, head.encode() + body)
        return
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    if kind == "endless_body":
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.close_connection = True
        _send_endless(handler, body[:-1] + b', "padding": "')
        return
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _drip(handler: HostileHandler, data: bytes) -> None:
    """Send ``data`` (status line, headers and body) one byte per ``drip_seconds``."""
    srv = handler._srv
    advance = getattr(srv.clock, "advance", None)
    for i in range(len(data)):
        if srv._closing.is_set():
            return
        handler.wfile.write(data[i : i + 1])
        if advance is not None:
            advance(srv.drip_seconds)
        else:
            srv._closing.wait(srv.drip_seconds)


def _send_endless(handler: HostileHandler, start: bytes) -> None:
    chunk = b"x" * _CHUNK_BYTES
    sent = 0
    data = start
    while sent < ENDLESS_BODY_LIMIT_BYTES and not handler._srv._closing.is_set():
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        sent += len(data)
        data = chunk
    handler.wfile.write(b"0\r\n\r\n")

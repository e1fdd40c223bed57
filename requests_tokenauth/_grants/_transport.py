"""How a grant talks to its authorization server: over the caller's session or a private
one (renewed in a forked child), one POST at a time, its answer read as a stream within a
total deadline and a size cap. A server that drips its answer or sends an endless one holds a
token request (and every caller waiting for it) no longer than the deadline."""

from __future__ import annotations

import math
import os
import socket
import weakref
from collections.abc import Mapping
from typing import Any, Optional

import requests
import urllib3

from .._clock import Clock
from .._errors import (
    ConfigurationError,
    RequestDeadlineError,
    ResponseTooLargeError,
    TokenEndpointError,
)
from .._options import Timeout
from ._client_auth import ClientAuth
from ._urls import direct_proxies
from ._watchdog import private_session, watching
from ._wire import Bounds, OutgoingRequest, current_sender

#: A token request (every attempt, the whole answer read) gives up after this many seconds:
#: the default connect and read timeouts added up, so a lease or a lock sized from it
#: outlasts the longest token request.
DEFAULT_MAX_REQUEST_SECONDS = 35.0

#: Answers longer than this many bytes are refused: a token response is a few kilobytes,
#: and whatever it carries ends up in memory, in ``Token.extra`` and in stores.
DEFAULT_MAX_RESPONSE_BYTES = 1 << 20

#: Read at most this much per step, so the deadline is checked often enough.
_CHUNK_BYTES = 16 * 1024

#: Token requests give up after this many seconds (connect, read): a dead endpoint must not
#: hold every caller's thread.
DEFAULT_TIMEOUT_SECONDS: tuple[float, float] = (5.0, 30.0)



class Transport:
    """The session a grant's requests go through, and their bounds. Thread-safe as far as
    the session is; pickles without the private session's connections.

    :param session: the caller's :class:`requests.Session`, or ``None`` for a private one,
        created on first use and dropped (not closed) in a forked child: sharing the
        parent's keep-alive socket, each process would read the other's answers. A session
        passed in is the caller's to manage across ``fork()``; over it, the deadline bounds
        the body but a server dripping its status line and headers is bounded only by the
        read timeout per receive (the private session bounds those too).
    :param timeout: seconds (or ``(connect, read)``) to wait for a connection or for the
        next bytes of an answer.
    :param max_request_seconds: the total deadline of one request, answer read in full.
    :param max_response_bytes: the size cap of one answer.
    :raises ConfigurationError: a bound that is not a positive finite number.
    """

    def __init__(
        self,
        session: Optional[requests.Session],
        timeout: Timeout,
        max_request_seconds: float,
        max_response_bytes: int,
    ) -> None:
        if not (
            isinstance(max_request_seconds, (int, float))
            and 0 < max_request_seconds < math.inf
            and isinstance(max_response_bytes, int)
            and max_response_bytes > 0
        ):
            raise ConfigurationError(
                "max_request_seconds and max_response_bytes must be positive finite numbers"
            )
        self.timeout = timeout
        self.max_request_seconds = float(max_request_seconds)
        self.max_response_bytes = max_response_bytes
        self._given = session
        self._own: Optional[requests.Session] = None
        _live_transports.add(self)

    def session(self) -> requests.Session:
        """The session to send with."""
        if self._given is not None:
            return self._given
        if self._own is None:
            self._own = private_session()
        return self._own

    def send(
        self, request: OutgoingRequest, clock: Clock, deadline_monotonic: float
    ) -> requests.Response:
        """Send ``request`` within this transport's bounds: with the sender a driver set
        for this context (:func:`._wire.sending_with`), else over :meth:`session` with
        :func:`post_bounded`.

        :raises TokenEndpointError: no complete answer (:class:`RequestDeadlineError`,
            :class:`ResponseTooLargeError` when a bound was hit).
        """
        sender = current_sender()
        if sender is not None:
            timeout = self.timeout
            steps = timeout if isinstance(timeout, tuple) else (timeout, timeout)
            bounds = Bounds(steps, clock, deadline_monotonic, self.max_response_bytes)
            return sender.send(request, bounds)
        headers = dict(request.headers)
        authorization = headers.pop("Authorization", None)
        return post_bounded(
            self.session(),
            request.url,
            body=request.body,
            headers=headers,
            auth=ClientAuth(authorization),
            timeout=self.timeout,
            clock=clock,
            deadline_monotonic=deadline_monotonic,
            max_bytes=self.max_response_bytes,
            what=request.what,
            proxies=direct_proxies(request.url, allow_insecure_http=False)
            if request.direct
            else None,
        )

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_own": None}  # a fresh connection pool in the new process

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _live_transports.add(self)

    def _after_fork_in_child(self) -> None:
        self._own = None


_live_transports: weakref.WeakSet[Transport] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for transport in list(_live_transports):
        transport._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


def post_bounded(
    session: requests.Session,
    url: str,
    *,
    body: bytes,
    headers: Mapping[str, str],
    auth: Any,
    timeout: Timeout,
    clock: Clock,
    deadline_monotonic: float,
    max_bytes: int,
    what: str,
    proxies: Optional[dict[str, Any]] = None,
) -> requests.Response:
    """POST ``body`` to ``url`` and read the whole answer before ``deadline_monotonic``.

    The response comes back closed, its body in memory (``.content``, ``.text``,
    ``.json()`` work as usual).

    :param what: names the request in messages, e.g. ``"token request"``.
    :param proxies: ``proxies=`` for requests (``None``: as the session and environment say).
    :raises RequestDeadlineError: the deadline passed before the answer was complete.
    :raises ResponseTooLargeError: the answer is longer than ``max_bytes``.
    :raises TokenEndpointError: the request got no answer.
    """
    remaining = _remaining(clock, deadline_monotonic, url, what)
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    try:
        with watching(remaining) as watch:  # the headers, over the private session
            response = session.post(
                url,
                data=body,
                # identity: a compressed answer could inflate far past the cap in one read
                headers={**headers, "Accept-Encoding": "identity"},
                auth=auth,
                timeout=(min(connect, remaining), min(read, remaining)),
                allow_redirects=False,
                stream=True,
                proxies=proxies,
            )
    except requests.exceptions.RequestException as exc:
        if watch.fired:
            raise RequestDeadlineError(
                f"{what} to {url} gave up: no complete answer within its total deadline "
                "(max_request_seconds)"
            ) from exc
        raise TokenEndpointError(f"{what} to {url} failed: {type(exc).__name__}") from exc
    try:
        # requests' own idiom for a body read in full (what ``.content`` does)
        response._content = _read_body(response, clock, deadline_monotonic, read, max_bytes, what)
        response._content_consumed = True  # type: ignore[attr-defined]
    finally:
        response.close()
    return response


def _read_body(
    response: requests.Response,
    clock: Clock,
    deadline_monotonic: float,
    read_timeout: float,
    max_bytes: int,
    what: str,
) -> bytes:
    url = response.url
    length = response.headers.get("Content-Length", "")
    if length.isascii() and length.isdigit() and int(length[:20]) > max_bytes:
        raise ResponseTooLargeError(
            f"{what} to {url}: the answer is {length[:20]} bytes, more than the "
            f"{max_bytes} allowed",
            status_code=response.status_code,
        )
    raw = response.raw
    # read1 returns what one receive brought (urllib3 2); read(n) would wait for all n bytes
    read_step = getattr(raw, "read1", None) or raw.read
    chunks: list[bytes] = []
    total = 0
    while True:
        remaining = _remaining(clock, deadline_monotonic, url, what, response.status_code)
        _set_socket_timeout(raw, min(read_timeout, remaining))
        try:
            chunk = read_step(_CHUNK_BYTES, decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if isinstance(exc, (socket.timeout, urllib3.exceptions.ReadTimeoutError)):
                _remaining(clock, deadline_monotonic, url, what, response.status_code)
            raise TokenEndpointError(
                f"{what} to {url} failed while reading the answer: {type(exc).__name__}",
                status_code=response.status_code,
            ) from exc
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise ResponseTooLargeError(
                f"{what} to {url}: the answer is longer than the {max_bytes} bytes allowed",
                status_code=response.status_code,
            )
        chunks.append(chunk)


def _remaining(
    clock: Clock,
    deadline_monotonic: float,
    url: Optional[str],
    what: str,
    status_code: Optional[int] = None,
) -> float:
    remaining = deadline_monotonic - clock.monotonic()
    if remaining <= 0:
        raise RequestDeadlineError(
            f"{what} to {url} gave up: no complete answer within its total deadline "
            "(max_request_seconds)",
            status_code=status_code,
        )
    return remaining


def _set_socket_timeout(raw: Any, seconds: float) -> None:
    """Make the next receive wait no longer than the time left (urllib3 sets the read
    timeout again for the connection's next request)."""
    connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))

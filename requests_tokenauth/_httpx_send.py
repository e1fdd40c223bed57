"""The httpx senders of the authorization server's requests (:class:`._grants._wire.Sender`):
:class:`HttpxSender` over a private :class:`httpx.Client`, :class:`AsyncHttpxSending` over a
private :class:`httpx.AsyncClient`. Bounded as the requests transport bounds them
(:func:`._grants._transport.post_bounded`): a total deadline that covers the status line and
headers too, a size cap (an oversized ``Content-Length`` refused before reading), an
``identity`` encoding, typed errors whose messages carry no header or body.

httpx counts its timeouts per receive, so a server that drips its answer a byte at a time
would hold a request for as many receives as it has bytes. The sync client's connections
therefore receive (and connect, and send) within the time left to the request
(:mod:`._httpx_deadline`); the async one runs under :func:`asyncio.wait_for`.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Optional

import httpx
import requests

from ._errors import (
    RequestDeadlineError,
    ResponseTooLargeError,
    TokenEndpointError,
)
from ._forksafe import ForkSafe, lock
from ._grants._wire import Bounds, OutgoingRequest, answer
from ._httpx_deadline import deadline, guard
from ._httpx_options import check_transports, checked_client_options, made_with
from ._httpx_tls import default_ssl_context

#: Options a proxy-free client must not take from the caller (``direct`` requests): plain
#: http to loopback is allowed only because it never leaves the machine.
_PROXY_OPTIONS = ("proxy", "proxies", "mounts", "transport")


def _direct(options: Mapping[str, Any]) -> dict[str, Any]:
    """A client's options with no proxy at all: none given, none from the environment."""
    kept = {k: v for k, v in options.items() if k not in _PROXY_OPTIONS}
    kept["trust_env"] = False
    return kept


def _timeout(bounds: Bounds, remaining: float) -> httpx.Timeout:
    connect, read = bounds.timeout
    return httpx.Timeout(
        connect=min(connect, remaining),
        read=min(read, remaining),
        write=min(read, remaining),
        pool=min(connect, remaining),
    )


def _remaining(
    bounds: Bounds, request: OutgoingRequest, status_code: Optional[int] = None
) -> float:
    remaining = bounds.remaining()
    if remaining <= 0:
        raise _deadline_error(request, status_code)
    return remaining


def _deadline_error(
    request: OutgoingRequest, status_code: Optional[int] = None
) -> RequestDeadlineError:
    return RequestDeadlineError(
        f"{request.what} to {request.url} gave up: no complete answer within its total "
        "deadline (max_request_seconds)",
        status_code=status_code,
    )


def _failed(request: OutgoingRequest, exc: BaseException) -> TokenEndpointError:
    return TokenEndpointError(f"{request.what} to {request.url} failed: {type(exc).__name__}")


def _too_large(request: OutgoingRequest, response: httpx.Response, bounds: Bounds) -> None:
    length = response.headers.get("Content-Length", "")
    if length.isascii() and length.isdigit() and int(length[:20]) > bounds.max_bytes:
        raise ResponseTooLargeError(
            f"{request.what} to {request.url}: the answer is {length[:20]} bytes, more than "
            f"the {bounds.max_bytes} allowed",
            status_code=response.status_code,
        )


class _Body:
    """The answer's body gathered chunk by chunk, within the cap and the deadline."""

    __slots__ = ("_request", "_bounds", "_status", "_chunks", "_total")

    def __init__(self, request: OutgoingRequest, bounds: Bounds, status_code: int) -> None:
        self._request = request
        self._bounds = bounds
        self._status = status_code
        self._chunks: list[bytes] = []
        self._total = 0

    def check_time(self) -> None:
        _remaining(self._bounds, self._request, self._status)

    def add(self, chunk: bytes) -> None:
        self._total += len(chunk)
        if self._total > self._bounds.max_bytes:
            raise ResponseTooLargeError(
                f"{self._request.what} to {self._request.url}: the answer is longer than the "
                f"{self._bounds.max_bytes} bytes allowed",
                status_code=self._status,
            )
        self._chunks.append(chunk)
        self.check_time()

    def read_failed(self, exc: BaseException) -> TokenEndpointError:
        self.check_time()  # a receive cut short by the deadline is the deadline
        return TokenEndpointError(
            f"{self._request.what} to {self._request.url} failed while reading the answer: "
            f"{type(exc).__name__}",
            status_code=self._status,
        )

    def answer(self, response: httpx.Response) -> requests.Response:
        return answer(
            response.status_code,
            dict(response.headers.items()),
            b"".join(self._chunks),
            str(response.url),
            response.reason_phrase,
        )


def _outgoing(client: Any, request: OutgoingRequest, bounds: Bounds, remaining: float) -> Any:
    return client.build_request(
        request.method,
        request.url,
        content=request.body,
        # identity: a compressed answer could inflate far past the cap in one read
        headers={**request.headers, "Accept-Encoding": "identity"},
        timeout=_timeout(bounds, remaining),
    )


# -- sync ------------------------------------------------------------------------------------


class HttpxSender:
    """Sends the authorization server's requests with a private :class:`httpx.Client`
    (made on first use; another one, with no proxy and ``trust_env=False``, for ``direct``
    requests), within the request's bounds. Thread-safe. In a forked child the clients are
    dropped, not closed (their sockets are the parent's); pickling carries the options only.

    :param client_options: keyword arguments for :class:`httpx.Client` (``verify``, ``cert``,
        ``proxy``, ``trust_env``, ``transport``, ``limits``...); ``auth``,
        ``follow_redirects`` and ``base_url`` are refused. A ``direct`` request (plain
        http to this machine) is sent without ``proxy``, ``mounts`` and ``transport``.
    :raises ConfigurationError: an option that is refused.
    """

    def __init__(self, client_options: Optional[Mapping[str, Any]] = None) -> None:
        self.client_options = checked_client_options(client_options)
        self._lock = threading.Lock()
        self._clients: dict[bool, httpx.Client] = {}
        _live_senders.add(self)

    def client(self, direct: bool) -> httpx.Client:
        """The client for proxied (``direct=False``) or direct requests."""
        client = self._clients.get(direct)
        if client is None:
            with self._lock:
                client = self._clients.get(direct)
                if client is None:
                    options = _direct(self.client_options) if direct else self.client_options
                    check_transports(options, httpx.BaseTransport, "httpx.Client")
                    client = made_with(options, lambda: httpx.Client(**options))
                    guard(client)
                    self._clients[direct] = client
        return client

    def send(self, request: OutgoingRequest, bounds: Bounds) -> requests.Response:
        """Send ``request`` and read its whole answer within ``bounds`` (see
        :class:`._grants._wire.Sender`)."""
        remaining = _remaining(bounds, request)
        client = self.client(request.direct)
        outgoing = _outgoing(client, request, bounds, remaining)
        with deadline(remaining) as ends:
            try:
                response = client.send(outgoing, stream=True, follow_redirects=False)
            except httpx.HTTPError as exc:
                if bounds.remaining() <= 0 or ends <= time.monotonic():
                    raise _deadline_error(request) from exc
                raise _failed(request, exc) from exc
            try:
                return _read(response, request, bounds)
            finally:
                response.close()

    def close(self) -> None:
        """Close the clients (a later request makes new ones)."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"client_options": self.client_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["client_options"])  # type: ignore[misc]

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._clients = {}

    def __repr__(self) -> str:
        return "HttpxSender()"


def _read(response: httpx.Response, request: OutgoingRequest, bounds: Bounds) -> requests.Response:
    _too_large(request, response, bounds)
    body = _Body(request, bounds, response.status_code)
    body.check_time()
    chunks: Iterator[bytes] = response.iter_bytes()
    while True:
        try:
            chunk = next(chunks, b"")
        except httpx.HTTPError as exc:
            raise body.read_failed(exc) from exc
        if not chunk:
            body.check_time()
            return body.answer(response)
        body.add(chunk)


_live_senders: weakref.WeakSet[HttpxSender] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for sender in list(_live_senders):
        sender._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


# -- async -----------------------------------------------------------------------------------


class AsyncHttpxSending(ForkSafe):
    """Sends the authorization server's requests with a private :class:`httpx.AsyncClient`
    (one per call, on the running loop), the whole call under :func:`asyncio.wait_for` so a
    dripped status line is bounded too. The TLS context is made once, off the loop (loading
    CA certificates takes milliseconds of CPU: event-loop lag), and shared by every call.
    Safe to use from several loops at once.

    :param client_options: as :class:`HttpxSender`'s, for :class:`httpx.AsyncClient`; a
        ``transport`` must be an :class:`httpx.AsyncBaseTransport` (the caller's: never
        closed here).
    :raises ConfigurationError: an option that is refused.
    """

    #: a forked child gets a fresh lock: a parent thread holding it is not in the child
    _fresh_locks = {"_ssl_lock": lock}

    def __init__(self, client_options: Optional[Mapping[str, Any]] = None) -> None:
        self.client_options = checked_client_options(client_options)
        self._ssl: dict[bool, Any] = {}
        self._ssl_lock = threading.Lock()
        self._track()

    def _tls_options(self, direct: bool) -> dict[str, Any]:
        """``verify=`` one SSL context (and no ``cert``: it is in the context) for the
        client; made on first use, on whichever thread asks."""
        options = _direct(self.client_options) if direct else self.client_options
        context = self._ssl.get(direct)
        if context is None:
            with self._ssl_lock:
                context = self._ssl.get(direct)
                if context is None:
                    verify = options.get("verify", True)
                    if isinstance(verify, ssl.SSLContext) and options.get("cert") is None:
                        context = verify  # with a cert, httpx loads it into this context
                    elif verify is True and options.get("cert") is None:
                        context = default_ssl_context(bool(options.get("trust_env", True)))
                    else:
                        tls: dict[str, Any] = {
                            "verify": verify,
                            "trust_env": options.get("trust_env", True),
                        }
                        if options.get("cert") is not None:
                            tls["cert"] = options["cert"]
                        context = httpx.create_ssl_context(**tls)
                    self._ssl[direct] = context
        kept = {k: v for k, v in options.items() if k != "cert"}
        kept["verify"] = context
        return kept

    def _checked_tls_options(self, direct: bool) -> dict[str, Any]:
        return made_with(self.client_options, lambda: self._tls_options(direct))

    async def send(self, request: OutgoingRequest, bounds: Bounds) -> requests.Response:
        """Send ``request`` and read its whole answer within ``bounds``, on the running loop.

        :raises RequestDeadlineError: the deadline passed before the answer was complete.
        :raises ResponseTooLargeError: the answer is longer than ``bounds.max_bytes``.
        :raises TokenEndpointError: no answer.
        """
        remaining = _remaining(bounds, request)
        if request.direct not in self._ssl:
            loop = asyncio.get_running_loop()
            options = await loop.run_in_executor(None, self._checked_tls_options, request.direct)
        else:
            options = self._checked_tls_options(request.direct)
        check_transports(options, httpx.AsyncBaseTransport, "httpx.AsyncClient")
        try:
            return await asyncio.wait_for(self._exchange(request, bounds, options), remaining)
        except asyncio.TimeoutError as exc:
            raise _deadline_error(request) from exc

    async def _exchange(
        self, request: OutgoingRequest, bounds: Bounds, options: dict[str, Any]
    ) -> requests.Response:
        client = made_with(options, lambda: httpx.AsyncClient(**options))
        try:
            outgoing = _outgoing(client, request, bounds, _remaining(bounds, request))
            try:
                response = await client.send(outgoing, stream=True, follow_redirects=False)
            except httpx.HTTPError as exc:
                if bounds.remaining() <= 0:
                    raise _deadline_error(request) from exc
                raise _failed(request, exc) from exc
            try:
                return await _aread(response, request, bounds)
            finally:
                await response.aclose()
        finally:
            await _close_own(client, options)

    def __getstate__(self) -> dict[str, Any]:
        return {"client_options": self.client_options}  # SSL contexts do not pickle

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["client_options"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return "AsyncHttpxSending()"


async def _close_own(client: httpx.AsyncClient, options: Mapping[str, Any]) -> None:
    """Close what ``client`` made (its own transport, the environment's proxies), not the
    caller's ``transport`` and ``mounts``: with only a mount given, the client's own
    transport still carries the requests the mount does not match."""
    mounts = options.get("mounts") or {}
    given = {id(t) for t in (options.get("transport"), *mounts.values()) if t is not None}
    if not given:
        await client.aclose()
        return
    for transport in (client._transport, *client._mounts.values()):
        if transport is not None and id(transport) not in given:
            await transport.aclose()


async def _aread(
    response: httpx.Response, request: OutgoingRequest, bounds: Bounds
) -> requests.Response:
    _too_large(request, response, bounds)
    body = _Body(request, bounds, response.status_code)
    body.check_time()
    chunks: AsyncIterator[bytes] = response.aiter_bytes()
    while True:
        try:
            chunk = await chunks.__anext__()
        except StopAsyncIteration:
            body.check_time()
            return body.answer(response)
        except httpx.HTTPError as exc:
            raise body.read_failed(exc) from exc
        body.add(chunk)

"""The seam between the protocol and the transports: a request to the authorization server
as a value (:class:`OutgoingRequest`), the bounds it is sent within (:class:`Bounds`), the
:class:`Sender` a driver plugs in, and the answer as a value (a closed
:class:`requests.Response` whose body is in memory, which is what the parsers and
requests-oauthlib-style compliance hooks read).

Grants build requests and parse answers without doing IO. Who sends is chosen per call:
the grant's own :class:`~._transport.Transport` (requests) unless a driver has set a sender
for the calls it makes (:func:`sending_with`). The choice is a context variable, so it
follows the caller into a refresh ahead (:class:`~requests_tokenauth._ahead.AheadRunner`
copies the context into its thread) and costs the requests path nothing."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Optional, Protocol

import requests
from requests.structures import CaseInsensitiveDict

from .._clock import Clock


class OutgoingRequest:
    """One request to the authorization server, built and not yet sent.

    :param method: ``"POST"`` (every request a grant sends today).
    :param url: where it goes.
    :param headers: every header, the client's ``Authorization`` included when it
        authenticates with HTTP Basic.
    :param body: the form body, encoded.
    :param what: names the request in messages (``"token request"``).
    :param direct: the loopback exemption allows ``url`` (plain http to this machine), so
        no proxy may carry it (see :func:`._urls.direct_proxies`).

    Its ``repr`` names the method and URL only: headers and body carry secrets.
    """

    __slots__ = ("method", "url", "headers", "body", "what", "direct")

    def __init__(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        what: str,
        direct: bool,
    ) -> None:
        self.method = method
        self.url = url
        self.headers: dict[str, str] = dict(headers)
        self.body = body
        self.what = what
        self.direct = direct

    def __repr__(self) -> str:
        return f"OutgoingRequest({self.method} {self.url}, {self.what})"


class Bounds:
    """How long and how much: ``timeout`` (connect, read) per step, the whole answer read
    before ``deadline_monotonic`` on ``clock``, at most ``max_bytes`` of it."""

    __slots__ = ("timeout", "clock", "deadline_monotonic", "max_bytes")

    def __init__(
        self,
        timeout: tuple[float, float],
        clock: Clock,
        deadline_monotonic: float,
        max_bytes: int,
    ) -> None:
        self.timeout = timeout
        self.clock = clock
        self.deadline_monotonic = deadline_monotonic
        self.max_bytes = max_bytes

    def remaining(self) -> float:
        """Seconds left before the deadline (may be negative)."""
        return self.deadline_monotonic - self.clock.monotonic()


class Sender(Protocol):
    """What a driver plugs in to send the authorization server's requests."""

    def send(self, request: OutgoingRequest, bounds: Bounds) -> requests.Response:
        """Send ``request`` and read its whole answer within ``bounds``.

        :returns: the answer as a value (:func:`answer`).
        :raises RequestDeadlineError: the deadline passed before the answer was complete.
        :raises ResponseTooLargeError: the answer is longer than ``bounds.max_bytes``.
        :raises TokenEndpointError: no answer (connection refused, reset, a timeout).
        """
        ...


def answer(
    status_code: int,
    headers: Mapping[str, str],
    content: bytes,
    url: str,
    reason: Optional[str] = None,
) -> requests.Response:
    """An answer read in full, as the closed :class:`requests.Response` that the parsers
    and compliance hooks read (``.status_code``, ``.headers``, ``.content``, ``.text``,
    ``.json()``)."""
    response = requests.Response()
    response.status_code = status_code
    response.headers = CaseInsensitiveDict(headers)
    response._content = content
    response._content_consumed = True  # type: ignore[attr-defined]
    response.url = url
    response.reason = reason or ""
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    return response


_sender: contextvars.ContextVar[Optional[Sender]] = contextvars.ContextVar(
    "requests_tokenauth_sender", default=None
)


def current_sender() -> Optional[Sender]:
    """The sender set for this context, or ``None`` (the grant's own transport sends)."""
    return _sender.get()


@contextlib.contextmanager
def sending_with(sender: Optional[Sender]) -> Iterator[None]:
    """Send the authorization server's requests made in the block (and in a refresh ahead
    it starts) with ``sender``."""
    reset = _sender.set(sender)
    try:
        yield
    finally:
        _sender.reset(reset)


@contextlib.contextmanager
def sending_by_default(sender: Optional[Sender]) -> Iterator[None]:
    """:func:`sending_with` ``sender`` unless the context already names one (a driver that
    owns a manager sets its default sender this way; a caller's choice wins)."""
    if sender is None or _sender.get() is not None:
        yield
        return
    with sending_with(sender):
        yield

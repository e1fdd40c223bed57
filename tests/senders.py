"""The three senders of the authorization server's requests, for tests that must hold for
each: the grant's own requests transport, the httpx driver's sync :class:`HttpxSender`, and
its :class:`AsyncHttpxSending` on an event loop (reached from a worker thread through the
bridge's :class:`LoopSender`, as the async driver reaches it)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Optional

from requests_tokenauth._grants._wire import Sender, sending_with

#: Test ids: the requests transport, the sync httpx sender, the async one.
SENDERS = ["requests", "httpx", "httpx-async"]


@contextlib.contextmanager
def running_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running on a thread of its own, stopped and closed afterwards."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-loop", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@contextlib.contextmanager
def sender_for(
    kind: str, client_options: Optional[dict[str, Any]] = None
) -> Iterator[Optional[Sender]]:
    """The sender ``kind`` (one of :data:`SENDERS`; ``None`` for requests)."""
    if kind == "requests":
        yield None
        return
    from requests_tokenauth._async_bridge import LoopSender
    from requests_tokenauth._httpx_send import AsyncHttpxSending, HttpxSender

    if kind == "httpx":
        sender = HttpxSender(client_options)
        try:
            yield sender
        finally:
            sender.close()
        return
    assert kind == "httpx-async", kind
    with running_loop() as loop:
        yield LoopSender(loop, AsyncHttpxSending(client_options).send)


@contextlib.contextmanager
def sending_as(kind: str) -> Iterator[None]:
    """Send the authorization server's requests made in the block with sender ``kind``."""
    with sender_for(kind) as sender, sending_with(sender):
        yield

"""The library's own event loop, where async token requests are sent.

Why not the caller's loop: ``asyncio.run`` cancels every task of its loop when it returns,
and a script or worker that runs one ``asyncio.run`` per job ends its loop while a refresh
ahead it started (a task nobody awaits) is still in flight. A token request cancelled after
the server rotated the refresh token loses the new one, and the next refresh then fails
with ``invalid_grant``. On this loop, a token request lives as long as the process; the
callers' loops only await its outcome (see :class:`._async_bridge.AsyncFlights`), so none of
them is ever blocked by it, and one ``TokenAuth`` serves any number of loops the same way.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Optional

from ._forksafe import ForkSafe, lock

#: The name of the daemon thread the loop runs on.
THREAD_NAME = "tokenauth-io"

#: How long the first caller waits for the new thread to start its loop.
_START_TIMEOUT_SECONDS = 10.0


class IOLoop(ForkSafe):
    """An event loop on a daemon thread, started on first use, started anew in a forked
    child (the parent's thread is not there). It is never stopped: at interpreter exit the
    refresh ahead still in flight gets its bounded wait (see :mod:`._delivery`) while the
    loop still runs, and the daemon thread ends with the process."""

    _fresh_locks = {"_lock": lock}

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._track()

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        self._loop = None

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop (started now if this is the first use).

        :raises RuntimeError: no new thread could be started (interpreter shutting down).
        """
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._loop is None:
                self._loop = self._start()
            return self._loop

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        running = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(loop, running), name=THREAD_NAME, daemon=True
        )
        thread.start()
        running.wait(_START_TIMEOUT_SECONDS)  # LoopSender also copes with a loop not yet up
        return loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, running: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(running.set)
        loop.run_forever()


#: The one loop of this process.
IO_LOOP = IOLoop()

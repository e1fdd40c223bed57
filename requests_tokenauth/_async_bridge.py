"""The bridge between an asyncio event loop and the manager's blocking world.

The manager blocks (its lock, a store's lock, ``max_wait_seconds``), so an async driver
never calls it on the loop: :class:`AsyncFlights` runs that work on a short-lived thread of
its own and lets any number of tasks await one outcome. The token request the work makes
is still sent by an ``httpx.AsyncClient``, so the work runs with a :class:`LoopSender` in
its context (see :func:`._grants._wire.sending_with`): the worker thread hands the request
to an event loop (the driver uses the library's own, :mod:`._io_loop`) and waits for the
answer there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import time
import weakref
from collections.abc import Awaitable, Hashable
from typing import Any, Callable, Optional, TypeVar

import requests

from ._errors import RequestDeadlineError, TokenEndpointError
from ._forksafe import ForkSafe, lock
from ._grants._wire import Bounds, OutgoingRequest, Sender, sending_with

T = TypeVar("T")

#: The name of the short-lived thread an :class:`AsyncFlights` work runs on.
THREAD_NAME = "tokenauth-async"

#: Past the deadline, how long a :class:`LoopSender` still waits before it cancels: the
#: async sender bounds itself by the same deadline, and its own error says more than ours.
DEFAULT_DEADLINE_GRACE_SECONDS = 0.5

#: How often a waiting :class:`LoopSender` re-reads the deadline's clock (a ``FakeClock``
#: moves without real time passing) and checks that the loop still runs.
DEFAULT_CHECK_SLICE_SECONDS = 0.05

SendAsync = Callable[[OutgoingRequest, Bounds], Awaitable[requests.Response]]


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # no loop runs on this thread
        return None


class LoopSender:
    """A :class:`~._grants._wire.Sender` for worker threads that sends on an event loop:
    ``send_async(request, bounds)`` runs on ``loop`` and :meth:`send` waits for its answer.

    Thread-safe; holds ``loop`` weakly (a driver caches one sender per loop, keyed weakly
    by the loop). Its :meth:`send` must not be called on ``loop``'s own thread: that would
    wait for the loop it blocks.

    :param loop: the event loop that sends.
    :param send_async: ``async`` send (an ``httpx.AsyncClient`` behind it) bounded by
        ``bounds`` itself.
    :param grace_seconds: how long past the deadline to wait for ``send_async``'s own
        answer or error before cancelling it.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        send_async: SendAsync,
        *,
        grace_seconds: float = DEFAULT_DEADLINE_GRACE_SECONDS,
    ) -> None:
        self._loop_ref = weakref.ref(loop)
        self._send_async = send_async
        self.grace_seconds = grace_seconds

    def __repr__(self) -> str:
        return f"LoopSender({self._loop_ref()!r})"

    def sends_on(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether this sender sends on ``loop``."""
        return self._loop_ref() is loop

    def send(self, request: OutgoingRequest, bounds: Bounds) -> requests.Response:
        """Send ``request`` on the loop and wait for its whole answer within ``bounds``.

        :raises RequestDeadlineError: no answer by the deadline (the send is cancelled).
        :raises TokenEndpointError: the loop is gone, closed, or stopped while the send was
            on it, the send was cancelled, or this is the loop's own thread.

        A loop not running yet (started on another thread a moment ago) runs the send
        when it starts.
        """
        loop = self._loop_ref()
        if loop is None or loop.is_closed():
            raise TokenEndpointError(f"{request.what} to {request.url} failed: event loop closed")
        if _running_loop() is loop:
            raise TokenEndpointError(
                f"{request.what} to {request.url} failed: sent from its event loop's own "
                "thread, which would wait for itself (call the manager from another thread)"
            )
        running = loop.is_running()
        coroutine = self._send_async(request, bounds)
        try:
            future = asyncio.run_coroutine_threadsafe(_awaited(coroutine), loop)
        except RuntimeError:  # closed since the check above
            if asyncio.iscoroutine(coroutine):
                coroutine.close()
            raise TokenEndpointError(
                f"{request.what} to {request.url} failed: event loop closed"
            ) from None
        del loop  # held weakly: a waiting sender must not keep a dropped loop alive
        try:
            self._wait(future, request, bounds, running)
            return future.result()
        except concurrent.futures.CancelledError:
            raise TokenEndpointError(
                f"{request.what} to {request.url} failed: cancelled on its event loop"
            ) from None

    def _wait(
        self,
        future: concurrent.futures.Future[requests.Response],
        request: OutgoingRequest,
        bounds: Bounds,
        seen_running: bool,
    ) -> None:
        # the deadline is on bounds.clock (which a test may move) and, like the requests
        # sender's watchdog, at most the remaining seconds of real time from now
        real_deadline = time.monotonic() + max(0.0, bounds.remaining())
        while True:
            left = min(bounds.remaining(), real_deadline - time.monotonic())
            if left <= 0:
                break
            done, _ = concurrent.futures.wait([future], min(left, DEFAULT_CHECK_SLICE_SECONDS))
            if done:
                return
            seen_running = self._check_loop(future, request, seen_running)
        done, _ = concurrent.futures.wait([future], self.grace_seconds)
        if done:
            return
        future.cancel()  # cancels the task on the loop (run_coroutine_threadsafe chains it)
        raise RequestDeadlineError(
            f"{request.what} to {request.url} gave up: no complete answer within its total "
            "deadline (max_request_seconds)"
        )

    def _check_loop(
        self,
        future: concurrent.futures.Future[requests.Response],
        request: OutgoingRequest,
        seen_running: bool,
    ) -> bool:
        """Whether the loop runs now; raises if it is gone, closed, or no longer runs."""
        loop = self._loop_ref()
        running = loop is not None and loop.is_running()
        if loop is None or loop.is_closed() or (seen_running and not running):
            future.cancel()
            raise TokenEndpointError(f"{request.what} to {request.url} failed: event loop stopped")
        return running


async def _awaited(awaitable: Awaitable[T]) -> T:
    # run_coroutine_threadsafe takes a coroutine; send_async may return any awaitable
    return await awaitable


class AsyncFlights(ForkSafe):
    """Blocking work run off the event loop, at most one per (running loop, key) at a time.

    :meth:`run` starts ``work`` on a short-lived daemon thread named ``tokenauth-async``
    (the caller's ``contextvars`` context copied, ``sender`` set in it) unless a flight for
    the same key is already up on this loop; every task asking meanwhile awaits the same
    outcome, result or exception. A cancelled awaiter does not cancel the work.

    Thread-safe, for any number of loops in any number of threads (loops are held weakly);
    a forked child or an unpickled copy starts with no flights. Never blocks the loop.
    """

    _fresh_locks = {"_lock": lock}
    _not_pickled = {"_by_loop": weakref.WeakKeyDictionary}

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[Hashable, asyncio.Future[Any]]
        ] = weakref.WeakKeyDictionary()
        self._track()

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        self._by_loop = weakref.WeakKeyDictionary()  # their threads are not in the child

    async def run(self, key: Hashable, work: Callable[[], T], sender: Optional[Sender]) -> T:
        """``work()``'s result (or exception), computed on another thread; joins the
        flight already up for ``key`` on this loop if there is one.

        :param key: what the work is (equal keys share one flight on a loop).
        :param work: blocking work; runs with ``sender`` as the context's sender.
        :param sender: the sender for the work's requests (:func:`sending_with`).
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            flights = self._by_loop.setdefault(loop, {})
            flight = flights.get(key)
            first = flight is None
            if flight is None:
                flight = flights[key] = loop.create_future()
        if first:
            self._launch(loop, key, flight, work, sender)
        # shield: cancelling one awaiter must not cancel the flight the others await
        result: T = await asyncio.shield(flight)
        return result

    def _launch(
        self,
        loop: asyncio.AbstractEventLoop,
        key: Hashable,
        flight: asyncio.Future[Any],
        work: Callable[[], Any],
        sender: Optional[Sender],
    ) -> None:
        def fly() -> None:
            # what the awaiters get if the thread is torn down (SystemExit) mid-work
            outcome: tuple[bool, Any] = (False, TokenEndpointError("the work was interrupted"))
            try:
                with sending_with(sender):
                    outcome = (True, work())
            except Exception as exc:
                outcome = (False, exc)
            finally:
                try:
                    loop.call_soon_threadsafe(self._land, loop, key, flight, outcome)
                except RuntimeError:  # the loop closed meanwhile: nobody is left to tell
                    # its flight would hold the loop (future._loop) in the table for good
                    self._forget(loop, key, flight)

        context = contextvars.copy_context()
        worker = threading.Thread(target=context.run, args=(fly,), name=THREAD_NAME)
        worker.daemon = True
        try:
            worker.start()
        except RuntimeError as exc:  # no new threads (interpreter shutting down)
            failure = TokenEndpointError(f"no worker thread: {type(exc).__name__}")
            self._land(loop, key, flight, (False, failure))

    def _land(
        self,
        loop: asyncio.AbstractEventLoop,
        key: Hashable,
        flight: asyncio.Future[Any],
        outcome: tuple[bool, Any],
    ) -> None:
        # on the loop's thread: the flight leaves the table before anyone hears its outcome,
        # so a task asking after that starts a new one
        self._forget(loop, key, flight)
        if flight.done():
            return
        succeeded, value = outcome
        if succeeded:
            flight.set_result(value)
        else:
            flight.set_exception(value)
            flight.exception()  # retrieved: every awaiter may have been cancelled

    def _forget(
        self, loop: asyncio.AbstractEventLoop, key: Hashable, flight: asyncio.Future[Any]
    ) -> None:
        with self._lock:
            flights = self._by_loop.get(loop)
            if flights is not None and flights.get(key) is flight:
                del flights[key]

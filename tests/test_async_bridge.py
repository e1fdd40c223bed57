"""The asyncio bridge: AsyncFlights (one flight per loop and key, shared outcome,
cancellation, several loops, the sender in the work's context, a loop that keeps running)
and LoopSender (answers, deadline, closed or stopped loop, its own thread). Deterministic:
threading.Event gates, a FakeClock for deadlines, a timeout on every wait, no sleeps."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os
import pickle
import signal
import threading
import weakref
from collections.abc import Awaitable, Iterator
from typing import Any

import pytest
import requests

from requests_tokenauth import RequestDeadlineError, TokenEndpointError
from requests_tokenauth._async_bridge import THREAD_NAME, AsyncFlights, LoopSender
from requests_tokenauth._grants._wire import Bounds, OutgoingRequest, answer, current_sender
from requests_tokenauth.testing import FakeClock

WAIT = 10.0  # real seconds any gate may take before the test fails instead of hanging
SECRET = "s3cr3t"

caller_var: contextvars.ContextVar[str] = contextvars.ContextVar("caller_var", default="unset")


class Gate:
    """A threading.Event a work waits on; counts the works that entered."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = 0
        self._lock = threading.Lock()

    def work(self, value: Any = "token") -> Any:
        with self._lock:
            self.entered += 1
        if not self.open.wait(WAIT):
            return "gate never opened"
        return value


async def started(tasks: list[asyncio.Task[Any]]) -> None:
    # a task's first step runs AsyncFlights.run up to its await; tasks created before this
    # call run that step before it returns
    await asyncio.sleep(0)
    assert not any(task.done() for task in tasks)


# -- AsyncFlights -------------------------------------------------------------------------


def test_one_flight_per_loop_and_key_shares_its_result() -> None:
    flights, gate = AsyncFlights(), Gate()
    result = object()

    async def main() -> tuple[list[Any], Any]:
        tasks = [
            asyncio.ensure_future(flights.run("token", lambda: gate.work(result), None))
            for _ in range(32)
        ]
        other = asyncio.ensure_future(flights.run("other", lambda: gate.work("other"), None))
        await started([*tasks, other])
        gate.open.set()
        return list(await asyncio.gather(*tasks)), await other

    results, other = asyncio.run(main())
    assert gate.entered == 2  # one per key
    assert all(r is result for r in results)
    assert other == "other"


def test_a_landed_flight_leaves_the_table_so_the_next_ask_starts_a_new_one() -> None:
    flights, calls = AsyncFlights(), []

    def work() -> int:
        calls.append(1)
        return len(calls)

    async def main() -> list[int]:
        return [await flights.run("token", work, None), await flights.run("token", work, None)]

    assert asyncio.run(main()) == [1, 2]


def test_every_awaiter_gets_the_same_exception() -> None:
    flights, gate = AsyncFlights(), Gate()
    failure = TokenEndpointError("token request to https://as.example/token failed: boom")

    def work() -> None:
        gate.work()
        raise failure

    async def main() -> list[BaseException]:
        tasks = [asyncio.ensure_future(flights.run("token", work, None)) for _ in range(8)]
        await started(tasks)
        gate.open.set()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    outcomes = asyncio.run(main())
    assert gate.entered == 1
    assert all(outcome is failure for outcome in outcomes)


def test_a_cancelled_awaiter_does_not_cancel_the_work_and_the_others_get_the_result() -> None:
    flights, gate, finished = AsyncFlights(), Gate(), threading.Event()

    def work() -> str:
        value = gate.work()
        finished.set()
        return str(value)

    async def main() -> tuple[asyncio.Task[str], list[str]]:
        cancelled = asyncio.ensure_future(flights.run("token", work, None))
        others = [asyncio.ensure_future(flights.run("token", work, None)) for _ in range(4)]
        await started([cancelled, *others])
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert not finished.is_set()  # the work is still held
        gate.open.set()
        return cancelled, list(await asyncio.gather(*others))

    cancelled, results = asyncio.run(main())
    assert cancelled.cancelled()
    assert finished.is_set()
    assert results == ["token"] * 4
    assert gate.entered == 1


def test_a_flight_whose_only_awaiter_was_cancelled_stays_up_for_the_next_ask() -> None:
    flights, gate = AsyncFlights(), Gate()
    failure = TokenEndpointError("token request to https://as.example/token failed: x")

    def failing() -> None:
        gate.work()
        raise failure

    async def main() -> str:
        lone = asyncio.ensure_future(flights.run("token", failing, None))
        await started([lone])
        lone.cancel()
        joiner = asyncio.ensure_future(flights.run("token", failing, None))
        await started([joiner])
        gate.open.set()
        (outcome,) = await asyncio.wait_for(asyncio.gather(joiner, return_exceptions=True), WAIT)
        assert outcome is failure
        assert lone.cancelled()
        return str(await flights.run("token", lambda: "next", None))

    assert asyncio.run(main()) == "next"
    assert gate.entered == 1


def test_two_loops_in_two_threads_get_separate_flights() -> None:
    flights = AsyncFlights()
    both_in = threading.Barrier(2)  # passes only if both works run at the same time
    outcomes: dict[str, Any] = {}

    def work() -> str:
        both_in.wait(WAIT)
        return threading.current_thread().name

    def loop_thread(name: str) -> None:
        async def main() -> str:
            return await flights.run("token", work, None)

        outcomes[name] = asyncio.run(main())

    threads = [threading.Thread(target=loop_thread, args=(n,), name=n) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not both_in.broken
    assert sorted(outcomes) == ["a", "b"]
    assert outcomes["a"] == outcomes["b"] == THREAD_NAME


def test_the_work_runs_on_a_daemon_thread_with_the_sender_and_the_callers_context() -> None:
    flights, some_loop = AsyncFlights(), asyncio.new_event_loop()
    some_loop.close()
    sender = LoopSender(some_loop, _never_called)
    seen: dict[str, Any] = {}

    def work() -> None:
        thread = threading.current_thread()
        seen.update(
            sender=current_sender(),
            caller=caller_var.get(),
            name=thread.name,
            daemon=thread.daemon,
            loop_thread=thread is threading.main_thread(),
        )

    async def main() -> None:
        caller_var.set("the caller's")
        await flights.run("token", work, sender)
        assert current_sender() is None  # the caller's own context is left as it was

    asyncio.run(main())
    assert seen == {
        "sender": sender,
        "caller": "the caller's",
        "name": THREAD_NAME,
        "daemon": True,
        "loop_thread": False,
    }


def test_the_loop_keeps_running_while_the_work_blocks() -> None:
    flights, gate = AsyncFlights(), Gate()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(50):
            ticks += 1
            await asyncio.sleep(0)
        gate.open.set()  # only a running loop gets here; until then the work is held

    async def main() -> Any:
        flight = asyncio.ensure_future(flights.run("token", gate.work, None))
        await started([flight])
        await ticker()
        return await asyncio.wait_for(flight, WAIT)

    assert asyncio.run(main()) == "token"
    assert ticks == 50


def test_an_unpickled_copy_starts_with_no_flights() -> None:
    flights, gate = AsyncFlights(), Gate()

    async def main() -> AsyncFlights:
        held = asyncio.ensure_future(flights.run("token", gate.work, None))
        await started([held])
        copy = pickle.loads(pickle.dumps(flights))
        assert await copy.run("token", lambda: "own", None) == "own"  # not the held one
        gate.open.set()
        assert await held == "token"
        return copy

    asyncio.run(main())


def test_a_loop_closed_while_its_flight_is_up_is_not_kept_alive() -> None:
    flights, gate = AsyncFlights(), Gate()
    loop_refs: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        loop_refs.append(weakref.ref(asyncio.get_running_loop()))
        flight = asyncio.ensure_future(flights.run("token", gate.work, None))
        await started([flight])
        # returning: asyncio.run cancels the awaiter and closes the loop, the work still held

    asyncio.run(main())
    workers = [t for t in threading.enumerate() if t.name == THREAD_NAME]
    gate.open.set()  # the work ends and finds its loop closed
    for worker in workers:
        worker.join(WAIT)
        assert not worker.is_alive()
    gc.collect()
    assert loop_refs[0]() is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_starts_with_no_flights_and_a_free_lock() -> None:
    flights = AsyncFlights()
    with flights._lock:  # as if another thread of the parent were inside run() at the fork
        pid = os.fork()
        if pid == 0:  # the child: a held lock would hang it, and the alarm would end it
            code = 3
            try:
                signal.alarm(int(WAIT))
                code = 0 if asyncio.run(flights.run("token", lambda: "own", None)) == "own" else 1
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# -- LoopSender ---------------------------------------------------------------------------


def request() -> OutgoingRequest:
    return OutgoingRequest(
        "POST",
        "https://as.example/token",
        {"Authorization": f"Basic {SECRET}"},
        f"grant_type=client_credentials&client_secret={SECRET}".encode(),
        "token request",
        False,
    )


def bounds(clock: FakeClock, seconds: float = 30.0) -> Bounds:
    return Bounds((5.0, 5.0), clock, clock.monotonic() + seconds, 1 << 20)


async def _never_called(request: OutgoingRequest, bounds: Bounds) -> requests.Response:
    raise AssertionError("send_async must not run")


@pytest.fixture
def running_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running on a thread of its own (as an application's loop would)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(WAIT)  # it runs
    yield loop
    if loop.is_running():
        loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT)
    loop.close()


def test_the_answer_comes_back_from_the_loop(running_loop: asyncio.AbstractEventLoop) -> None:
    on_loop: list[bool] = []

    async def send_async(req: OutgoingRequest, b: Bounds) -> requests.Response:
        on_loop.append(asyncio.get_running_loop() is running_loop)
        return answer(200, {"Content-Type": "application/json"}, b'{"ok": 1}', req.url)

    response = LoopSender(running_loop, send_async).send(request(), bounds(FakeClock()))
    assert (response.status_code, response.json()) == (200, {"ok": 1})
    assert on_loop == [True]


def test_the_async_senders_typed_error_passes_through(
    running_loop: asyncio.AbstractEventLoop,
) -> None:
    failure = TokenEndpointError("token request to https://as.example/token failed: ConnectError")

    async def send_async(req: OutgoingRequest, b: Bounds) -> requests.Response:
        raise failure

    with pytest.raises(TokenEndpointError) as caught:
        LoopSender(running_loop, send_async).send(request(), bounds(FakeClock()))
    assert caught.value is failure


def test_past_the_deadline_it_gives_up_and_cancels_the_send(
    running_loop: asyncio.AbstractEventLoop,
) -> None:
    clock = FakeClock()
    sending, cancelled = threading.Event(), threading.Event()

    async def send_async(req: OutgoingRequest, b: Bounds) -> requests.Response:
        sending.set()
        try:
            await asyncio.Event().wait()  # an endpoint that never answers
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    sender = LoopSender(running_loop, send_async, grace_seconds=0.0)
    outcome: list[BaseException] = []

    def worker() -> None:
        try:
            sender.send(request(), bounds(clock, 30.0))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    assert sending.wait(WAIT)
    assert not outcome  # still waiting: the deadline is 30 s away on the clock
    clock.advance(31.0)
    thread.join(WAIT)
    assert len(outcome) == 1 and type(outcome[0]) is RequestDeadlineError
    assert cancelled.wait(WAIT)
    assert SECRET not in str(outcome[0])


def test_a_closed_loop_is_a_transient_error() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    with pytest.raises(TokenEndpointError, match="event loop closed") as caught:
        LoopSender(loop, _never_called).send(request(), bounds(FakeClock()))
    assert type(caught.value) is TokenEndpointError


def test_a_loop_not_running_yet_sends_once_it_starts() -> None:
    loop, scheduled = asyncio.new_event_loop(), threading.Event()

    async def sending(req: OutgoingRequest) -> requests.Response:
        return answer(200, {}, b"{}", req.url)

    def send_async(req: OutgoingRequest, b: Bounds) -> Awaitable[requests.Response]:
        scheduled.set()  # the sender is past its checks and hands this to the loop
        return sending(req)

    outcome: list[Any] = []
    worker = threading.Thread(
        target=lambda: outcome.append(
            LoopSender(loop, send_async).send(request(), bounds(FakeClock()))
        )
    )
    worker.start()
    assert scheduled.wait(WAIT)
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()  # as an application starting its loop on another thread
    worker.join(WAIT)
    loop.call_soon_threadsafe(loop.stop)
    runner.join(WAIT)
    loop.close()
    assert [r.status_code for r in outcome] == [200]


def test_a_loop_that_stops_mid_send_is_a_transient_error(
    running_loop: asyncio.AbstractEventLoop,
) -> None:
    sending = threading.Event()

    async def send_async(req: OutgoingRequest, b: Bounds) -> requests.Response:
        sending.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    outcome: list[BaseException] = []

    def worker() -> None:
        try:
            LoopSender(running_loop, send_async).send(request(), bounds(FakeClock()))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    assert sending.wait(WAIT)
    running_loop.call_soon_threadsafe(running_loop.stop)
    thread.join(WAIT)
    assert len(outcome) == 1 and type(outcome[0]) is TokenEndpointError
    assert "event loop stopped" in str(outcome[0])


def test_a_send_cancelled_on_the_loop_is_a_transient_error(
    running_loop: asyncio.AbstractEventLoop,
) -> None:
    async def send_async(req: OutgoingRequest, b: Bounds) -> requests.Response:
        current = asyncio.current_task()
        assert current is not None
        current.cancel()  # as asyncio.run does to every task when it ends
        await asyncio.sleep(0)
        raise AssertionError("unreachable")

    with pytest.raises(TokenEndpointError, match="cancelled on its event loop") as caught:
        LoopSender(running_loop, send_async).send(request(), bounds(FakeClock()))
    assert type(caught.value) is TokenEndpointError


def test_on_the_loops_own_thread_it_refuses_at_once_instead_of_deadlocking() -> None:
    async def main() -> TokenEndpointError:
        sender = LoopSender(asyncio.get_running_loop(), _never_called)
        with pytest.raises(TokenEndpointError, match="own thread") as caught:
            sender.send(request(), bounds(FakeClock()))
        return caught.value

    failure = asyncio.run(main())
    assert type(failure) is TokenEndpointError
    assert SECRET not in str(failure) and SECRET not in repr(failure)


def test_it_holds_its_loop_weakly() -> None:
    loop = asyncio.new_event_loop()
    sender = LoopSender(loop, _never_called)
    gone = weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert gone() is None
    with pytest.raises(TokenEndpointError, match="event loop closed"):
        sender.send(request(), bounds(FakeClock()))

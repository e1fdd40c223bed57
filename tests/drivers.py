"""The HTTP clients the integration tests run on, behind one interface, so each scenario has
one test body for every driver (``tests/test_drivers.py``):

- ``requests``: a ``requests.Session`` with ``requests_tokenauth.TokenAuth``;
- ``httpx``: an ``httpx.Client`` with ``requests_tokenauth.httpx.TokenAuth``;
- ``httpx-async``: an ``httpx.AsyncClient`` with the same auth, on one event loop that runs
  (under ``asyncio.run``) on a thread of its own for the caller's lifetime, as in an app.

A :class:`Driver` builds the auth for a grant and a :class:`Caller` around it; a caller sends
one request at a time (:meth:`Caller.send`) or ``n`` at once (:meth:`Caller.start`: ``n``
threads released by one barrier for the sync clients, ``n`` tasks gathered on the loop for
the async one). Answers come back as :class:`Reply` values whatever the client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import requests

from .helpers import count_lock

#: Real seconds any single wait in a test may take before it counts as a hang.
WAIT = 20.0

DRIVER_NAMES = ("requests", "httpx", "httpx-async")


@dataclass(frozen=True)
class Streamed:
    """A request body sent from a generator (chunked, read once: it cannot be sent again)."""

    chunks: tuple[bytes, ...]

    def generate(self) -> Iterator[bytes]:
        yield from self.chunks

    async def agenerate(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


Body = Union[None, bytes, Streamed]


@dataclass(frozen=True)
class Reply:
    """One answer, whatever client got it: status, headers, body, the headers of the request
    that got it (the last one sent), and the answers before it (401s retried, redirects)."""

    status_code: int
    headers: Mapping[str, str]
    request_headers: Mapping[str, str]
    content: bytes
    history: tuple[Reply, ...]

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def history_codes(self) -> list[int]:
        return [r.status_code for r in self.history]


def reply_of(response: Any) -> Reply:
    """A :class:`Reply` from a ``requests.Response`` or an ``httpx.Response`` (read)."""
    return Reply(
        status_code=response.status_code,
        headers=response.headers,
        request_headers=response.request.headers,
        content=response.content,
        history=tuple(reply_of(r) for r in response.history),
    )


Outcome = Union[Reply, Exception]


class Calls:
    """Calls under way (:meth:`Caller.start`); :meth:`join` waits for their outcomes."""

    def __init__(self, done: Callable[[], bool], join: Callable[[float], list[Outcome]]) -> None:
        self._done = done
        self._join = join

    def done(self) -> bool:
        return self._done()

    def join(self, timeout: float = WAIT) -> list[Outcome]:
        """Every call's :class:`Reply` or the exception it raised, caller by caller.

        :raises AssertionError: they did not all finish within ``timeout``.
        """
        return self._join(timeout)


class Caller:
    """A client with a TokenAuth: sends requests and reports :class:`Reply` values."""

    def get(self, url: str, params: Optional[Mapping[str, str]] = None) -> Reply:
        return self.send("GET", url, params=params)

    def post(self, url: str, body: Body) -> Reply:
        return self.send("POST", url, body=body)

    def send(
        self,
        method: str,
        url: str,
        body: Body = None,
        params: Optional[Mapping[str, str]] = None,
    ) -> Reply:
        raise NotImplementedError

    def start(self, n: int, method: str, url: str, body: Body = None, repeat: int = 1) -> Calls:
        """Start ``n`` callers at once, each sending ``repeat`` requests one after another.
        Their outcomes come in caller order (``n * repeat`` of them)."""
        raise NotImplementedError

    def concurrently(
        self, n: int, method: str, url: str, body: Body = None, repeat: int = 1
    ) -> list[Outcome]:
        return self.start(n, method, url, body, repeat).join()

    def close(self) -> None:
        raise NotImplementedError


class _ThreadedCaller(Caller):
    """What the sync clients share: concurrent calls are threads released by one barrier."""

    def start(self, n: int, method: str, url: str, body: Body = None, repeat: int = 1) -> Calls:
        barrier = threading.Barrier(n)
        outcomes: list[list[Outcome]] = [[] for _ in range(n)]

        def run(i: int) -> None:
            barrier.wait(WAIT)
            for _ in range(repeat):
                try:
                    outcomes[i].append(self.send(method, url, body))
                except Exception as exc:
                    outcomes[i].append(exc)

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()

        def join(timeout: float) -> list[Outcome]:
            for t in threads:
                t.join(timeout)
                assert not t.is_alive(), "a caller did not finish"
            return [o for per_caller in outcomes for o in per_caller]

        return Calls(lambda: not any(t.is_alive() for t in threads), join)


class _RequestsCaller(_ThreadedCaller):
    def __init__(self, auth: Any) -> None:
        self.session = requests.Session()
        self.session.trust_env = False
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
        self.session.mount("http://", adapter)
        self.session.auth = auth

    def send(
        self,
        method: str,
        url: str,
        body: Body = None,
        params: Optional[Mapping[str, str]] = None,
    ) -> Reply:
        data = body.generate() if isinstance(body, Streamed) else body
        return reply_of(self.session.request(method, url, data=data, params=params, timeout=WAIT))

    def close(self) -> None:
        self.session.close()


class _HttpxCaller(_ThreadedCaller):
    def __init__(self, auth: Any) -> None:
        import httpx

        self.client = httpx.Client(auth=auth, follow_redirects=True, trust_env=False, timeout=WAIT)

    def send(
        self,
        method: str,
        url: str,
        body: Body = None,
        params: Optional[Mapping[str, str]] = None,
    ) -> Reply:
        content = body.generate() if isinstance(body, Streamed) else body
        return reply_of(self.client.request(method, url, content=content, params=params))

    def close(self) -> None:
        self.client.close()


class _AsyncHttpxCaller(Caller):
    """An ``httpx.AsyncClient`` on one event loop, run by ``asyncio.run`` on its own thread;
    the test's thread hands it coroutines and waits for their results."""

    def __init__(self, auth: Any) -> None:
        self._ready = threading.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(),), name="driver-loop", daemon=True
        )
        self._thread.start()
        assert self._ready.wait(WAIT), "the event loop did not start"
        self.client = self._run(self._open(auth))

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()

    @staticmethod
    async def _open(auth: Any) -> Any:
        import httpx

        return httpx.AsyncClient(auth=auth, follow_redirects=True, trust_env=False, timeout=WAIT)

    def _submit(self, coroutine: Any) -> concurrent.futures.Future[Any]:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def _run(self, coroutine: Any) -> Any:
        return self._submit(coroutine).result(WAIT)

    async def _send(
        self, method: str, url: str, body: Body, params: Optional[Mapping[str, str]] = None
    ) -> Reply:
        content = body.agenerate() if isinstance(body, Streamed) else body
        return reply_of(await self.client.request(method, url, content=content, params=params))

    def send(
        self,
        method: str,
        url: str,
        body: Body = None,
        params: Optional[Mapping[str, str]] = None,
    ) -> Reply:
        reply: Reply = self._run(self._send(method, url, body, params))
        return reply

    def start(self, n: int, method: str, url: str, body: Body = None, repeat: int = 1) -> Calls:
        async def one_caller() -> list[Outcome]:
            outcomes: list[Outcome] = []
            for _ in range(repeat):
                try:
                    outcomes.append(await self._send(method, url, body))
                except Exception as exc:
                    outcomes.append(exc)
            return outcomes

        async def all_callers() -> list[list[Outcome]]:
            # n tasks created together: they start in the same turn of the loop
            return list(await asyncio.gather(*(one_caller() for _ in range(n))))

        future = self._submit(all_callers())

        def join(timeout: float) -> list[Outcome]:
            try:
                per_caller = future.result(timeout)
            except concurrent.futures.TimeoutError:
                raise AssertionError("the callers did not finish") from None
            return [o for outcomes in per_caller for o in outcomes]

        return Calls(future.done, join)

    def close(self) -> None:
        if self._loop is None or not self._thread.is_alive():
            return
        try:
            self._run(self.client.aclose())
        finally:
            assert self._stop is not None
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(WAIT)


class Waiting:
    """Counts calls that wait for a token: at the manager's lock (a thread), or for the
    flight that gets it (a task)."""

    def __init__(self, count: Callable[[], int], wait_for: Callable[[int], bool]) -> None:
        self._count = count
        self._wait_for = wait_for

    @property
    def count(self) -> int:
        return self._count()

    def wait_for(self, n: int) -> bool:
        """Block until ``n`` calls wait (``False`` after :data:`WAIT` real seconds)."""
        return self._wait_for(n)


class Driver:
    """One HTTP client family: the TokenAuth it takes, how it sends, how its calls wait.

    Callers made by :meth:`caller` are closed by :meth:`close` (the fixture does it)."""

    name = ""

    def __init__(self) -> None:
        self._callers: list[Caller] = []

    def __repr__(self) -> str:
        return f"Driver({self.name!r})"

    def auth_for(self, grant: Any, **options: Any) -> Any:
        """The TokenAuth this client takes, for ``grant`` with TokenAuth's keyword options."""
        raise NotImplementedError

    def caller(self, auth: Any) -> Caller:
        made = self._make_caller(auth)
        self._callers.append(made)
        return made

    def _make_caller(self, auth: Any) -> Caller:
        raise NotImplementedError

    def waiting(self, auth: Any) -> Waiting:
        """From now on, count this auth's calls that wait for a token (sync clients: threads
        at the manager's lock, so every one of them asked for the token)."""
        lock = count_lock(auth)
        return Waiting(lambda: lock.attempts, lambda n: lock.wait_for_attempts(n, WAIT))

    def parked(self, calls: int) -> int:
        """How many threads wait on the clock when ``calls`` concurrent calls wait for a
        token attempt: one per call for the sync clients."""
        return calls

    def close(self) -> None:
        for made in reversed(self._callers):
            made.close()


class RequestsDriver(Driver):
    name = "requests"

    def auth_for(self, grant: Any, **options: Any) -> Any:
        from requests_tokenauth import TokenAuth

        return TokenAuth(grant, **options)

    def _make_caller(self, auth: Any) -> Caller:
        return _RequestsCaller(auth)


class HttpxDriver(Driver):
    name = "httpx"

    def auth_for(self, grant: Any, **options: Any) -> Any:
        from requests_tokenauth.httpx import TokenAuth

        return TokenAuth(grant, **options)

    def _make_caller(self, auth: Any) -> Caller:
        return _HttpxCaller(auth)


class AsyncHttpxDriver(HttpxDriver):
    name = "httpx-async"

    def _make_caller(self, auth: Any) -> Caller:
        return _AsyncHttpxCaller(auth)

    def waiting(self, auth: Any) -> Waiting:
        """Tasks never block on the manager's lock: a task that needs a token (or a
        replacement for a rejected one) awaits the one flight of its loop that gets it, on
        another thread; count the tasks that join a flight. (Only those can join while a
        token request is held: the other flights come after a token arrived.)"""
        flights = auth._flights
        run = flights.run
        joined = [0]
        changed = threading.Condition()

        async def counting_run(*args: Any) -> Any:
            with changed:
                joined[0] += 1
                changed.notify_all()
            return await run(*args)

        flights.run = counting_run

        def wait_for(n: int) -> bool:
            with changed:
                return changed.wait_for(lambda: joined[0] >= n, WAIT)

        return Waiting(lambda: joined[0], wait_for)

    def parked(self, calls: int) -> int:
        """The tasks of one loop share one flight: one thread waits on the clock for all."""
        return 1


DRIVERS: dict[str, Callable[[], Driver]] = {
    "requests": RequestsDriver,
    "httpx": HttpxDriver,
    "httpx-async": AsyncHttpxDriver,
}

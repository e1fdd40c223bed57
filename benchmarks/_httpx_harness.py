"""How the httpx scenarios drive a client: one body of scenario code for both flavours.

A :class:`Driver` sends requests with one configured library. For ``httpx.Client`` it uses
threads released by a barrier (as the requests scenarios do); for ``httpx.AsyncClient`` it
runs an event loop on a thread of its own and sends from tasks on that one loop, started
together. The scenario code calls the same blocking methods either way, from the main
thread. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Callable, Optional, TypeVar

import httpx

from ._harness import JOIN_GRACE_SECONDS, Params, Table, run_threads
from ._httpx_libraries import Builder, HttpxClient, HttpxLibrary
from ._libraries import insecure_loopback

T = TypeVar("T")

#: ``(start, seconds, outcome)`` of one request: ``start`` is ``time.monotonic()``.
Sample = tuple[float, float, str]


def _outcome(response: httpx.Response) -> str:
    return str(response.status_code)


class Driver:
    """Sends with one configured library; :meth:`close` (or ``with``) shuts it down."""

    asynchronous = False

    def __init__(self, built: HttpxClient) -> None:
        self.built = built

    def call(self, url: str) -> str:
        """One request: ``"200"``, another status, or the exception's class name."""
        client = self.built.client
        assert isinstance(client, httpx.Client)
        try:
            return _outcome(client.get(url))
        except Exception as exc:  # every library raises its own types
            return type(exc).__name__

    def many(self, n: int, url: str, deadline_seconds: float = 60.0) -> list[str]:
        """``n`` workers released together, one request each; their outcomes."""
        results = run_threads(n, lambda i: self.call(url), deadline_seconds)
        return [r if isinstance(r, str) else type(r).__name__ for r in results]

    def paced(self, n: int, url: str, until: float, pace: float) -> list[list[Sample]]:
        """``n`` workers, each sending a request every ``pace`` seconds at most until the
        monotonic instant ``until``."""
        results = run_threads(
            n, lambda i: _paced_sync(self.call, url, until, pace), until - time.monotonic()
        )
        return [r if isinstance(r, list) else [] for r in results]

    def repeat(self, n: int, url: str, count: int) -> tuple[float, int]:
        """``n`` workers send ``count`` requests each; ``(seconds, failed requests)``."""
        started = time.perf_counter()
        results = run_threads(n, lambda i: [self.call(url) for _ in range(count)], 120)
        elapsed = time.perf_counter() - started
        return elapsed, sum(
            sum(o != "200" for o in r) if isinstance(r, list) else count for r in results
        )

    def close(self) -> None:
        self.built.close()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LoopDriver(Driver):
    """A :class:`Driver` for ``httpx.AsyncClient``: an event loop on its own thread; the
    client is built, used and closed on it."""

    asynchronous = True

    def __init__(self, build: Builder, url: str, token: Optional[dict[str, Any]], margin: float):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="bench-loop", daemon=True
        )
        self._thread.start()

        async def built() -> HttpxClient:
            return build(url, token, margin)

        try:
            super().__init__(self.run(built()))
        except BaseException:
            self._stop()
            raise

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        """Run ``coroutine`` on the loop; wait at most ``timeout`` seconds for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def acall(self, url: str) -> str:
        client = self.built.client
        assert isinstance(client, httpx.AsyncClient)
        try:
            return _outcome(await client.get(url))
        except Exception as exc:
            return type(exc).__name__

    def call(self, url: str) -> str:
        return self.run(self.acall(url))

    def many(self, n: int, url: str, deadline_seconds: float = 60.0) -> list[str]:
        return self.run(_gather([self.acall(url) for _ in range(n)]), deadline_seconds + 30)

    def paced(self, n: int, url: str, until: float, pace: float) -> list[list[Sample]]:
        work = [_paced_async(self.acall, url, until, pace) for _ in range(n)]
        return self.run(_gather(work), until - time.monotonic() + JOIN_GRACE_SECONDS)

    def repeat(self, n: int, url: str, count: int) -> tuple[float, int]:
        async def worker() -> list[str]:
            return [await self.acall(url) for _ in range(count)]

        started = time.perf_counter()
        results = self.run(_gather([worker() for _ in range(n)]))
        elapsed = time.perf_counter() - started
        return elapsed, sum(sum(o != "200" for o in r) for r in results)

    def close(self) -> None:
        try:
            self.run(self.built.close(), 30)
            self.run(self.loop.shutdown_default_executor(), 30)
        finally:
            self._stop()

    def _stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        if not self._thread.is_alive():
            self.loop.close()


async def _gather(work: Sequence[Awaitable[T]]) -> list[T]:
    return list(await asyncio.gather(*work))


def _paced_sync(
    call: Callable[[str], str], url: str, until: float, pace: float, limit: int = 20_000
) -> list[Sample]:
    out: list[Sample] = []
    stop = threading.Event()
    for _ in range(limit):
        start = time.monotonic()
        if start >= until:
            break
        result = call(url)
        out.append((start, time.monotonic() - start, result))
        stop.wait(max(0.0, pace - (time.monotonic() - start)))
    return out


async def _paced_async(
    call: Callable[[str], Awaitable[str]], url: str, until: float, pace: float, limit: int = 20_000
) -> list[Sample]:
    out: list[Sample] = []
    for _ in range(limit):
        start = time.monotonic()
        if start >= until:
            break
        result = await call(url)
        out.append((start, time.monotonic() - start, result))
        await asyncio.sleep(max(0.0, pace - (time.monotonic() - start)))
    return out


@contextmanager
def driving(
    lib: HttpxLibrary,
    url: str,
    token: Optional[dict[str, Any]],
    margin: float,
    *,
    rotating: bool = False,
) -> Iterator[Driver]:
    """A :class:`Driver` for ``lib`` (its rotation set-up when ``rotating``), closed after."""
    build = (lib.build_rotating if rotating else None) or lib.build
    driver = (
        LoopDriver(build, url, token, margin)
        if lib.asynchronous
        else Driver(build(url, token, margin))
    )
    with driver:
        yield driver


def per_httpx_library(
    libraries: Sequence[HttpxLibrary],
    table: Table,
    run: Callable[[HttpxLibrary], dict[str, Any]],
    *,
    not_applicable: Callable[[HttpxLibrary], Optional[str]] = lambda lib: None,
    only: Optional[Callable[[HttpxLibrary], bool]] = None,
) -> Table:
    """A row per library: ``run(lib)``'s columns, or why it was skipped (``n/a: reason``
    from ``not_applicable``; ``only`` false: left out of this run, see :func:`only_ours`)."""
    for lib in libraries:
        row: dict[str, Any] = {"library": lib.name}
        reason = not_applicable(lib)
        if lib.version is None:
            row["skipped"] = "not installed"
        elif reason is not None:
            row["skipped"] = f"n/a: {reason}"
        elif only is not None and not only(lib):
            row["skipped"] = "left out of the quick run"
        else:
            with insecure_loopback():
                try:
                    row.update(run(lib))
                except Exception as exc:  # a library that breaks is a result, not a crash
                    row["skipped"] = f"failed to run: {type(exc).__name__}"
        table.rows.append(row)
    return table


def only_ours(p: Params, *, sync: bool = True) -> Optional[Callable[[HttpxLibrary], bool]]:
    """Who runs a scenario: everyone, or in the quick run (``httpx_everyone`` false) only
    ours, and only its ``AsyncClient`` flavour unless ``sync`` (the sync flavour's waits
    are the manager's, which the requests scenarios already measure)."""
    if p.httpx_everyone:
        return None
    return lambda lib: lib.name.startswith("requests-tokenauth") and (sync or lib.asynchronous)

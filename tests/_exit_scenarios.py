"""Delivery scenarios, each run in a fresh interpreter (``python -m tests._exit_scenarios
NAME``): what happens to a refresh or an ``on_token`` call still under way when the process
exits or forks. Each prints what its ``on_token`` saved; the test reads the output. (A fresh
interpreter for the same reason as ``tests/_fork_scenarios.py``.)"""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
import threading
from typing import Any

from requests_tokenauth import RefreshPolicy, TokenManager
from requests_tokenauth.testing import FakeClock
from tests._scripted import ScriptedGrant


def save(token: dict) -> None:
    """A durable save, as an application would write it: a file, fsync'd, then reported."""
    with tempfile.TemporaryFile() as f:
        f.write(token["access_token"].encode())
        f.flush()
        os.fsync(f.fileno())
    print("saved", token["access_token"], flush=True)


def stale_manager(on_token: Any) -> tuple[FakeClock, ScriptedGrant, TokenManager]:
    """A manager that obtained token-1 and whose clock has since made it stale: its next
    ``get_token`` starts a refresh ahead."""
    clock, grant = FakeClock(), ScriptedGrant()
    manager = TokenManager(
        grant,
        clock=clock,
        policy=RefreshPolicy(refresh_jitter_fraction=0),
        random=lambda: 1.0,
        on_token=on_token,
    )
    manager.get_token()
    clock.advance(80)  # stale
    return clock, grant, manager


def exit_during_refresh_ahead() -> int:
    """A refresh ahead is in flight on its worker thread when the main thread returns; the
    token endpoint answers (the server has rotated) only once the interpreter is exiting."""
    _, grant, manager = stale_manager(save)
    grant.gate.clear()
    manager.get_token()  # starts the refresh ahead; returns at once
    if not grant.entered.acquire(timeout=10):
        return 10
    # Registered after the library's own exit hook, so it runs first (atexit is LIFO).
    atexit.register(grant.gate.set)
    return 0


def fork_during_on_token() -> int:
    """A parent thread is inside ``on_token`` when the process forks: the child's own new
    token must still reach ``on_token`` (the parent's delivery does not exist there)."""
    parent = os.getpid()
    in_save, release = threading.Event(), threading.Event()
    saved: list[str] = []

    def slow_save(token: dict[str, Any]) -> None:
        if os.getpid() == parent and token["access_token"] == "token-2":
            in_save.set()
            release.wait(20)
        saved.append(token["access_token"])

    clock, _, manager = stale_manager(slow_save)
    manager.get_token()  # the refresh ahead obtains token-2; its save hangs
    if not in_save.wait(10):
        return 10
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            clock.advance(96)  # token-2 expired: the child renews
            token = manager.get_token()
            code = 0 if saved[-1:] == [token.access_token] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    release.set()
    if not manager.wait_for_refresh():
        return 11
    print("child exit", os.WEXITSTATUS(status), flush=True)
    return 0


if __name__ == "__main__":
    scenarios = {
        "exit_during_refresh_ahead": exit_during_refresh_ahead,
        "fork_during_on_token": fork_during_on_token,
    }
    sys.exit(scenarios[sys.argv[1]]())

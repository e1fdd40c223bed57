"""Exit scenarios, each run in a fresh interpreter (``python -m tests._exit_scenarios NAME``):
what happens to a refresh still under way when the process exits. Each prints what its
``on_token`` saved; the test reads the output."""

from __future__ import annotations

import atexit
import os
import sys
import tempfile

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


def exit_during_refresh_ahead() -> int:
    """A refresh ahead is in flight on its worker thread when the main thread returns; the
    token endpoint answers (the server has rotated) only once the interpreter is exiting."""
    clock, grant = FakeClock(), ScriptedGrant()
    manager = TokenManager(
        grant,
        clock=clock,
        policy=RefreshPolicy(refresh_jitter_fraction=0),
        random=lambda: 1.0,
        on_token=save,
    )
    manager.get_token()
    clock.advance(80)  # stale
    grant.gate.clear()
    manager.get_token()  # starts the refresh ahead; returns at once
    if not grant.entered.acquire(timeout=10):
        return 10
    # Registered after the library's own exit hook, so it runs first (atexit is LIFO).
    atexit.register(grant.gate.set)
    return 0


if __name__ == "__main__":
    sys.exit({"exit_during_refresh_ahead": exit_during_refresh_ahead}[sys.argv[1]]())

"""Fork scenarios, each run in a fresh interpreter (``python -m tests._fork_scenarios NAME``).

Forking inside the pytest process would copy every thread and log handler that earlier tests
left behind, and the child can then deadlock on a lock that is not ours (seen: a stream
handler's buffer lock). In a fresh interpreter the only threads are the scenario's own, so
what the child proves is exactly that *our* locks were renewed after ``fork()``.

Each scenario makes a parent thread hold the manager's lock in the middle of a token request,
forks, and has the child obtain a token. Exit status 0 means the child succeeded.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

import requests

from requests_tokenauth import ClientCredentials, RefreshPolicy, TokenAuth, TokenManager
from requests_tokenauth._clock import Clock
from requests_tokenauth.testing import AuthServer, FakeClock
from tests._scripted import ScriptedGrant

CHILD_TIMEOUT_SECONDS = 20.0


def wait_child(pid: int) -> int:
    """The child's exit code; a child still running after the timeout is killed (code 99)."""
    deadline = time.monotonic() + CHILD_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 98
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return 99


def scripted() -> int:
    """Manager over a scripted grant: the child's fresh lock lets it refresh at once."""
    clock, grant = FakeClock(), ScriptedGrant()
    manager = TokenManager(
        grant, clock=clock, policy=RefreshPolicy(refresh_jitter_fraction=0), random=lambda: 1.0
    )
    manager.get_token()
    clock.advance(96)  # expired
    grant.gate.clear()
    holder = threading.Thread(target=manager.get_token, daemon=True)
    holder.start()
    if not grant.entered.acquire(timeout=10):  # the holder is inside the token request
        return 10
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            grant.gate.set()
            if not manager._lock.acquire(timeout=5):
                code = 2
            else:
                manager._lock.release()
                code = 0 if manager.get_token().access_token.startswith("token-") else 3
        finally:
            os._exit(code)
    code = wait_child(pid)
    grant.gate.set()
    holder.join(10)
    return code


class ParentBlockingGrant(ClientCredentials):
    """Blocks the parent's token requests on an event; the child's go straight through."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parent = os.getpid()
        self.entered = threading.Event()
        self.release = threading.Event()

    def fetch(self, current: Any, clock: Clock) -> Any:
        if os.getpid() == self.parent:
            self.entered.set()
            if not self.release.wait(10):
                raise RuntimeError("never released")
        return super().fetch(current, clock)


def server() -> int:
    """TokenAuth against the real loopback server: the child gets a token and a 200."""
    with AuthServer() as auth_server:
        grant = ParentBlockingGrant(
            auth_server.token_url, client_id="svc", client_secret="svc-secret"
        )
        auth = TokenAuth(grant)
        holder = threading.Thread(target=auth.get_token, daemon=True)
        holder.start()
        if not grant.entered.wait(10):
            return 10
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                session = requests.Session()  # the child's own connections
                session.trust_env = False
                response = session.get(auth_server.resource_url, auth=auth, timeout=10)
                code = 0 if response.status_code == 200 else 71
            except BaseException:
                code = 72
            finally:
                os._exit(code)
        code = wait_child(pid)
        grant.release.set()
        holder.join(10)
        if code == 0 and auth_server.token_requests != 2:  # the child's and the parent's
            return 20
        return code


def keepalive() -> int:
    """The grant's private session after fork: the child opens its own connection instead
    of sharing the parent's keep-alive socket (where each would read the other's answers)."""
    clock = FakeClock()
    with AuthServer(clock=clock) as auth_server:
        grant = ClientCredentials(
            auth_server.token_url, client_id="svc", client_secret="svc-secret"
        )
        grant.fetch(None, clock)  # leaves a keep-alive connection in the grant's pool
        pid = os.fork()
        if pid == 0:
            code = 80
            try:
                grant.fetch(None, clock)
                code = 0
            except BaseException:
                code = 81
            finally:
                os._exit(code)
        code = wait_child(pid)
        if code:
            return code
        grant.fetch(None, clock)  # the parent still has its own connection
        # parent's connection + the child's own one; the old code reused the parent's
        return 0 if auth_server.connections_accepted == 2 else 30 + auth_server.connections_accepted


if __name__ == "__main__":
    scenarios = {"scripted": scripted, "server": server, "keepalive": keepalive}
    sys.exit(scenarios[sys.argv[1]]())

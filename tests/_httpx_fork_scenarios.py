"""Fork scenarios of the httpx driver, each run in a fresh interpreter
(``python -m tests._httpx_fork_scenarios NAME``; why a fresh one: ``tests/_fork_scenarios.py``).
Exit status 0 means the child succeeded."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

from requests_tokenauth import ClientCredentials, _httpx_tls
from requests_tokenauth.httpx import TokenAuth
from requests_tokenauth.testing import AuthServer
from tests._fork_scenarios import wait_child

#: How long the child's token request may take (a lock the child cannot take: forever).
CHILD_TOKEN_SECONDS = 10.0


def tls_locks() -> int:
    """A parent thread is making the async sender's TLS context (its locks held) when the
    process forks: the child's first async token request must not wait for that thread,
    which is not in the child."""
    with AuthServer() as auth_server:
        grant = ClientCredentials(
            auth_server.token_url, client_id="svc", client_secret="svc-secret"
        )
        auth = TokenAuth(grant)
        sending = auth._async_sending
        held, release = threading.Event(), threading.Event()

        def making_the_context() -> None:
            with _httpx_tls._default_contexts_lock, sending._ssl_lock:
                held.set()
                release.wait(30)

        maker = threading.Thread(target=making_the_context, daemon=True)
        maker.start()
        if not held.wait(10):
            return 10
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                token = asyncio.run(asyncio.wait_for(auth.aget_token(), CHILD_TOKEN_SECONDS))
                code = 0 if token.access_token else 71
            except BaseException:
                code = 72
            finally:
                os._exit(code)
        code = wait_child(pid)
        release.set()
        maker.join(10)
        return code


if __name__ == "__main__":
    scenarios = {"tls_locks": tls_locks}
    sys.exit(scenarios[sys.argv[1]]())

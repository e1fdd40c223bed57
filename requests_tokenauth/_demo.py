"""``python -m requests_tokenauth demo``: many threads, one session, several token expiries,
a server-side revocation, against the embedded authorization server. Prints what happened."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

import requests

from ._adapters import TokenAdapter
from ._auth import TokenAuth
from ._errors import TokenAuthError
from ._grants import RefreshToken
from .testing import AuthServer


@dataclass
class DemoResult:
    """What the demo saw; ``ok`` when every request succeeded."""

    requests: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    retried_after_401: int = 0
    tokens_saved: int = 0
    token_requests: dict[str, int] = field(default_factory=dict)
    token_errors: dict[str, int] = field(default_factory=dict)
    resource_401s: int = 0
    expiries: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and not self.token_errors


def run_demo(
    *,
    threads: int = 8,
    seconds: float = 6.0,
    lifetime_seconds: int = 2,
    out: TextIO = sys.stdout,
    max_requests_per_thread: int = 5_000,
) -> DemoResult:
    """Run the demo; bounded by ``seconds`` and by ``max_requests_per_thread``."""
    result = DemoResult()
    lock = threading.Lock()
    live = out.isatty()
    with AuthServer(token_lifetime_seconds=lifetime_seconds, rotate_refresh_tokens=True) as server:
        saved = server.issue_token("app", scopes=("read",), refresh=True, user="alice")

        def save(token: dict[str, object]) -> None:
            with lock:
                result.tokens_saved += 1

        grant = RefreshToken(server.token_url, client_id="app", client_secret="app-secret")
        auth = TokenAuth(grant, token=saved, on_token=save)
        session = requests.Session()
        session.trust_env = False
        # ``session.auth = auth`` (the README's drop-in) would do the same here, except under
        # an environment proxy: this server is plain http on 127.0.0.1, where a token must
        # never go through a proxy, and an auth cannot see that this session ignores
        # HTTP_PROXY (trust_env), so it refuses. The adapter form of the same auth sends
        # loopback requests with no proxy at all: the demo runs whatever the environment.
        session.mount(server.url + "/", TokenAdapter(auth, server.url, pool_maxsize=threads))
        start = time.monotonic()
        deadline = start + seconds
        revoke_at = start + seconds / 2
        revoked = threading.Event()

        def work() -> None:
            for _ in range(max_requests_per_thread):
                now = time.monotonic()
                if now >= deadline:
                    return
                if now >= revoke_at and not revoked.is_set():
                    with lock:
                        if not revoked.is_set():
                            server.revoke_all()  # every access token dies server-side at once
                            revoked.set()
                try:
                    response = session.get(server.resource_url, timeout=10)
                    failure = None if response.ok else f"HTTP {response.status_code}"
                    retried = bool(response.history)
                except (TokenAuthError, requests.RequestException) as exc:
                    failure, retried = type(exc).__name__, False
                with lock:
                    result.requests += 1
                    result.retried_after_401 += retried
                    if failure:
                        result.failures[failure] += 1

        workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
        print(
            f"embedded authorization server on {server.url}: {lifetime_seconds}s tokens, "
            f"rotating refresh tokens; {threads} threads share one session for {seconds:g}s, "
            "and every token is revoked half way",
            file=out,
        )
        for worker in workers:
            worker.start()
        printed_at = start
        while True:
            alive = [w for w in workers if w.is_alive()]
            if alive:
                alive[0].join(timeout=max(0.05, min(1.0, deadline - time.monotonic())))
            now = time.monotonic()
            if alive and now - printed_at < 1.0:
                continue
            printed_at = now
            with lock:
                line = (
                    f"{now - start:5.1f}s  requests {result.requests:6d}  "
                    f"failed {sum(result.failures.values()):3d}  token requests "
                    f"{server.token_requests:3d}  401 retries {result.retried_after_401:3d}"
                )
            print("\r" + line if live else line, end="" if live else "\n", file=out, flush=True)
            if not alive:
                break
        if live:
            print(file=out)
        auth.manager.wait_for_refresh()
        result.seconds = time.monotonic() - start
        result.token_requests = server.token_requests_by_grant
        result.token_errors = server.token_errors
        result.resource_401s = server.resource_401s
        result.expiries = int(result.seconds // lifetime_seconds)
    _summary(result, out)
    return result


def _summary(result: DemoResult, out: TextIO) -> None:
    token_requests = sum(result.token_requests.values())
    lines = [
        "",
        f"requests sent            {result.requests}",
        f"requests failed          {sum(result.failures.values())}"
        + (f"  ({dict(result.failures)})" if result.failures else ""),
        f"token requests           {token_requests}  {result.token_requests}",
        f"token lifetimes elapsed  {result.expiries}",
        f"401s answered by a retry {result.retried_after_401}"
        f"  (server sent {result.resource_401s})",
        f"rotated tokens saved     {result.tokens_saved}",
        f"token endpoint errors    {sum(result.token_errors.values())}"
        + (f"  ({result.token_errors})" if result.token_errors else ""),
        "",
        "OK: every request succeeded; one token request per refresh, however many threads"
        if result.ok
        else "FAILED: some requests did not succeed (see above)",
    ]
    print("\n".join(lines), file=out)

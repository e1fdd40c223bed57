"""A grant whose answers a test scripts: for manager tests that need no HTTP at all."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from typing import Optional, Union

from requests_tokenauth import ClientCredentials, Token
from requests_tokenauth._clock import Clock

Answer = Union[float, None, Exception]  # a lifetime, no lifetime, or an error to raise


class ScriptedGrant(ClientCredentials):
    """Counts fetches; answers from a script (default: 100 s tokens); can hold every fetch
    on an event until the test releases it."""

    def __init__(self, *answers: Answer, lifetime: Optional[float] = 100.0) -> None:
        super().__init__("https://idp.test/token", client_id="svc", client_secret="s")
        self.script: deque[Answer] = deque(answers)
        self.lifetime = lifetime
        self.calls = 0
        self.refreshed_from: list[Optional[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def fetch(self, current: Optional[Token], clock: Clock) -> Token:
        with self._lock:
            self.calls += 1
            n = next(self._ids)
            answer = self.script.popleft() if self.script else self.lifetime
        self.refreshed_from.append(current.access_token if current else None)
        sent_mono, sent_at = clock.monotonic(), clock.time()
        self.entered.release()
        assert self.gate.wait(10), "test never released the grant"
        if isinstance(answer, Exception):
            raise answer
        data: dict = {
            "access_token": f"token-{n}",
            "token_type": "Bearer",
            "refresh_token": f"rt-{n}",
        }
        if answer is not None:
            data["expires_in"] = answer
        return Token.from_response(data, obtained_monotonic=sent_mono, obtained_at=sent_at)

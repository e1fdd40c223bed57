"""``on_token`` callbacks that want to know which token the new one replaces (a saver that
finds its row by the old refresh token, as Authlib's ``update_token`` does)."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Mapping
from typing import Any, Callable, Optional

#: The keyword an ``on_token`` callback declares to be given the token it replaces.
PREVIOUS = "previous"


def wants_previous(callback: Callable[..., Any]) -> bool:
    """Whether ``callback`` declares a parameter named ``previous`` that can be passed by
    keyword (``**kwargs`` does not count). Callables whose signature cannot be read get the
    token only."""
    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        (p.name == PREVIOUS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        for p in parameters
    )


class PreviousTokenCallback:
    """Calls ``callback(token, previous=...)``: ``previous`` is the last token this callback
    accepted (returned without raising), or the saved token the auth started from, or
    ``None``. A save that raised does not advance it, so the next delivery still names the
    token the application's row holds.

    Thread-safe for reading and advancing ``previous``; it relies on the manager to deliver
    one token at a time, in the order they were obtained (two deliveries at once would both
    name the same ``previous``). Picklable if ``callback`` is.
    """

    def __init__(
        self, callback: Callable[..., Any], initial: Optional[Mapping[str, Any]] = None
    ) -> None:
        self.callback = callback
        self._previous = dict(initial) if initial is not None else None
        self._lock = threading.Lock()  # never held while the user's callback runs

    def __call__(self, token: dict[str, Any]) -> None:
        with self._lock:
            previous = None if self._previous is None else dict(self._previous)
        self.callback(token, **{PREVIOUS: previous})
        with self._lock:
            self._previous = dict(token)

    def __repr__(self) -> str:
        return f"PreviousTokenCallback({self.callback!r})"

    def __getstate__(self) -> dict[str, Any]:
        # a pickle is not a secure store, and the copy saves its own tokens from now on
        return {"callback": self.callback}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.callback = state["callback"]
        self._previous = None
        self._lock = threading.Lock()


def token_callback(
    callback: Optional[Callable[..., Any]], initial: Optional[Mapping[str, Any]]
) -> Optional[Callable[[dict[str, Any]], None]]:
    """``callback`` as the manager's one-argument ``on_token``: wrapped when it declares
    ``previous``, else unchanged."""
    if callback is None or not wants_previous(callback):
        return callback
    return PreviousTokenCallback(callback, initial)

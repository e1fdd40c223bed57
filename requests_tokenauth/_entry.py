"""_Entry: the published token with its deadlines, and the small predicates over entries that
the manager, the store renewal and the 401 replacement share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ._clock import Clock
from ._policy import Deadlines, RefreshPolicy, deadlines
from ._token import Token


@dataclass(frozen=True)
class Entry:
    """The published token with its deadlines and why it was obtained."""

    __slots__ = ("token", "deadlines", "cause")

    token: Token
    deadlines: Deadlines
    cause: str  # "given", "stored", "missing", "expired", "ahead" or "unauthorized"


def make_entry(
    token: Token, cause: str, policy: RefreshPolicy, draw: float, lead_seconds: float = 0.0
) -> Entry:
    """``token`` with its deadlines under ``policy`` (``draw`` in [0, 1) sets the jitter;
    ``lead_seconds``: how long before expiry a renewal must start at the latest)."""
    return Entry(token, deadlines(token, policy, draw, lead_seconds=lead_seconds), cause)


def token_from_dict(data: Mapping[str, Any], clock: Clock) -> Token:
    """A saved token dict, its lifetime placed on ``clock``.

    :raises TokenFormatError: the dict is not a usable token.
    """
    return Token.from_dict(data, now_monotonic=clock.monotonic(), now=clock.time())


#: Whether an entry (or none) at a monotonic instant must be renewed.
Needed = Callable[[Optional[Entry], float], bool]


def expired(entry: Optional[Entry], now: float) -> bool:
    return entry is None or now >= entry.deadlines.expired_monotonic


def stale(entry: Optional[Entry], now: float) -> bool:
    return entry is None or now >= entry.deadlines.stale_monotonic


def same_token(token: Token, other: Token) -> bool:
    """Same token? Tokens loaded from a store are new objects, so compare the value."""
    return token is other or token.access_token == other.access_token


def newer(a: Optional[Entry], b: Optional[Entry]) -> Optional[Entry]:
    """The entry obtained later (it holds the newest, possibly rotated, refresh token)."""
    if a is None or b is None:
        return a or b
    return a if a.token.obtained_monotonic >= b.token.obtained_monotonic else b

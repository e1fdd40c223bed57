"""_Entry: the published token with its deadlines, and the small predicates over entries that
the manager, the store renewal and the 401 replacement share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ._policy import Deadlines
from ._token import Token


@dataclass(frozen=True)
class Entry:
    """The published token with its deadlines and why it was obtained."""

    __slots__ = ("token", "deadlines", "cause")

    token: Token
    deadlines: Deadlines
    cause: str  # "given", "stored", "missing", "expired", "ahead" or "unauthorized"


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


def is_older(a: Entry, b: Optional[Entry]) -> bool:
    """Whether ``a`` was obtained strictly before ``b`` (and is not the same token): adopting
    it would bring back a refresh token that ``b``'s renewal may already have spent."""
    if b is None or same_token(a.token, b.token):
        return False
    return a.token.obtained_monotonic < b.token.obtained_monotonic

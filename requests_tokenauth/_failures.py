"""Failure: what the manager remembers about failed token requests, and the error each
caller gets while the backoff lasts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ._errors import TokenAuthError, TokenRefreshError
from ._policy import RefreshPolicy, backoff_seconds
from ._token import FrozenSlots


@dataclass(frozen=True)
class Failure(FrozenSlots):
    """Failed attempts in a row, and when the next token request may go out. Immutable."""

    __slots__ = ("count", "next_attempt_monotonic", "error")

    count: int
    next_attempt_monotonic: float
    error: TokenAuthError

    @classmethod
    def after(
        cls,
        previous: Optional[Failure],
        error: TokenAuthError,
        *,
        now: float,
        policy: RefreshPolicy,
        draw: float,
        token_valid: bool,
    ) -> Failure:
        """The failure streak once ``error`` has happened at monotonic ``now``.

        :param previous: the streak so far (``None`` after a success).
        :param draw: in [0, 1), for the backoff's full jitter.
        :param token_valid: whether a valid token is still in use (a longer backoff is fine).
        """
        count = previous.count + 1 if previous is not None else 1
        retry_after = getattr(error, "retry_after_seconds", None)
        wait = backoff_seconds(count, policy, draw, retry_after, token_valid=token_valid)
        return cls(count, now + wait, error)

    def error_for_caller(self, now: float) -> TokenAuthError:
        """A new exception of the remembered error's type, saying when the next attempt is
        due. A fresh object per caller: one exception raised in many threads would share
        (and grow) a single traceback."""
        exc = self.error
        wait = self.next_attempt_monotonic - now
        message = f"{exc} (failed {self.count} time(s) in a row; next attempt in {wait:.2f}s)"
        clone: TokenAuthError
        if isinstance(exc, TokenRefreshError):
            clone = type(exc)(
                message,
                error=exc.error,
                error_description=exc.error_description,
                error_uri=exc.error_uri,
                status_code=exc.status_code,
                retry_after_seconds=exc.retry_after_seconds,
                body=exc.body,
            )
        else:
            clone = type(exc)(message)
        clone.next_attempt_in_seconds = wait
        return clone

"""One request to the authorization server as the manager makes it: a token request reported
as events before and after it (its failure recorded by the manager, which knows when the next
attempt may go out), and the revocation of a token. The caller holds the manager's lock."""

from __future__ import annotations

from typing import Callable, Optional

from ._clock import Clock
from ._delivery import Outbox
from ._errors import TokenAuthError, TokenRefreshError
from ._grants import Grant
from ._token import Token


def fetch_reported(
    grant: Grant,
    current: Optional[Token],
    *,
    cause: str,
    attempt: int,
    clock: Clock,
    outbox: Outbox,
    record_failure: Callable[[TokenAuthError], float],
    publish: Callable[[Token], None],
) -> Token:
    """One token request from ``current`` (``refresh_started``, then ``refresh_succeeded``
    or ``refresh_failed``). ``publish`` makes the new token current before its success is
    reported; ``record_failure`` remembers a failure and returns the wait before the next
    attempt.

    :raises TokenRefreshError: the token request failed.
    """
    outbox.event("refresh_started", cause, attempt=attempt)
    started = clock.monotonic()
    try:
        token = grant.fetch(current, clock)
    except TokenRefreshError as exc:
        wait = record_failure(exc)
        outbox.event(
            "refresh_failed",
            cause,
            attempt=attempt,
            duration_seconds=clock.monotonic() - started,
            error=exc.error or type(exc).__name__,
            retryable=exc.retryable,
            next_attempt_in_seconds=wait,
        )
        raise
    publish(token)
    outbox.event(
        "refresh_succeeded",
        cause,
        attempt=attempt,
        duration_seconds=clock.monotonic() - started,
        token=token,
    )
    return token


def revoke_token(grant: Grant, token: Token, clock: Clock) -> None:
    """Revoke ``token`` (RFC 7009): its refresh token, or the access token when it has none.

    :raises ConfigurationError: the grant knows no revocation endpoint.
    :raises TokenRefreshError: the revocation request failed.
    """
    if token.refresh_token:
        grant.revoke(token.refresh_token, "refresh_token", clock)
    else:
        grant.revoke(token.access_token, "access_token", clock)

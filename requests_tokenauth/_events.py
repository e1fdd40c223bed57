"""TokenEvent: what the manager reports about token requests and 401 retries."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

from ._token import FrozenSlots

log = logging.getLogger("requests_tokenauth")

#: The kinds of event, in the order one refresh produces them.
EVENT_KINDS = (
    "refresh_started",
    "refresh_succeeded",
    "refresh_failed",
    "token_loaded",
    "unauthorized_retry",
    "delivery_failed",
    "token_redelivered",
    "unauthorized_not_retried",
)

_LEVELS = {
    "refresh_started": logging.DEBUG,
    "refresh_succeeded": logging.INFO,
    "refresh_failed": logging.WARNING,
    "token_loaded": logging.DEBUG,
    "unauthorized_retry": logging.INFO,
    "delivery_failed": logging.WARNING,
    "token_redelivered": logging.INFO,
    "unauthorized_not_retried": logging.INFO,
}


@dataclass(frozen=True)
class TokenEvent(FrozenSlots):
    """One thing that happened to a token. Immutable; holds no secret.

    :ivar kind: one of ``refresh_started``, ``refresh_succeeded``, ``refresh_failed``,
        ``token_loaded`` (taken from a shared store, no token request),
        ``unauthorized_retry`` (a 401 answered by one retry with another token),
        ``unauthorized_not_retried`` (the token was replaced after a 401 but the request
        was not re-sent; ``error`` says why, e.g. ``body_not_replayable``),
        ``delivery_failed`` (``on_token`` raised; ``next_attempt_in_seconds`` says when the
        token is handed to it again, ``None`` if a newer token is on its way instead) and
        ``token_redelivered`` (a retried ``on_token`` succeeded).
    :ivar grant_type: the grant that obtains the tokens.
    :ivar cause: why: ``missing``, ``expired``, ``ahead`` (refresh ahead of expiry),
        ``unauthorized`` (a 401) or ``given``.
    :ivar attempt: 1 for the first token request after a success, then 2, 3... while failing
        (for ``delivery_failed``: the failed ``on_token`` calls in a row).
    :ivar duration_seconds: how long the token request took (``refresh_succeeded/failed``).
    :ivar error: the OAuth error code or the exception's class name (``refresh_failed``,
        ``delivery_failed``), or why a request was not re-sent (``unauthorized_not_retried``).
    :ivar retryable: whether the failure may pass by itself (``refresh_failed``).
    :ivar next_attempt_in_seconds: the backoff before the next token request (``refresh_failed``).
    :ivar fingerprint: a short hash of the token obtained or retried with; never the token.
    """

    __slots__ = (
        "kind",
        "grant_type",
        "cause",
        "attempt",
        "duration_seconds",
        "error",
        "retryable",
        "next_attempt_in_seconds",
        "fingerprint",
    )

    kind: str
    grant_type: str
    cause: str
    attempt: int
    duration_seconds: Optional[float]
    error: Optional[str]
    retryable: Optional[bool]
    next_attempt_in_seconds: Optional[float]
    fingerprint: Optional[str]

    def to_dict(self) -> dict[str, Any]:
        """The event as a plain dict (for JSON logs and metrics)."""
        return asdict(self)


EventCallback = Callable[[TokenEvent], None]


def log_event(event: TokenEvent) -> None:
    """Log ``event`` as a structured record (``record.tokenauth_event``)."""
    if log.isEnabledFor(_LEVELS[event.kind]):
        details = ", ".join(
            f"{k}={v}" for k, v in event.to_dict().items() if v is not None and k != "kind"
        )
        log.log(
            _LEVELS[event.kind], "%s: %s", event.kind, details, extra={"tokenauth_event": event}
        )


def call_back(event: TokenEvent, callback: Optional[EventCallback]) -> None:
    """Hand ``event`` to the user's callback, whose failure is logged, never raised."""
    if callback is not None:
        try:
            callback(event)
        except Exception as exc:  # observability must never fail a request
            log.error("on_event callback raised %s", type(exc).__name__)

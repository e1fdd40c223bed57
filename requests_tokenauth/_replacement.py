"""The manager's answer to a rejected token (a 401, or another refresh status): replace it
once, only if it is still the current one, and not again within the policy's cooldown when
it was itself obtained after a rejection; report the retry, or why there is none."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

from ._delivery import Outbox
from ._entry import Entry, Needed, expired, same_token
from ._policy import RefreshPolicy
from ._token import Token

if TYPE_CHECKING:
    from ._clock import Clock

log = logging.getLogger("requests_tokenauth")


class Replacing:
    """Mixed into :class:`~requests_tokenauth.TokenManager`, which provides the state."""

    _entry: Optional[Entry]
    _clock: Clock
    _policy: RefreshPolicy
    _outbox: Outbox

    if TYPE_CHECKING:

        def _renew(self, needed: Needed, cause: str, *, serve_accepted: bool = False) -> Token:
            ...

    def replace(self, rejected: Token) -> Optional[Token]:
        """The token to retry with after ``rejected`` got a 401, or ``None`` for no retry.

        Refreshes only if ``rejected`` is still the current token; if another thread (or,
        with a store, another process) has already replaced it, the newer token is returned
        with no token request. A token that was itself obtained because of a 401 is not
        replaced again within the policy's cooldown: a resource that rejects every token
        must not cause a refresh storm. While the token endpoint fails transiently, the
        caller waits for the next attempts as :meth:`get_token` does.

        :raises TokenRefreshError: the token request failed (after ``max_wait_seconds``).
        """
        entry = self._entry
        now = self._clock.monotonic()
        if entry is not None:
            current = same_token(entry.token, rejected)
            if not current and not expired(entry, now):
                return entry.token  # already replaced
            if current and not self._may_replace(entry, now):
                return None

        def needed(entry: Optional[Entry], now: float) -> bool:
            if expired(entry, now):
                return True
            assert entry is not None
            return same_token(entry.token, rejected) and self._may_replace(entry, now)

        new = self._renew(needed, "unauthorized")
        return None if same_token(new, rejected) else new

    def _may_replace(self, entry: Entry, now: float) -> bool:
        if entry.cause != "unauthorized":
            return True
        cooldown = self._policy.unauthorized_cooldown_seconds
        if now >= entry.token.obtained_monotonic + cooldown:
            return True
        log.info("a token obtained after a 401 was rejected again; not replacing it yet")
        return False

    def notify_retry(self, token: Token) -> None:
        """Report that a request is being retried with ``token`` after a 401."""
        self._outbox.event("unauthorized_retry", "unauthorized", token=token)
        self._outbox.flush()

    def notify_not_retried(self, reason: str, token: Optional[Token]) -> None:
        """Report that a request was not re-sent after a 401 (``reason``), though its token
        was replaced by ``token`` (``None``: not replaced) for the next request."""
        self._outbox.event("unauthorized_not_retried", "unauthorized", error=reason, token=token)
        self._outbox.flush()


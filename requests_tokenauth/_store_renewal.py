"""StoreSlot: renewal with a shared store (lock, reload, adopt or request, save), the seeding
of an empty store with ``token=``, and revocation of the newest shared token."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Callable, Optional

from ._clock import Clock
from ._entry import Entry, Needed, make_entry, newer, same_token, token_from_dict
from ._errors import TokenStoreError
from ._policy import RefreshPolicy
from ._token import Token, TokenFormatError

log = logging.getLogger("requests_tokenauth")


class StoreSlot:
    """One key of a :class:`TokenStore`, as one manager sees it. Not thread-safe by itself:
    the manager calls it with its own lock held, and every method that reads and writes
    takes the store's lock."""

    def __init__(
        self,
        store: Any,
        key: str,
        seed: Optional[Token],
        *,
        clock: Clock,
        policy: RefreshPolicy,
        random: Callable[[], float],
    ) -> None:
        self.store = store
        self.key = key
        self.seed = seed  # ``token=``: only seeds a store that holds no token for the key
        self._clock = clock
        self._policy = policy
        self._random = random
        self._behind: Optional[Token] = None  # what the store holds after a failed save

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "seed": None, "_behind": None}  # a pickle is no secure store

    def renew(
        self,
        entry: Optional[Entry],
        needed: Needed,
        fetch: Callable[[Optional[Entry]], Token],
    ) -> tuple[Optional[Entry], Optional[Token]]:
        """Under the store's lock: reload; adopt the stored token if it is not ``needed``;
        otherwise ``fetch`` from the newest of it and ``entry``, and save.

        After a failed save the store still holds the token this manager renewed from,
        whose refresh token that renewal spent (a rotating server answers ``invalid_grant``
        to it). Until the store holds something else, that token is never adopted and
        ``entry`` is renewed instead.

        :returns: ``(adopted, None)`` or ``(None, new token)``.
        :raises TokenStoreError: the store could not be locked.
        """
        with self.store.lock(self.key):
            stored = self.load()
            behind = self._behind
            if behind is not None and (stored is None or not same_token(stored.token, behind)):
                behind = self._behind = None  # saved since, by us or by another process
            if behind is not None:
                log.info("token store still holds the token this one replaced; not adopting it")
                base = entry
            elif stored is not None and not needed(stored, self._clock.monotonic()):
                return stored, None
            else:
                base = newer(stored, entry)
            token = fetch(base)
            if self.save(token):
                self._behind = None
            elif stored is not None and behind is None:
                self._behind = stored.token
            return None, token

    def load(self) -> Optional[Entry]:
        """The store's token (seeding it with ``token=`` when empty); ``None`` if it has none
        or what it has cannot be read (a good token will replace it). The caller holds the
        store's lock."""
        try:
            data = self.store.load(self.key)
        except TokenStoreError as exc:
            log.warning("token store could not load: %s; a new token will replace it", exc)
            data = None
        if data is None:
            seed, self.seed = self.seed, None
            if seed is None:
                return None
            with contextlib.suppress(TokenStoreError):
                self.store.save(self.key, seed.to_dict())
            return self._entry(seed, "given")
        self.seed = None
        try:
            token = token_from_dict(data, self._clock)
        except TokenFormatError as exc:
            log.warning("token store holds an unusable token (%s); replacing it", exc)
            return None
        return self._entry(token, "stored")

    def _entry(self, token: Token, cause: str) -> Entry:
        return make_entry(token, cause, self._policy, self._random())

    def save(self, token: Token) -> bool:
        """Save a new token; a failure is logged (the token is in use, and :meth:`renew`
        does not go back to the older stored one). Returns whether it was saved."""
        try:
            self.store.save(self.key, token.to_dict())
        except TokenStoreError as exc:
            log.error("token store could not save the new token: %s", exc)
            return False
        return True

    @contextlib.contextmanager
    def newest_for_revocation(self, entry: Optional[Entry]) -> Iterator[Optional[Entry]]:
        """Under the store's lock: the newest of the stored token and ``entry`` (another
        process may have rotated the refresh token since this one last looked); the key is
        deleted when the block ends, whatever happened in it."""
        with self.store.lock(self.key):
            self.seed = None  # revoking ends the sharing this seed was meant for
            try:
                yield newer(self.load(), entry)
            finally:
                self.store.delete(self.key)

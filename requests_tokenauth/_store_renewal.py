"""StoreSlot: renewal with a shared store (read; else lock, reload, adopt or request, save),
the seeding of an empty store with ``token=``, and revocation of the newest shared token."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Callable, Optional

from ._clock import Clock
from ._entry import Entry, Needed, make_entry, newer, same_token, token_from_dict
from ._errors import TokenStoreError
from ._policy import RefreshPolicy, renewal_lead_seconds
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
        #: How long the last renewal that took the lock lasted (lock wait included).
        self.renewal_seconds = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "seed": None, "_behind": None}  # a pickle is no secure store

    def renew(
        self,
        entry: Optional[Entry],
        needed: Needed,
        fetch: Callable[[Optional[Entry]], Token],
    ) -> tuple[Optional[Entry], Optional[Token]]:
        """Read before locking: adopt the stored token if it is :meth:`better` than
        ``entry``. Otherwise take the store's lock (giving up the wait as soon as a better
        token appears, with a store that offers ``lock_unless``), reload, adopt the stored
        token if it is not ``needed``, else ``fetch`` from the newest of it and ``entry``,
        and save. So a round costs a fleet about one lock acquisition: the processes that
        turn stale after the new token was saved read it, and those queued behind the
        renewing one leave the queue when it saves.

        After a failed save the store still holds the token this manager renewed from,
        whose refresh token that renewal spent (a rotating server answers ``invalid_grant``
        to it). Until the store holds something else, that token is never adopted and
        ``entry`` is renewed instead.

        How long a renewal that took the lock lasted, from the first read to the save, is
        kept in :attr:`renewal_seconds`: the refresh ahead starts early enough for it.

        :returns: ``(adopted, None)`` or ``(None, new token)``.
        :raises TokenStoreError: the store could not be locked.
        """
        started = self._clock.monotonic()
        found = self.better(entry, needed)
        if found is not None:
            return found, None
        adopted: list[Entry] = []

        def satisfied() -> bool:
            better = self.better(entry, needed)
            if better is not None:
                adopted.append(better)
            return better is not None

        try:
            with self._lock_unless(satisfied) as held:
                if not held:
                    return adopted[-1], None
                return self._renew_locked(entry, needed, fetch)
        finally:
            self.renewal_seconds = self._clock.monotonic() - started

    def _renew_locked(
        self,
        entry: Optional[Entry],
        needed: Needed,
        fetch: Callable[[Optional[Entry]], Token],
    ) -> tuple[Optional[Entry], Optional[Token]]:
        stored = self.load()
        behind = self._behind
        if behind is not None and (stored is None or not same_token(stored.token, behind)):
            behind = self._behind = None  # saved since, by us or by another process
        if behind is not None:
            log.info("token store still holds the token this one replaced; not adopting it")
            base = entry
        elif stored is not None and self._replaces(stored, entry, needed):
            return stored, None
        else:
            base = newer(stored, entry)
        token = fetch(base)
        if self.save(token):
            self._behind = None
        elif stored is not None and behind is None:
            self._behind = stored.token
        return None, token

    def better(self, entry: Optional[Entry], needed: Needed) -> Optional[Entry]:
        """The store's token, read without its lock, if it can replace ``entry`` now: it is
        the record the store holds for this key (read, decrypted and checked as under the
        lock), another token than ``entry``'s, not ``needed``, and not the one a failed
        save left behind. ``None`` otherwise, or if the store cannot be read (the locked
        path then decides, and logs)."""
        try:
            data = self.store.load(self.key)
        except TokenStoreError:
            return None
        if data is None:
            return None
        self.seed = None  # the store has a token: ``token=`` will seed nothing
        try:
            token = token_from_dict(data, self._clock)
        except TokenFormatError:
            return None
        behind = self._behind
        if behind is not None and same_token(token, behind):
            return None
        stored = self._entry(token, "stored")
        return stored if self._replaces(stored, entry, needed) else None

    def _replaces(self, stored: Entry, entry: Optional[Entry], needed: Needed) -> bool:
        """Whether ``stored`` may replace ``entry``: not ``needed``, and another token
        (the same token read back would only get new jittered deadlines, a later refresh,
        and one more lock for nothing)."""
        if entry is not None and same_token(stored.token, entry.token):
            return False
        return not needed(stored, self._clock.monotonic())

    @contextlib.contextmanager
    def _lock_unless(self, satisfied: Callable[[], bool]) -> Iterator[bool]:
        """The store's lock (yields ``True``), or, with a store that can, ``False`` without
        it as soon as ``satisfied()`` while waiting."""
        lock_unless = getattr(self.store, "lock_unless", None)
        if lock_unless is None:
            with self.store.lock(self.key):
                yield True
            return
        with lock_unless(self.key, satisfied) as held:
            yield bool(held)

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
        return make_entry(token, cause, self._policy, self._random(), self.lead_seconds())

    def lead_seconds(self) -> float:
        """How long before expiry the refresh ahead must start, from the last renewal."""
        return renewal_lead_seconds(self.renewal_seconds)

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

"""StoreSlot: renewal with a shared store (lock, reload, adopt or request, save), the seeding
of an empty store with ``token=``, and revocation of the newest shared token."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Optional

from ._entry import Entry, Needed, is_older, newer
from ._errors import TokenStoreError
from ._token import Token, TokenFormatError

log = logging.getLogger("requests_tokenauth")

MakeEntry = Callable[[Token, str], Entry]
TokenFromDict = Callable[[Mapping[str, Any]], Token]


class StoreSlot:
    """One key of a :class:`TokenStore`, as one manager sees it. Not thread-safe by itself:
    the manager calls it with its own lock held, and every method that reads and writes
    takes the store's lock."""

    def __init__(self, store: Any, key: str, seed: Optional[Token]) -> None:
        self.store = store
        self.key = key
        self.seed = seed  # ``token=``: only seeds a store that holds no token for the key

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "seed": None}  # a pickle is not a secure store

    def renew(
        self,
        entry: Optional[Entry],
        needed: Needed,
        fetch: Callable[[Optional[Entry]], Token],
        make_entry: MakeEntry,
        token_from_dict: TokenFromDict,
        now: Callable[[], float],
    ) -> tuple[Optional[Entry], Optional[Token]]:
        """Under the store's lock: reload; adopt the stored token if it is not ``needed`` and
        not older than ``entry``; otherwise ``fetch`` from the newest of the two and save.

        A stored token older than the one in memory is never adopted: it is what is left
        when a save failed, and its refresh token was spent by the renewal that obtained
        ``entry`` (using it again gets ``invalid_grant`` from a rotating server).

        :returns: ``(adopted, None)`` or ``(None, new token)``.
        :raises TokenStoreError: the store could not be locked.
        """
        with self.store.lock(self.key):
            stored = self.load(make_entry, token_from_dict)
            if stored is not None and not needed(stored, now()) and not is_older(stored, entry):
                return stored, None
            if stored is not None and is_older(stored, entry):
                log.info("token store holds an older token than this process; not adopting it")
            token = fetch(newer(stored, entry))
            self.save(token)
            return None, token

    def load(self, make_entry: MakeEntry, token_from_dict: TokenFromDict) -> Optional[Entry]:
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
            return make_entry(seed, "given")
        self.seed = None
        try:
            token = token_from_dict(data)
        except TokenFormatError as exc:
            log.warning("token store holds an unusable token (%s); replacing it", exc)
            return None
        return make_entry(token, "stored")

    def save(self, token: Token) -> None:
        """Save a new token; a failure is logged (the token is in use, and a later renewal
        never goes back to the older stored one)."""
        try:
            self.store.save(self.key, token.to_dict())
        except TokenStoreError as exc:
            log.error("token store could not save the new token: %s", exc)

    @contextlib.contextmanager
    def newest_for_revocation(
        self, entry: Optional[Entry], make_entry: MakeEntry, token_from_dict: TokenFromDict
    ) -> Iterator[Optional[Entry]]:
        """Under the store's lock: the newest of the stored token and ``entry`` (another
        process may have rotated the refresh token since this one last looked); the key is
        deleted when the block ends, whatever happened in it."""
        with self.store.lock(self.key):
            self.seed = None  # revoking ends the sharing this seed was meant for
            try:
                yield newer(self.load(make_entry, token_from_dict), entry)
            finally:
                self.store.delete(self.key)

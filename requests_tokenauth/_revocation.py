"""The manager's revocation of its token (RFC 7009): under its lock, with a store under the
store's lock too, the newest token revoked and then forgotten everywhere."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Optional

from ._attempt import revoke_token
from ._entry import Entry
from ._failures import Failure
from ._grants import Grant
from ._grants._wire import Sender, sending_by_default
from ._store_renewal import StoreSlot

if TYPE_CHECKING:
    from ._clock import Clock


class Revoking:
    """Mixed into :class:`~requests_tokenauth.TokenManager`, which provides the state."""

    grant: Grant
    _entry: Optional[Entry]
    _failure: Optional[Failure]
    _clock: Clock
    _lock: threading.RLock
    _store: Optional[StoreSlot]
    _sender: Optional[Sender]

    if TYPE_CHECKING:

        def _acquire(self) -> None: ...

    def revoke(self) -> bool:
        """Revoke the current token at the grant's revocation endpoint (RFC 7009): its
        refresh token, or the access token when it has none; then forget it (the next call
        obtains a new one). Holds the lock, so no refresh races the revocation; the token is
        forgotten even if the revocation request fails.

        With a shared store, the revocation happens under the store's lock and revokes the
        newest of the stored token and this manager's (another process may have rotated the
        refresh token since this one last looked), then removes it from the store, so that
        no sharer keeps using it and no live refresh token is left behind.

        :returns: whether there was a token to revoke.
        :raises ConfigurationError: the grant knows no revocation endpoint.
        :raises TokenRefreshError: the revocation request failed.
        :raises TokenStoreError: the store could not be locked or the token removed.
        """
        self._acquire()
        try:
            if self._store is None:
                return self._revoke(self._entry)
            with self._store.newest_for_revocation(self._entry) as newest:
                return self._revoke(newest)
        finally:
            self._lock.release()

    def _revoke(self, entry: Optional[Entry]) -> bool:
        try:
            if entry is not None:
                with sending_by_default(self._sender):
                    revoke_token(self.grant, entry.token, self._clock)
            return entry is not None
        finally:
            self._entry = None
            self._failure = None


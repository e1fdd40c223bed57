"""The TokenStore protocol, store keys, and the in-process MemoryStore."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Optional, Protocol, runtime_checkable

from .._errors import ConfigurationError, TokenStoreError
from .._grants import Grant

#: Every derived key starts with this, so a shared Redis or directory shows whose keys they are.
KEY_PREFIX = "tokenauth:"


@runtime_checkable
class TokenStore(Protocol):
    """Where tokens live beyond one :class:`~requests_tokenauth.TokenManager`.

    A store keeps token dicts (the :meth:`Token.to_dict` shape, wall-clock ``expires_at``)
    under string keys, and offers a lock per key that every sharer honours: across threads
    for :class:`MemoryStore`, processes for ``FileStore``, hosts for ``RedisStore``.
    Implementations must be thread-safe and raise
    :class:`~requests_tokenauth.TokenStoreError` for any failure.

    A store may also offer ``lock_unless(key, satisfied)``: a context manager that yields
    ``True`` holding the lock, or ``False`` without it as soon as ``satisfied()``, which it
    calls while waiting, returns true (``FileStore`` and ``RedisStore`` do). Renewals use
    it so that processes queued behind a renewal leave the queue once its token is saved.
    """

    def load(self, key: str) -> Optional[dict[str, Any]]:
        """The saved token dict for ``key``, or ``None`` if there is none."""

    def save(self, key: str, token: dict[str, Any]) -> None:
        """Replace the token saved under ``key``."""

    def delete(self, key: str) -> None:
        """Remove the token saved under ``key`` (nothing if there is none); used when the
        token is revoked, so no sharer keeps using it."""

    def lock(self, key: str) -> AbstractContextManager[None]:
        """A context manager that holds the sharers' lock for ``key``; it raises
        :class:`~requests_tokenauth.TokenStoreError` if it cannot be had in time."""


def store_key(grant: Grant) -> str:
    """A key naming everything that selects a token: token URL, client, grant type, scope,
    extra parameters (audience, resource...) and whose token it is (the grant's
    :meth:`~requests_tokenauth.Grant.store_identity`: a username, a JWT subject, a digest of
    the refresh or subject token the grant was made with). Two clients or users that differ
    in any of them never share a token (Duende's CVE-2025-26620 was scope confusion of this
    kind).

    :raises ConfigurationError: the grant acts for a user it cannot name (authorization
        code, device code, a refresh token given only as ``token=``, a callable subject
        token): pass ``store_key=`` naming the user instead.
    """
    identity = {
        "token_url": grant.token_url,
        "client_id": grant.client_id,
        "grant_type": grant.grant_type,
        "scope": sorted(grant.scope or ()),
        "extra": sorted(grant.extra.items()),
        "subject": grant.store_identity(),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()
    return f"{KEY_PREFIX}{grant.grant_type}:{digest[:32]}"


#: A waiter gives up on a MemoryStore lock after this long: a little more than the default
#: token request may take (5 s connect + 30 s read), which is what a live holder does with it.
DEFAULT_MEMORY_LOCK_TIMEOUT_SECONDS = 40.0


class MemoryStore:
    """Tokens shared by the managers of one process (e.g. several sessions or ``TokenAuth``
    objects for the same client). Thread-safe; nothing leaves the process. Its locks are
    re-entrant, time out with :class:`~requests_tokenauth.TokenStoreError`, and are made
    anew in a child after ``fork()`` (a parent's thread that held one does not exist there).

    :param lock_timeout_seconds: how long :meth:`lock` waits before raising.
    :raises ConfigurationError: a negative timeout.
    """

    def __init__(
        self, *, lock_timeout_seconds: float = DEFAULT_MEMORY_LOCK_TIMEOUT_SECONDS
    ) -> None:
        if lock_timeout_seconds < 0:
            raise ConfigurationError("lock_timeout_seconds must not be negative")
        self.lock_timeout_seconds = lock_timeout_seconds
        self._tokens: dict[str, dict[str, Any]] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        _live_stores.add(self)

    def load(self, key: str) -> Optional[dict[str, Any]]:
        with self._guard:
            token = self._tokens.get(key)
            return dict(token) if token is not None else None

    def save(self, key: str, token: dict[str, Any]) -> None:
        with self._guard:
            self._tokens[key] = dict(token)

    def delete(self, key: str) -> None:
        with self._guard:
            self._tokens.pop(key, None)

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the lock of ``key`` (re-entrant on one thread).

        :raises TokenStoreError: another thread held it for ``lock_timeout_seconds``.
        """
        with self._guard:
            lock = self._locks.setdefault(key, threading.RLock())
        if not lock.acquire(timeout=self.lock_timeout_seconds):
            raise TokenStoreError(
                f"MemoryStore lock of {key} stayed held for {self.lock_timeout_seconds:g}s "
                "(another thread is renewing the token, or is stuck)"
            )
        try:
            yield
        finally:
            lock.release()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._tokens)} key(s))"

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a MemoryStore cannot be pickled: its tokens belong to one process")

    def _after_fork_in_child(self) -> None:
        self._guard = threading.Lock()
        self._locks = {}


_live_stores: weakref.WeakSet[MemoryStore] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for store in list(_live_stores):
        store._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)

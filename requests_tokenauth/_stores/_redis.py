"""RedisStore: one token per key for a fleet of hosts, with redis-py's lock (imported lazily)."""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import random as _random
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable, Optional, Union, cast

from .._clock import SYSTEM_CLOCK, Clock
from .._errors import ConfigurationError, TokenStoreError
from ._crypto import EncryptionKey, RefreshTokenCipher, decode, encode
from ._redis_asyncio import is_asyncio_client, sync_twin

if TYPE_CHECKING:
    import redis
    import redis.asyncio

log = logging.getLogger("requests_tokenauth")

#: A lock not extended for this long is dropped by Redis, so a crashed holder blocks nobody
#: for longer; a live holder extends it (see :meth:`RedisStore.lock`).
DEFAULT_LOCK_LEASE_SECONDS = 40.0
#: How often a live holder extends its lease, per lease: a missed extension (a slow Redis)
#: still leaves two thirds of it.
LEASE_EXTENSIONS_PER_LEASE = 3
#: A waiter gives up after this long; longer than the lease, so a crashed holder's lock
#: expires before a waiter fails.
DEFAULT_REDIS_LOCK_TIMEOUT_SECONDS = 45.0
#: How long a waiter waits for the holder's release message before it asks Redis for the
#: lock again anyway (drawn between half and one and a half times this): only a holder that
#: died without releasing, whose lease must end first, sends none.
DEFAULT_LOCK_POLL_SECONDS = 0.2

#: Appended to a token's key to name its lock; no token key may end with it.
LOCK_SUFFIX = ":lock"


class RedisStore:
    """Tokens in Redis, shared by every process on every host that uses the same Redis.

    Each token is one string key holding JSON (``redis-cli GET <key>`` shows it; with an
    ``encryption_key`` the refresh token is encrypted, and the record is bound to its key).
    A token without a refresh token expires from Redis with the access token (a TTL taken
    from ``expires_at``). A token with a refresh token is kept (no TTL, or
    ``refresh_ttl_seconds``): the refresh token outlives the access token and is what the
    next renewal needs.

    The lock of a key is redis-py's :meth:`redis.Redis.lock` on ``<key>:lock`` (no token key
    may end in ``:lock``), a value with a lease (``lock_lease_seconds``). A holder publishes
    on the pub/sub channel of the same name when it releases, which wakes the waiters at
    once; they ask again every ``lock_poll_seconds`` or so only when no message comes. While
    a holder lives, a short-lived thread extends the lease every third of it, so however
    long a token request takes, no second process renews meanwhile (with rotating refresh
    tokens one of them would get ``invalid_grant``). If the holder dies, even by ``SIGKILL``
    or with its host, nobody extends it and Redis drops the lock within one lease.

    Given a ``redis.asyncio.Redis`` client (what an asyncio application already has), the
    store makes, once, a sync ``redis.Redis`` with the same connection settings (host and
    port, TLS or unix socket, database, credentials, timeouts, retry) and a small pool of
    its own, and sends everything through that. Its commands run where tokens are renewed:
    the async httpx driver renews on a short-lived worker thread, so they never block an
    event loop; and the asyncio client's connections, which belong to the loop that opened
    them, are never touched, so the store works from several loops and threads and after
    that loop has closed. Cluster and Sentinel asyncio clients, and settings with no sync
    equivalent, are refused.

    Thread-safe (redis-py clients are). Not picklable: make the store in each process.
    Any Redis failure becomes a :class:`~requests_tokenauth.TokenStoreError` that names
    the operation and the key, never a token or a password.

    :param client: a ``redis.Redis`` client, or a ``redis.asyncio.Redis`` one (its
        settings are copied, as said above); ``decode_responses`` either way.
    :param key_prefix: put in front of every key, to keep applications apart in one Redis.
    :param lock_timeout_seconds: how long :meth:`lock` waits for the lock.
    :param lock_lease_seconds: how long the lock outlives a holder that stopped extending
        it (a crashed one).
    :param lock_poll_seconds: how long a waiter waits for a release message before it
        tries the lock again anyway (jittered).
    :param refresh_ttl_seconds: TTL of a token that has a refresh token (``None``: none).
    :param encryption_key: a Fernet key (or a list, the first one encrypting) to encrypt
        refresh tokens at rest; needs the ``encryption`` extra.
    :param clock: where the TTL's "now" is read (wall clock).
    :raises ConfigurationError: redis-py is missing, a duration is not positive, a bad
        ``encryption_key``, or an asyncio client whose settings cannot be copied.
    """

    def __init__(
        self,
        client: Union[redis.Redis, redis.asyncio.Redis],
        *,
        key_prefix: str = "",
        lock_timeout_seconds: float = DEFAULT_REDIS_LOCK_TIMEOUT_SECONDS,
        lock_lease_seconds: float = DEFAULT_LOCK_LEASE_SECONDS,
        lock_poll_seconds: float = DEFAULT_LOCK_POLL_SECONDS,
        refresh_ttl_seconds: Optional[float] = None,
        encryption_key: Optional[EncryptionKey] = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        try:
            import redis
        except ImportError:
            raise ConfigurationError(
                "RedisStore needs redis-py: pip install 'requests-tokenauth[redis]'"
            ) from None
        if lock_timeout_seconds < 0 or lock_lease_seconds <= 0 or lock_poll_seconds <= 0:
            raise ConfigurationError("lock timeout, lease and poll must be positive durations")
        if refresh_ttl_seconds is not None and refresh_ttl_seconds <= 0:
            raise ConfigurationError("refresh_ttl_seconds must be positive, or None")
        # never the asyncio client itself: its connections belong to one event loop
        self._client = (
            sync_twin(client) if is_asyncio_client(client) else cast("redis.Redis", client)
        )
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError,)
        self._lock_errors: tuple[type[BaseException], ...] = (redis.exceptions.LockError,)
        self.key_prefix = key_prefix
        self.lock_timeout_seconds = lock_timeout_seconds
        self.lock_lease_seconds = lock_lease_seconds
        self.lock_poll_seconds = lock_poll_seconds
        #: How waits for a lock ended: ``"woken"`` (a release message), ``"polled"``
        #: (none came in time); for tests and benchmarks.
        self.lock_wait_counts: collections.Counter[str] = collections.Counter()
        self.refresh_ttl_seconds = refresh_ttl_seconds
        self._cipher = RefreshTokenCipher(encryption_key) if encryption_key is not None else None
        self._clock = clock

    def __repr__(self) -> str:
        encrypted = ", encrypted" if self._cipher is not None else ""
        return f"RedisStore(key_prefix={self.key_prefix!r}{encrypted})"

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a RedisStore cannot be pickled; create one in each process")

    def redis_key(self, key: str) -> str:
        """The Redis key that holds ``key``'s token.

        :raises TokenStoreError: it would end in ``:lock``, the namespace of locks.
        """
        name = self.key_prefix + key
        if name.endswith(LOCK_SUFFIX):
            # "alice:lock" as a token key would be alice's lock: saving it would block
            # alice's renewals for good
            raise TokenStoreError(
                f"store key {key!r} ends in {LOCK_SUFFIX!r}, which names locks; choose another"
            )
        return name

    def lock_key(self, key: str) -> str:
        """The Redis key of ``key``'s lock: ``<token key>:lock``, a name no token key can
        have (:meth:`redis_key` refuses them)."""
        return self.redis_key(key) + LOCK_SUFFIX

    # -- load and save --------------------------------------------------------------------

    def load(self, key: str) -> Optional[dict[str, Any]]:
        """The token saved under ``key``, or ``None`` if Redis has none.

        :raises TokenStoreError: Redis failed, ``key`` ends in ``:lock``, the value is not
            a JSON token object, or it is an encrypted record the store's key refuses
            (moved, edited, plaintext, old format).
        """
        name = self.redis_key(key)
        try:
            raw = self._client.get(name)
        except self._errors as exc:
            raise self._failure("GET", name, exc) from None
        if raw is None:
            return None
        return decode(raw, f"Redis key {name}", self._cipher, name)

    def save(self, key: str, token: dict[str, Any]) -> None:
        """Replace the token saved under ``key``, with a TTL as the class describes.

        :raises TokenStoreError: Redis failed, or the dict cannot be written as JSON.
        """
        name = self.redis_key(key)
        text = encode(token, self._cipher, name)
        try:
            self._client.set(name, text, px=self._ttl_milliseconds(token))
        except self._errors as exc:
            raise self._failure("SET", name, exc) from None

    def delete(self, key: str) -> None:
        """Remove the token saved under ``key`` (nothing if there is none).

        :raises TokenStoreError: Redis failed.
        """
        name = self.redis_key(key)
        try:
            self._client.delete(name)
        except self._errors as exc:
            raise self._failure("DEL", name, exc) from None

    def _ttl_milliseconds(self, token: dict[str, Any]) -> Optional[int]:
        if token.get("refresh_token"):
            ttl = self.refresh_ttl_seconds
            return None if ttl is None else max(1, math.ceil(ttl * 1000))
        expires_at = token.get("expires_at")
        if not isinstance(expires_at, (int, float)) or isinstance(expires_at, bool):
            return None
        # relative to this host's clock, so the Redis server's clock does not matter
        return max(1, math.ceil((float(expires_at) - self._clock.time()) * 1000))

    # -- locking --------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the fleet-wide lock of ``key``; while it is held, a short-lived thread
        extends its lease every third of ``lock_lease_seconds``, so a live holder keeps it
        however long its token request takes, and a dead one loses it within one lease.

        :raises TokenStoreError: not acquired within ``lock_timeout_seconds``, or Redis failed.
        """
        with self.lock_unless(key, _never):
            yield

    @contextlib.contextmanager
    def lock_unless(self, key: str, satisfied: Callable[[], bool]) -> Iterator[bool]:
        """As :meth:`lock`, but a waiter calls ``satisfied()`` each time the lock is
        released (and at each poll) and gives up waiting when it returns true: the block
        then runs without the lock, and the context manager yields ``False`` (else ``True``).

        :raises TokenStoreError: as :meth:`lock`.
        """
        name = self.lock_key(key)
        try:
            lock = self._client.lock(
                name,
                timeout=self.lock_lease_seconds,
                thread_local=False,  # the keeper thread extends what this thread acquired
            )
            acquired = lock.acquire(blocking=False) or self._wait(lock, name, satisfied)
        except self._errors as exc:
            raise self._failure("lock", name, exc) from None
        if not acquired:
            yield False
            return
        stop = threading.Event()
        keeper = threading.Thread(
            target=self._keep_lease, args=(lock, name, stop), name="tokenauth-lease", daemon=True
        )
        try:
            keeper.start()
        except RuntimeError:  # no new threads (interpreter shutting down): the lease alone
            log.warning("could not start the lease keeper of Redis lock %s", name)
        try:
            yield True
        finally:
            stop.set()
            if keeper.ident is not None:
                keeper.join(self.lock_lease_seconds)
            self._release(lock, name)

    def _wait(self, lock: Any, name: str, satisfied: Callable[[], bool]) -> bool:
        """Wait for the held ``lock``: subscribed to its release channel first (so no
        release between a try and the wait goes unseen), then try again at each message or
        poll. Returns ``False`` when ``satisfied()`` first.

        :raises TokenStoreError: not acquired within ``lock_timeout_seconds``.
        """
        deadline = time.monotonic() + self.lock_timeout_seconds
        pubsub = self._subscribe(name)
        try:
            while True:
                if satisfied():
                    return False
                if lock.acquire(blocking=False):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TokenStoreError(
                        f"Redis lock {name} stayed held for {self.lock_timeout_seconds:g}s "
                        "(another process is renewing the token, or is stuck)"
                    )
                # jitter, so waiters that poll do not ask in lockstep (not a secret)
                pause = min(self.lock_poll_seconds * (0.5 + _random.random()), left)  # noqa: S311
                message = None
                if pubsub is None:
                    time.sleep(pause)
                else:
                    message = pubsub.get_message(timeout=pause)
                self.lock_wait_counts["woken" if message is not None else "polled"] += 1
        finally:
            if pubsub is not None:
                with contextlib.suppress(*self._errors):
                    pubsub.close()

    def _subscribe(self, name: str) -> Any:
        """A pub/sub connection subscribed to the release channel of lock ``name`` (the
        subscription confirmed), or ``None`` where pub/sub is not allowed (an ACL without
        channels): the waiter then polls."""
        open_pubsub: Any = self._client.pubsub  # typed in some redis-py releases only
        pubsub: Any = open_pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(name)
            pubsub.get_message(timeout=self.lock_poll_seconds)  # the confirmation
        except self._errors as exc:
            log.debug("cannot subscribe to the release of Redis lock %s: %s", name, _reason(exc))
            with contextlib.suppress(*self._errors):
                pubsub.close()
            return None
        return pubsub

    def _keep_lease(self, lock: Any, name: str, stop: threading.Event) -> None:
        """Reset the lease of the held ``lock`` to ``lock_lease_seconds`` every third of it
        until ``stop`` is set."""
        while not stop.wait(self.lock_lease_seconds / LEASE_EXTENSIONS_PER_LEASE):
            try:
                lock.reacquire()
            except self._lock_errors:  # the lease ended, or the key was removed
                log.warning(
                    "Redis lock %s was lost while held (its lease ended or it was deleted); "
                    "another process may renew at the same time",
                    name,
                )
                return
            except self._errors as exc:  # two thirds of the lease left: try again
                log.warning("could not extend the lease of Redis lock %s: %s", name, _reason(exc))

    def _release(self, lock: Any, name: str) -> None:
        try:
            lock.release()
        except self._lock_errors:
            log.warning(
                "Redis lock %s was gone before it was released (deleted, Redis restarted, or "
                "its lease of %gs ran out while it could not be extended)",
                name,
                self.lock_lease_seconds,
            )
        except self._errors as exc:  # Redis drops the lock when its lease ends
            log.warning("could not release Redis lock %s: %s", name, _reason(exc))
            return
        try:
            self._client.publish(name, "released")  # wakes the waiters
        except self._errors as exc:  # they poll instead
            log.debug("could not announce the release of Redis lock %s: %s", name, _reason(exc))

    def _failure(self, operation: str, name: str, exc: BaseException) -> TokenStoreError:
        return TokenStoreError(f"Redis {operation} of {name} failed: {_reason(exc)}")


def _never() -> bool:
    return False


def _reason(exc: BaseException) -> str:
    """The error's class, and for connection problems its text (a host and port, which is
    what an operator needs). Other Redis errors may quote values, so their text is left out."""
    import redis

    name = type(exc).__name__
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        detail = str(exc)[:200]
        return f"{name}: {detail}" if detail else name
    return name

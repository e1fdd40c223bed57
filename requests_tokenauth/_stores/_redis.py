"""RedisStore: one token per key for a fleet of hosts, with redis-py's lock (imported lazily)."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Optional

from .._clock import SYSTEM_CLOCK, Clock
from .._errors import ConfigurationError, TokenStoreError
from ._crypto import EncryptionKey, RefreshTokenCipher, decode, encode

if TYPE_CHECKING:
    import redis

log = logging.getLogger("requests_tokenauth")

#: A holder keeps the lock at most this long (then Redis drops it, so a crashed holder
#: blocks nobody for longer). It must outlast one token request: the default request
#: timeout is 5 s connect + 30 s read.
DEFAULT_LOCK_LEASE_SECONDS = 40.0
#: A waiter gives up after this long; longer than the lease, so a crashed holder's lock
#: expires before a waiter fails.
DEFAULT_REDIS_LOCK_TIMEOUT_SECONDS = 45.0
#: How often a waiter asks Redis for the lock again.
DEFAULT_LOCK_POLL_SECONDS = 0.02

#: Appended to a token's key to name its lock.
LOCK_SUFFIX = ":lock"


class RedisStore:
    """Tokens in Redis, shared by every process on every host that uses the same Redis.

    Each token is one string key holding JSON (``redis-cli GET <key>`` shows it; with an
    ``encryption_key`` the refresh token is encrypted). A token without a refresh token
    expires from Redis with the access token (a TTL taken from ``expires_at``). A token
    with a refresh token is kept (no TTL, or ``refresh_ttl_seconds``): the refresh token
    outlives the access token and is what the next renewal needs.

    The lock of a key is redis-py's :meth:`redis.Redis.lock` on ``<key>:lock``, a value with
    a lease (``lock_lease_seconds``): if the holder dies, even by ``SIGKILL`` or with its
    host, Redis drops the lock when the lease ends. The lease must outlast one token
    request, or a second process could renew while the first is still waiting for its
    answer (with rotating refresh tokens one of them would then get ``invalid_grant``).

    Thread-safe (redis-py clients are). Not picklable: make the store in each process.
    Any Redis failure becomes a :class:`~requests_tokenauth.TokenStoreError` that names
    the operation and the key, never a token.

    :param client: a ``redis.Redis`` client (``decode_responses`` either way).
    :param key_prefix: put in front of every key, to keep applications apart in one Redis.
    :param lock_timeout_seconds: how long :meth:`lock` waits for the lock.
    :param lock_lease_seconds: how long a holder may keep the lock.
    :param refresh_ttl_seconds: TTL of a token that has a refresh token (``None``: none).
    :param encryption_key: a Fernet key (or a list, the first one encrypting) to encrypt
        refresh tokens at rest; needs the ``encryption`` extra.
    :param clock: where the TTL's "now" is read (wall clock).
    :raises ConfigurationError: redis-py is missing, a duration is not positive, or a bad
        ``encryption_key``.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        key_prefix: str = "",
        lock_timeout_seconds: float = DEFAULT_REDIS_LOCK_TIMEOUT_SECONDS,
        lock_lease_seconds: float = DEFAULT_LOCK_LEASE_SECONDS,
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
        if lock_timeout_seconds < 0 or lock_lease_seconds <= 0:
            raise ConfigurationError("lock timeout and lease must be positive durations")
        if refresh_ttl_seconds is not None and refresh_ttl_seconds <= 0:
            raise ConfigurationError("refresh_ttl_seconds must be positive, or None")
        self._client = client
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError,)
        self._lock_errors: tuple[type[BaseException], ...] = (redis.exceptions.LockError,)
        self.key_prefix = key_prefix
        self.lock_timeout_seconds = lock_timeout_seconds
        self.lock_lease_seconds = lock_lease_seconds
        self.refresh_ttl_seconds = refresh_ttl_seconds
        self._cipher = RefreshTokenCipher(encryption_key) if encryption_key is not None else None
        self._clock = clock

    def __repr__(self) -> str:
        encrypted = ", encrypted" if self._cipher is not None else ""
        return f"RedisStore(key_prefix={self.key_prefix!r}{encrypted})"

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a RedisStore cannot be pickled; create one in each process")

    def redis_key(self, key: str) -> str:
        """The Redis key that holds ``key``'s token."""
        return self.key_prefix + key

    # -- load and save --------------------------------------------------------------------

    def load(self, key: str) -> Optional[dict[str, Any]]:
        """The token saved under ``key``, or ``None`` if Redis has none.

        :raises TokenStoreError: Redis failed, or the value is not a JSON token object, or
            its refresh token cannot be decrypted.
        """
        name = self.redis_key(key)
        try:
            raw = self._client.get(name)
        except self._errors as exc:
            raise self._failure("GET", name, exc) from None
        if raw is None:
            return None
        return decode(raw, f"Redis key {name}", self._cipher)

    def save(self, key: str, token: dict[str, Any]) -> None:
        """Replace the token saved under ``key``, with a TTL as the class describes.

        :raises TokenStoreError: Redis failed, or the dict cannot be written as JSON.
        """
        name = self.redis_key(key)
        text = encode(token, self._cipher)
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
        """Hold the fleet-wide lock of ``key`` (at most ``lock_lease_seconds``).

        :raises TokenStoreError: not acquired within ``lock_timeout_seconds``, or Redis failed.
        """
        name = self.redis_key(key) + LOCK_SUFFIX
        try:
            lock = self._client.lock(
                name,
                timeout=self.lock_lease_seconds,
                sleep=DEFAULT_LOCK_POLL_SECONDS,
                blocking_timeout=self.lock_timeout_seconds,
            )
            acquired = lock.acquire()
        except self._errors as exc:
            raise self._failure("lock", name, exc) from None
        if not acquired:
            raise TokenStoreError(
                f"Redis lock {name} stayed held for {self.lock_timeout_seconds:g}s "
                "(another process is renewing the token, or is stuck)"
            )
        try:
            yield
        finally:
            self._release(lock, name)

    def _release(self, lock: Any, name: str) -> None:
        try:
            lock.release()
        except self._lock_errors:
            log.warning(
                "Redis lock %s expired before it was released (a renewal took longer than "
                "lock_lease_seconds=%g); raise the lease above the token request timeout",
                name,
                self.lock_lease_seconds,
            )
        except self._errors as exc:  # Redis drops the lock when its lease ends
            log.warning("could not release Redis lock %s: %s", name, _reason(exc))

    def _failure(self, operation: str, name: str, exc: BaseException) -> TokenStoreError:
        return TokenStoreError(f"Redis {operation} of {name} failed: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """The error's class, and for connection problems its text (a host and port, which is
    what an operator needs). Other Redis errors may quote values, so their text is left out."""
    import redis

    name = type(exc).__name__
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        detail = str(exc)[:200]
        return f"{name}: {detail}" if detail else name
    return name

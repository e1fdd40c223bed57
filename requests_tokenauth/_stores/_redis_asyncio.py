"""A sync redis-py client made from a ``redis.asyncio`` client's connection settings.

:class:`~requests_tokenauth.RedisStore` runs its commands on whichever thread renews a token
(a worker thread of the async httpx driver, the refresh-ahead thread, its own lease keeper),
never on an event loop. A ``redis.asyncio`` client's connections belong to the loop that
opened them, and one store may serve several loops, or outlive the loop its client was made
on; so the store never sends through the asyncio client: it reads the client's settings once
and opens connections of its own with redis-py's sync twin of the same connection class.

Nothing here may put a setting's value in a message: the settings hold the password.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError

if TYPE_CHECKING:
    import redis

#: Settings that mean the same to a sync connection (plain values, redis-py's own value
#: objects, exception classes): carried over as they are.
CARRIED_SETTINGS = frozenset(
    {
        "host",
        "port",
        "path",
        "db",
        "username",
        "password",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_read_size",
        "socket_keepalive",
        "socket_keepalive_options",
        "socket_type",
        "encoding",
        "encoding_errors",
        "decode_responses",
        "retry_on_timeout",
        "retry_on_error",
        "health_check_interval",
        "client_name",
        "lib_name",
        "lib_version",
        "driver_info",
        "protocol",
        "legacy_responses",
        "maint_notifications_config",
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_cert_reqs",
        "ssl_include_verify_flags",
        "ssl_exclude_verify_flags",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_ca_path",
        "ssl_check_hostname",
        "ssl_min_version",
        "ssl_ciphers",
        "ssl_password",
    }
)

#: What an asyncio pool adds for its own machinery (maintenance-notification handlers, the
#: address it first connected to, its event dispatcher): a sync pool makes its own.
ASYNCIO_MACHINERY = frozenset(
    {
        "himport_registry",
        "maint_notifications_pool_handler",
        "oss_cluster_maint_notifications_handler",
        "maintenance_state",
        "maintenance_notification_hash",
        "orig_host_address",
        "orig_socket_timeout",
        "orig_socket_connect_timeout",
        "event_dispatcher",
    }
)

#: Settings whose value, when one is given, is asyncio code (an ``async`` connect callback,
#: an asyncio parser or encoder): a sync connection cannot run it.
ASYNCIO_CODE = frozenset({"redis_connect_func", "parser_class", "encoder_class"})

#: Converted, not carried: see :func:`_sync_retry` and :func:`_sync_credential_provider`.
CONVERTED_SETTINGS = frozenset({"retry", "credential_provider"})


def is_asyncio_client(client: object) -> bool:
    """Whether ``client`` is one of redis-py's asyncio clients (or made from one): decided
    from its classes' modules, so a sync user's store never imports ``redis.asyncio``."""
    return any(
        (klass.__module__ + ".").startswith("redis.asyncio.") for klass in type(client).__mro__
    )


def sync_twin(client: Any) -> redis.Redis:
    """A sync ``redis.Redis`` with ``client``'s connection settings and a pool of its own.

    :param client: a ``redis.asyncio.Redis`` on one server (TCP, TLS or a unix socket).
    :raises ConfigurationError: a cluster or Sentinel client, a connection pool or
        connection class redis-py has no sync twin of, or a setting that cannot be carried
        (named, its value never shown).
    """
    import redis
    import redis.asyncio
    import redis.asyncio.connection as asyncio_connection
    import redis.connection as sync_connection

    what = f"{type(client).__module__}.{type(client).__qualname__}"
    if not isinstance(client, redis.asyncio.Redis):
        raise ConfigurationError(
            f"RedisStore cannot use a {what}: of the redis.asyncio clients it takes "
            "redis.asyncio.Redis on one server (TCP, TLS or a unix socket); for a cluster, "
            "pass a sync redis-py client made for it"
        )
    pool = client.connection_pool
    if type(pool) not in (
        asyncio_connection.ConnectionPool,
        asyncio_connection.BlockingConnectionPool,
    ):
        raise ConfigurationError(
            f"RedisStore cannot copy the settings of a {what} whose pool is a "
            f"{type(pool).__module__}.{type(pool).__qualname__} (Sentinel, or a pool of "
            "your own): pass a sync redis-py client made the same way, e.g. "
            "redis.sentinel.Sentinel(...).master_for(...)"
        )
    twins: Mapping[type, type] = {
        asyncio_connection.Connection: sync_connection.Connection,
        asyncio_connection.SSLConnection: sync_connection.SSLConnection,
        asyncio_connection.UnixDomainSocketConnection: sync_connection.UnixDomainSocketConnection,
    }
    connection_class = pool.connection_class
    twin_class = twins.get(connection_class)
    if twin_class is None:
        raise ConfigurationError(
            f"RedisStore cannot copy the settings of a {what} whose connections are "
            f"{connection_class.__module__}.{connection_class.__qualname__}: redis-py has "
            "no sync twin of that class; pass a sync redis.Redis client instead"
        )
    settings: dict[str, Any] = dict(pool.connection_kwargs)
    _refuse_what_cannot_be_carried(what, settings)
    carried = {name: value for name, value in settings.items() if name in CARRIED_SETTINGS}
    if settings.get("retry") is not None:
        carried["retry"] = _sync_retry(what, settings["retry"])
    if settings.get("credential_provider") is not None:
        carried["credential_provider"] = _sync_credential_provider(
            what, settings["credential_provider"]
        )
    # a pool of the store's own, unbounded: a few connections (one per thread using the
    # store, one per lock waiter's subscription); the app's pool limit is for the app's loop
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=twin_class, **carried))


def _refuse_what_cannot_be_carried(what: str, settings: Mapping[str, Any]) -> None:
    code = sorted(name for name in ASYNCIO_CODE if settings.get(name) is not None)
    if code:
        raise ConfigurationError(
            f"RedisStore cannot copy the settings of a {what}: {', '.join(code)} is asyncio "
            "code a sync connection cannot run; pass a sync redis.Redis client instead"
        )
    known = CARRIED_SETTINGS | ASYNCIO_MACHINERY | ASYNCIO_CODE | CONVERTED_SETTINGS
    unknown = sorted(name for name in settings if name not in known)
    if unknown:
        # a setting this module does not know may change what the store's connections do
        # (TLS, auth): better refused than silently dropped
        raise ConfigurationError(
            f"RedisStore cannot copy the settings of a {what}: it does not know the "
            f"connection setting(s) {', '.join(unknown)}; pass a sync redis.Redis client "
            "instead"
        )


def _sync_retry(what: str, retry: Any) -> Any:
    """The asyncio client's ``Retry`` as a sync one: same backoff (a copy: backoffs keep
    state), retries and retried errors."""
    from redis.retry import Retry

    try:
        backoff, retries, errors = retry._backoff, retry._retries, retry._supported_errors
    except AttributeError:
        raise ConfigurationError(
            f"RedisStore cannot copy the retry of a {what} (a {type(retry).__qualname__}); "
            "pass a sync redis.Redis client instead"
        ) from None
    checker = getattr(retry, "_is_retryable", None)
    extra = {} if checker is None else {"is_retryable": checker}
    return Retry(copy.deepcopy(backoff), retries, tuple(errors), **extra)


def _sync_credential_provider(what: str, provider: Any) -> Any:
    """The provider itself when it answers synchronously too (redis-py's own providers
    do); one with only ``get_credentials_async`` is refused."""
    from redis.credentials import CredentialProvider

    answers = getattr(type(provider), "get_credentials", None)
    if answers is None or answers is getattr(CredentialProvider, "get_credentials", None):
        raise ConfigurationError(
            f"RedisStore cannot use the credential provider of a {what}: "
            f"{type(provider).__qualname__} answers only asynchronously (no get_credentials)"
        )
    return provider

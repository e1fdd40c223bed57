"""RedisStore given a ``redis.asyncio`` client: the store contract, against a real Redis,
through a sync client made from the asyncio client's settings (the asyncio client made on
a loop that is closed before the store is used); the settings that reach the store's
connections; a password that appears nowhere; the clients it refuses; and the async httpx
driver sharing such a store."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from requests_tokenauth import ConfigurationError, RedisStore, TokenStore, TokenStoreError
from requests_tokenauth._stores import store_key
from requests_tokenauth.testing import AuthServer, FakeClock

from .conftest import REDIS_PASSWORD
from .helpers import EXPIRED_AFTER, LIFETIME, session_for
from .test_stores import (
    MUST_NOT_HAPPEN_SECONDS,
    TOKEN,
    WAIT,
    StoreContract,
    auth_for,
    in_thread,
    sent_tokens,
)
from .test_stores_fleet import _raw, _wait_until

redis = pytest.importorskip("redis")
redis_asyncio = pytest.importorskip("redis.asyncio")


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    auth_server.token_lifetime_seconds = LIFETIME
    return auth_server


def made_on_a_closed_loop(url: str, **settings: Any) -> Any:
    """A ``redis.asyncio`` client made (and, unless ``ping=False``, used once) inside an
    ``asyncio.run`` whose loop is closed when this returns, as an app's startup might. Its
    pooled connection is closed before the loop is (nothing could close it afterwards)."""
    ping = settings.pop("ping", True)

    async def make() -> Any:
        client = redis_asyncio.from_url(url, **settings)
        if ping:
            assert await client.ping()
            await client.connection_pool.disconnect()
        return client

    return asyncio.run(make())


def made_in_a_loop(factory: Callable[[], Any]) -> Any:
    """``factory()`` called inside ``asyncio.run``: on Python 3.9, redis.asyncio's pools
    make asyncio locks when built, which need an event loop."""

    async def make() -> Any:
        return factory()

    return asyncio.run(make())


def with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=path))


def with_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))


@pytest.fixture
def admin(redis_url: str) -> Iterator[Any]:
    """A sync client of the test's own, to look at what the store did."""
    client = redis.Redis.from_url(redis_url, socket_timeout=WAIT)
    yield client
    client.close()


@pytest.fixture
def prefix(admin: Any) -> Iterator[str]:
    prefix = f"tokenauth-test:{uuid.uuid4().hex}:"
    yield prefix
    keys = list(admin.scan_iter(match=prefix + "*", count=100))
    if keys:
        admin.delete(*keys)


@pytest.fixture
def async_client(redis_url: str) -> Any:
    return made_on_a_closed_loop(redis_url, socket_timeout=WAIT + 5)


# -- the contract, and the same records and locks as a sync client's store ------------------


@pytest.mark.redis
class TestRedisStoreFromAnAsyncioClient(StoreContract):
    @pytest.fixture
    def store(self, async_client: Any, prefix: str, fake_clock: FakeClock) -> RedisStore:
        return RedisStore(async_client, key_prefix=prefix, clock=fake_clock)

    @pytest.fixture
    def make_store(
        self, async_client: Any, prefix: str, fake_clock: FakeClock
    ) -> Callable[..., TokenStore]:
        return lambda **kwargs: RedisStore(
            async_client, key_prefix=prefix, clock=fake_clock, **kwargs
        )


@pytest.mark.redis
def test_it_shares_records_and_locks_with_a_store_made_from_a_sync_client(
    async_client: Any, admin: Any, prefix: str
) -> None:
    from_async = RedisStore(async_client, key_prefix=prefix, lock_poll_seconds=60)
    from_sync = RedisStore(admin, key_prefix=prefix, lock_timeout_seconds=0)
    from_async.save("k", TOKEN)
    assert from_sync.load("k") == TOKEN
    # the sync store finds the lock the other one holds
    with from_async.lock("k"), pytest.raises(TokenStoreError, match="held"), from_sync.lock("k"):
        pass
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with from_sync.lock("k"):
            holding.set()
            release.wait(WAIT)

    def wait() -> str:
        with from_async.lock("k"):
            return "held"

    held, _ = in_thread(hold)
    try:
        assert holding.wait(WAIT)
        waiting, out = in_thread(wait)
        channel = from_async.lock_key("k")
        assert _wait_until(lambda: dict(admin.pubsub_numsub(channel))[_raw(channel)] == 1)
        waiting.join(MUST_NOT_HAPPEN_SECONDS)
        assert out == []  # still waiting
    finally:
        release.set()
    held.join(WAIT)
    waiting.join(WAIT)
    assert out == ["held"]
    assert from_async.lock_wait_counts["polled"] == 0  # woken by the release message


@pytest.mark.redis
def test_a_held_lock_s_lease_is_extended_and_lock_unless_and_key_rules_hold(
    async_client: Any, admin: Any, prefix: str
) -> None:
    store = RedisStore(async_client, key_prefix=prefix, lock_lease_seconds=0.6)
    with store.lock("k"):
        readings = [admin.pttl(store.lock_key("k"))]

        def extended() -> bool:  # a later reading above an earlier one: the keeper reset it
            readings.append(admin.pttl(store.lock_key("k")))
            return readings[-1] > min(readings[:-1])

        assert _wait_until(extended)
        other = RedisStore(async_client, key_prefix=prefix)
        with other.lock_unless("k", lambda: True) as held:
            assert held is False  # satisfied while waiting: no lock
    with store.lock_unless("k", lambda: True) as held:
        assert held is True  # free: taken at once
    with pytest.raises(TokenStoreError, match="names locks"):
        store.save("alice:lock", TOKEN)


@pytest.mark.redis
def test_refresh_tokens_are_encrypted_at_rest(async_client: Any, admin: Any, prefix: str) -> None:
    fernet = pytest.importorskip("cryptography.fernet")
    store = RedisStore(async_client, key_prefix=prefix, encryption_key=fernet.Fernet.generate_key())
    store.save("k", TOKEN)
    assert b"rt-1" not in admin.get(store.redis_key("k"))
    assert store.load("k") == TOKEN


@pytest.mark.redis
def test_two_auths_on_one_store_from_an_asyncio_client_make_one_token_request(
    async_client: Any, prefix: str, server: AuthServer, fake_clock: FakeClock
) -> None:
    store = RedisStore(async_client, key_prefix=prefix, clock=fake_clock)
    one = session_for(auth_for(server, fake_clock, store))
    two = session_for(auth_for(server, fake_clock, RedisStore(async_client, key_prefix=prefix)))
    assert one.get(server.resource_url).status_code == 200
    assert two.get(server.resource_url).status_code == 200
    assert server.token_requests == 1
    sent = sent_tokens(server)
    assert sent[0] == sent[1]


# -- the settings the store's connections get -------------------------------------------------


@pytest.mark.redis
def test_database_client_name_and_decoding_reach_the_store_s_connections(
    redis_url: str, admin: Any, prefix: str
) -> None:
    name = f"tokenauth-{uuid.uuid4().hex[:12]}"
    client = made_on_a_closed_loop(
        with_path(redis_url, "/5"), client_name=name, decode_responses=True, ping=False
    )
    store = RedisStore(client, key_prefix=prefix)
    store.save("k", TOKEN)
    assert store.load("k") == TOKEN
    assert admin.get(store.redis_key("k")) is None  # not in database 0
    in_five = redis.Redis.from_url(with_path(redis_url, "/5"))
    try:
        assert in_five.get(store.redis_key("k")) is not None
        in_five.delete(store.redis_key("k"))
    finally:
        in_five.close()
    assert [c["db"] for c in admin.client_list() if c["name"] == name] == ["5"]


def test_tls_and_unix_socket_clients_get_the_sync_twin_of_their_connection_class() -> None:
    from requests_tokenauth._stores._redis_asyncio import sync_twin

    tls = sync_twin(
        made_in_a_loop(lambda: redis_asyncio.from_url("rediss://cache:6380/2?ssl_cert_reqs=none"))
    )
    assert tls.connection_pool.connection_class is redis.connection.SSLConnection
    settings = tls.connection_pool.connection_kwargs
    assert (settings["host"], settings["port"], settings["db"]) == ("cache", 6380, 2)
    assert settings["ssl_cert_reqs"] == "none"
    unix = sync_twin(made_in_a_loop(lambda: redis_asyncio.from_url("unix:///run/redis.sock?db=3")))
    assert unix.connection_pool.connection_class is redis.connection.UnixDomainSocketConnection
    assert unix.connection_pool.connection_kwargs["path"] == "/run/redis.sock"
    blocking = made_in_a_loop(
        lambda: redis_asyncio.Redis(
            connection_pool=redis_asyncio.BlockingConnectionPool.from_url("redis://cache/1")
        )
    )
    assert sync_twin(blocking).connection_pool.connection_kwargs["db"] == 1


@pytest.fixture
def unix_socket_redis(tmp_path: Any) -> Iterator[str]:
    """A ``redis-server`` of this test's own listening only on a unix socket; its path."""
    import subprocess

    from requests_tokenauth.testing import redis_server_binary

    binary = redis_server_binary()
    if binary is None:
        pytest.skip("needs redis-server on PATH")
    path = str(tmp_path / "redis.sock")
    process = subprocess.Popen(  # our own argv, a binary found on PATH
        [binary, "--port", "0", "--unixsocket", path, "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--logfile", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        probe = redis.Redis(unix_socket_path=path, socket_timeout=1)
        assert _wait_until(lambda: _answers(probe)), "redis-server did not start"
        probe.close()
        yield path
    finally:
        process.terminate()
        process.wait(WAIT)


def _answers(client: Any) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


@pytest.mark.redis
def test_a_unix_socket_client_s_store_uses_that_socket(unix_socket_redis: str) -> None:
    client = made_on_a_closed_loop(f"unix://{unix_socket_redis}?db=2")
    store = RedisStore(client)
    store.save("k", TOKEN)
    assert store.load("k") == TOKEN
    with store.lock("k"):
        pass
    direct = redis.Redis(unix_socket_path=unix_socket_redis, db=2)
    try:
        assert direct.get(store.redis_key("k")) is not None
    finally:
        direct.close()


# -- a password appears nowhere ---------------------------------------------------------------


@pytest.fixture
def acl_user(admin: Any, prefix: str) -> Iterator[str]:
    """A Redis user whose password is ``REDIS_PASSWORD``, allowed this test's keys and the
    lock channels."""
    user = f"tokenauth-{uuid.uuid4().hex[:12]}"
    admin.acl_setuser(
        user,
        enabled=True,
        passwords=["+" + REDIS_PASSWORD],
        keys=[prefix + "*"],
        channels=[prefix + "*"],
        commands=["+@all"],
    )
    yield user
    admin.acl_deluser(user)


@pytest.mark.redis
def test_a_password_in_the_url_reaches_redis_and_no_repr_message_or_log_line(
    redis_url: str,
    admin: Any,
    acl_user: str,
    prefix: str,
    server: AuthServer,
    fake_clock: FakeClock,
) -> None:
    client = made_on_a_closed_loop(with_user(redis_url, acl_user, REDIS_PASSWORD), ping=False)
    store = RedisStore(client, key_prefix=prefix, clock=fake_clock, lock_timeout_seconds=0)
    session = session_for(auth_for(server, fake_clock, store))
    assert session.get(server.resource_url).status_code == 200
    assert any(c["user"] == acl_user for c in admin.client_list())  # the store's, as that user
    assert REDIS_PASSWORD not in repr(store)
    other = RedisStore(client, key_prefix=prefix, lock_timeout_seconds=0)
    with store.lock("k"), pytest.raises(TokenStoreError) as held, other.lock("k"):
        pass
    assert REDIS_PASSWORD not in str(held.value)
    # the right password for a user that does not exist: refused by Redis
    stranger = made_on_a_closed_loop(
        with_user(redis_url, "nobody-" + acl_user, REDIS_PASSWORD), ping=False
    )
    refused = RedisStore(stranger, key_prefix=prefix, clock=fake_clock)
    with pytest.raises(TokenStoreError) as failed:
        refused.load("k")
    assert REDIS_PASSWORD not in str(failed.value)
    fake_clock.advance(EXPIRED_AFTER)
    with pytest.raises(requests.RequestException) as through_auth:
        session_for(auth_for(server, fake_clock, refused, max_wait_seconds=0)).get(
            server.resource_url
        )
    assert REDIS_PASSWORD not in str(through_auth.value)
    # a setting the store cannot carry is named, its neighbour the password is not shown
    unknown_url = with_user(redis_url, acl_user, REDIS_PASSWORD) + "?bogus=1"
    unknown = made_in_a_loop(lambda: redis_asyncio.from_url(unknown_url))
    with pytest.raises(ConfigurationError, match="bogus") as refused_settings:
        RedisStore(unknown)
    assert REDIS_PASSWORD not in str(refused_settings.value)
    # the conftest guard checks every log line of this test for REDIS_PASSWORD


# -- what it refuses --------------------------------------------------------------------------


class ConnectionOfOurOwn(redis_asyncio.Connection):  # type: ignore[misc,name-defined]
    pass


class AsyncOnlyCredentials(redis.credentials.CredentialProvider):  # type: ignore[misc]
    async def get_credentials_async(self) -> tuple[str, str]:
        return ("user", REDIS_PASSWORD)


def _connect_hook(connection: Any) -> None:
    pass


REFUSED: dict[str, Callable[[], Any]] = {
    "cluster": lambda: redis_asyncio.RedisCluster(host="127.0.0.1", port=7000),
    "sentinel": lambda: redis_asyncio.Sentinel([("127.0.0.1", 26379)]).master_for("main"),
    "connection class of one's own": lambda: redis_asyncio.Redis(
        connection_pool=redis_asyncio.ConnectionPool(connection_class=ConnectionOfOurOwn)
    ),
    "async connect callback": lambda: redis_asyncio.Redis(redis_connect_func=_connect_hook),
    "async-only credential provider": lambda: redis_asyncio.Redis(
        credential_provider=AsyncOnlyCredentials()
    ),
}


@pytest.mark.parametrize("kind", list(REFUSED))
def test_an_asyncio_client_whose_settings_cannot_be_copied_is_refused(kind: str) -> None:
    client = made_in_a_loop(REFUSED[kind])
    with pytest.raises(ConfigurationError, match="RedisStore cannot") as refused:
        RedisStore(client)
    assert REDIS_PASSWORD not in str(refused.value)


# -- the async httpx driver on such a store ---------------------------------------------------


@pytest.mark.redis
def test_16_tasks_of_an_async_client_on_an_expired_token_make_one_token_request(
    async_client: Any, prefix: str, server: AuthServer, fake_clock: FakeClock
) -> None:
    httpx = pytest.importorskip("httpx")
    from requests_tokenauth.httpx import TokenAuth

    from .helpers import EXACT
    from .test_stores import grant_for

    store = RedisStore(async_client, key_prefix=prefix, clock=fake_clock)
    auth = TokenAuth(grant_for(server), store=store, clock=fake_clock, policy=EXACT)

    async def run() -> list[int]:
        async with httpx.AsyncClient(auth=auth) as client:
            assert (await client.get(server.resource_url)).status_code == 200
            fake_clock.advance(EXPIRED_AFTER)
            server.hold_token_endpoint()
            try:
                calls = [asyncio.ensure_future(client.get(server.resource_url)) for _ in range(16)]
                assert await asyncio.to_thread(server.wait_for_token_requests, 2, WAIT)
            finally:
                server.release_token_endpoint()
            return [response.status_code for response in await asyncio.gather(*calls)]

    assert asyncio.run(run()) == [200] * 16
    assert server.token_requests == 2  # the first token, and one renewal for all 16 tasks
    first, *renewed = sent_tokens(server)
    assert len(renewed) == 16 and len(set(renewed)) == 1 and renewed[0] != first
    saved = store.load(store_key(auth.manager.grant))
    assert saved is not None and renewed[0] == "Bearer " + saved["access_token"]

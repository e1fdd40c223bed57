"""Token stores: one contract run against MemoryStore, FileStore and RedisStore (a real Redis),
then what is particular to each: atomic files and their modes, corrupt files, Redis TTLs and
leases, an unreachable Redis, refresh tokens encrypted at rest. Store-backed ``TokenAuth``
runs against the loopback authorization server with exact token-request counts."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest
import requests

from requests_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    FileStore,
    MemoryStore,
    RedisStore,
    RefreshToken,
    TokenAuth,
    TokenStore,
    TokenStoreError,
)
from requests_tokenauth._stores import store_key
from requests_tokenauth._stores._crypto import SEALED_FIELD
from requests_tokenauth.testing import AuthServer, FakeClock, redis_server, redis_server_binary

from .helpers import EXACT, EXPIRED_AFTER, LIFETIME, session_for

#: Tests that wait for something that must not happen give it this long.
MUST_NOT_HAPPEN_SECONDS = 0.3
WAIT = 10.0

TOKEN = {
    "access_token": "at-1",
    "token_type": "Bearer",
    "expires_in": 100.0,
    "expires_at": 1_800_000_100.0,
    "refresh_token": "rt-1",
    "scope": "read write",
    "id_token": "x.y.z",
    "note": "ünïcode ✓",
}


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    auth_server.token_lifetime_seconds = LIFETIME
    return auth_server


def grant_for(server: AuthServer, scope: Optional[list[str]] = None) -> ClientCredentials:
    return ClientCredentials(
        server.token_url, client_id="svc", client_secret="svc-secret", scope=scope
    )


def auth_for(server: AuthServer, clock: FakeClock, store: TokenStore, **kwargs: Any) -> TokenAuth:
    grant = kwargs.pop("grant", None) or grant_for(server, kwargs.pop("scope", None))
    return TokenAuth(
        grant,
        store=store,
        clock=clock,
        policy=EXACT,
        random=lambda: 0.5,
        refresh_ahead="inline",
        **kwargs,
    )


def stored_token(server: AuthServer, clock: FakeClock, **kwargs: Any) -> dict[str, Any]:
    """A token the server really issued, in the dict shape stores hold."""
    token = server.issue_token("svc", **kwargs)
    token["expires_at"] = clock.time() + token["expires_in"]
    return token


def sent_tokens(server: AuthServer) -> list[Optional[str]]:
    return [s.authorization for s in server.seen if s.path.startswith("/resource")]


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(target())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


class StoreContract:
    """What every TokenStore must do. Subclasses provide the ``store`` fixture and, when the
    store's lock can time out, ``make_store(lock_timeout_seconds=...)`` for a second handle
    on the same storage."""

    times_out = True

    @pytest.fixture
    def store(self) -> TokenStore:
        raise NotImplementedError

    @pytest.fixture
    def make_store(self) -> Callable[..., TokenStore]:
        def unsupported(**kwargs: Any) -> TokenStore:
            raise NotImplementedError

        return unsupported

    # -- load and save --------------------------------------------------------------------

    def test_is_a_token_store(self, store: TokenStore) -> None:
        assert isinstance(store, TokenStore)

    def test_load_of_a_missing_key_is_none(self, store: TokenStore) -> None:
        assert store.load("tokenauth:nothing-here") is None

    def test_save_then_load_gives_the_same_dict(self, store: TokenStore) -> None:
        store.save("k", TOKEN)
        assert store.load("k") == TOKEN

    def test_save_replaces_the_previous_token(self, store: TokenStore) -> None:
        store.save("k", TOKEN)
        store.save("k", {**TOKEN, "access_token": "at-2", "refresh_token": "rt-2"})
        loaded = store.load("k")
        assert loaded is not None
        assert (loaded["access_token"], loaded["refresh_token"]) == ("at-2", "rt-2")

    def test_keys_are_independent(self, store: TokenStore) -> None:
        store.save("a", TOKEN)
        store.save("b", {**TOKEN, "access_token": "at-b"})
        assert store.load("a") == TOKEN
        assert store.load("b") == {**TOKEN, "access_token": "at-b"}
        assert store.load("c") is None

    def test_delete_removes_only_that_key_and_tolerates_a_missing_one(
        self, store: TokenStore
    ) -> None:
        store.save("a", TOKEN)
        store.save("b", TOKEN)
        store.delete("a")
        store.delete("a")
        store.delete("never-saved")
        assert store.load("a") is None
        assert store.load("b") == TOKEN

    def test_a_loaded_dict_is_a_copy(self, store: TokenStore) -> None:
        store.save("k", TOKEN)
        loaded = store.load("k")
        assert loaded is not None
        loaded["access_token"] = "changed"
        assert store.load("k") == TOKEN

    def test_repr_shows_no_token(self, store: TokenStore) -> None:
        store.save("k", TOKEN)
        assert "at-1" not in repr(store) and "rt-1" not in repr(store)

    # -- locking --------------------------------------------------------------------------

    def test_a_second_holder_waits_until_the_first_releases(self, store: TokenStore) -> None:
        events: list[str] = []
        with store.lock("k"):

            def second() -> None:
                with store.lock("k"):
                    events.append("second holds")

            thread, out = in_thread(second)
            thread.join(MUST_NOT_HAPPEN_SECONDS)
            assert thread.is_alive() and events == []
            events.append("first releases")
        thread.join(WAIT)
        assert not thread.is_alive() and out == [None]
        assert events == ["first releases", "second holds"]

    def test_locks_of_different_keys_are_independent(self, store: TokenStore) -> None:
        with store.lock("a"):
            thread, out = in_thread(lambda: _hold_and_release(store, "b"))
            thread.join(WAIT)
            assert out == ["held"]

    def test_the_lock_is_released_when_the_block_raises(self, store: TokenStore) -> None:
        with pytest.raises(KeyError), store.lock("k"):
            raise KeyError("boom")
        thread, out = in_thread(lambda: _hold_and_release(store, "k"))
        thread.join(WAIT)
        assert out == ["held"]

    def test_a_held_lock_times_out_with_a_typed_error(
        self, store: TokenStore, make_store: Callable[..., TokenStore]
    ) -> None:
        if not self.times_out:
            pytest.skip("this store's lock has no timeout")
        other = make_store(lock_timeout_seconds=0.05)
        with store.lock("k"):
            thread, out = in_thread(lambda: _hold_and_release(other, "k"))
            thread.join(WAIT)
            assert len(out) == 1 and isinstance(out[0], TokenStoreError)
            assert "locked" in str(out[0]) or "held" in str(out[0])
        assert _hold_and_release(other, "k") == "held"

    # -- through TokenAuth, against the loopback server -----------------------------------

    def test_two_clients_with_different_scopes_hold_two_separate_tokens(
        self, store: TokenStore, server: AuthServer, fake_clock: FakeClock
    ) -> None:
        reader = auth_for(server, fake_clock, store, scope=["read"])
        writer = auth_for(server, fake_clock, store, scope=["write"])
        read_session, write_session = session_for(reader), session_for(writer)
        assert read_session.get(server.resource_url).status_code == 200
        assert write_session.get(server.resource_url).status_code == 200
        assert read_session.get(server.url + "/resource/scope/write").status_code == 403
        assert write_session.get(server.url + "/resource/scope/write").status_code == 200
        assert server.token_requests == 2
        read_key, write_key = store_key(reader.manager.grant), store_key(writer.manager.grant)
        assert read_key != write_key
        read_saved, write_saved = store.load(read_key), store.load(write_key)
        assert read_saved is not None and write_saved is not None
        assert (read_saved["scope"], write_saved["scope"]) == ("read", "write")
        assert read_saved["access_token"] != write_saved["access_token"]

    def test_a_fresh_token_in_the_store_is_used_without_a_token_request(
        self, store: TokenStore, server: AuthServer, fake_clock: FakeClock
    ) -> None:
        auth = auth_for(server, fake_clock, store)
        saved = stored_token(server, fake_clock)
        store.save(store_key(auth.manager.grant), saved)
        session = session_for(auth)
        assert session.get(server.resource_url).status_code == 200
        assert session.get(server.resource_url).status_code == 200
        assert server.token_requests == 0
        assert sent_tokens(server) == ["Bearer " + saved["access_token"]] * 2

    def test_a_given_token_seeds_an_empty_store_and_a_stored_one_wins(
        self, store: TokenStore, server: AuthServer, fake_clock: FakeClock
    ) -> None:
        given = stored_token(server, fake_clock)
        first = auth_for(server, fake_clock, store, token=given)
        assert session_for(first).get(server.resource_url).status_code == 200
        key = store_key(first.manager.grant)
        assert store.load(key) == given  # seeded
        newer = stored_token(server, fake_clock)
        store.save(key, newer)  # e.g. another process rotated it
        second = auth_for(server, fake_clock, store, token=given)
        assert session_for(second).get(server.resource_url).status_code == 200
        assert server.token_requests == 0
        assert sent_tokens(server) == ["Bearer " + t["access_token"] for t in (given, newer)]
        assert store.load(key) == newer

    def test_two_auths_sharing_the_store_make_one_token_request_per_expiry(
        self, store: TokenStore, server: AuthServer, fake_clock: FakeClock
    ) -> None:
        one = session_for(auth_for(server, fake_clock, store))
        two = session_for(auth_for(server, fake_clock, store))
        for expiry in range(3):
            assert one.get(server.resource_url).status_code == 200
            assert two.get(server.resource_url).status_code == 200
            assert server.token_requests == expiry + 1
            fake_clock.advance(EXPIRED_AFTER)
        sent = sent_tokens(server)
        assert sent[0::2] == sent[1::2]  # both sent the same token in each period
        assert len(set(sent)) == 3


def _hold_and_release(store: TokenStore, key: str) -> str:
    with store.lock(key):
        return "held"


# -- MemoryStore ------------------------------------------------------------------------------


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore()

    @pytest.fixture
    def make_store(self, store: MemoryStore) -> Callable[..., TokenStore]:
        # a MemoryStore has no second handle: the same one, waiting less
        def shorter(lock_timeout_seconds: float) -> TokenStore:
            store.lock_timeout_seconds = lock_timeout_seconds
            return store

        return shorter


# -- FileStore --------------------------------------------------------------------------------


class TestFileStore(StoreContract):
    @pytest.fixture
    def directory(self, tmp_path: Any) -> str:
        return str(tmp_path / "tokens")

    @pytest.fixture
    def store(self, directory: str) -> FileStore:
        return FileStore(directory, lock_timeout_seconds=WAIT)

    @pytest.fixture
    def make_store(self, directory: str) -> Callable[..., TokenStore]:
        # a second FileStore: its own descriptors, so only the flock stands between them
        return lambda **kwargs: FileStore(directory, **kwargs)

    def test_files_are_private_and_the_directory_is_created(
        self, store: FileStore, directory: str
    ) -> None:
        store.save("k", TOKEN)
        with store.lock("k"):
            pass
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        names = sorted(os.listdir(directory))
        assert [n.rsplit(".", 1)[1] for n in names] == ["json", "lock"]
        for name in names:
            assert stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode) == 0o600

    def test_the_file_is_plain_json(self, store: FileStore) -> None:
        store.save("k", TOKEN)
        with open(store.path("k"), encoding="utf-8") as f:
            assert json.load(f) == TOKEN

    @pytest.mark.parametrize("key", ["../../etc/passwd", "a/b", "a_b", ".hidden", "", "é" * 300])
    def test_any_key_names_a_file_inside_the_directory(
        self, store: FileStore, directory: str, key: str
    ) -> None:
        path = store.path(key)
        assert os.path.dirname(path) == directory
        assert len(os.path.basename(path)) < 120
        store.save(key, TOKEN)
        assert store.load(key) == TOKEN

    def test_keys_that_look_alike_get_different_files(self, store: FileStore) -> None:
        assert store.path("a/b") != store.path("a_b") != store.path("a:b")

    def test_a_failed_replace_keeps_the_old_file_and_leaves_no_temp_file(
        self, store: FileStore, directory: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store.save("k", TOKEN)

        def full_disk(src: str, dst: str, **kwargs: Any) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "replace", full_disk)
        with pytest.raises(TokenStoreError, match="No space left"):
            store.save("k", {**TOKEN, "access_token": "at-2"})
        monkeypatch.undo()
        assert store.load("k") == TOKEN
        assert not [n for n in os.listdir(directory) if n.endswith(".tmp")]

    def test_a_token_json_cannot_hold_is_refused_and_the_old_file_kept(
        self, store: FileStore
    ) -> None:
        store.save("k", TOKEN)
        with pytest.raises(TokenStoreError, match="JSON"):
            store.save("k", {**TOKEN, "expires_at": float("nan")})
        assert store.load("k") == TOKEN

    @pytest.mark.parametrize(
        "content",
        [b'{"access_token": "leak-me-123", "refresh', b"[1, 2]", b"\xff\xfe", b""],
        ids=["truncated", "not-an-object", "not-utf8", "empty"],
    )
    def test_a_corrupt_file_is_a_typed_error_and_is_left_untouched(
        self, store: FileStore, content: bytes
    ) -> None:
        os.makedirs(store.directory, mode=0o700, exist_ok=True)
        with open(store.path("k"), "wb") as f:
            f.write(content)
        with pytest.raises(TokenStoreError) as info:
            store.load("k")
        assert store.path("k") in str(info.value) and "leak-me" not in str(info.value)
        with open(store.path("k"), "rb") as f:
            assert f.read() == content

    def test_a_corrupt_file_is_replaced_by_the_next_good_token(
        self, store: FileStore, server: AuthServer, fake_clock: FakeClock
    ) -> None:
        auth = auth_for(server, fake_clock, store)
        key = store_key(auth.manager.grant)
        os.makedirs(store.directory, mode=0o700, exist_ok=True)
        with open(store.path(key), "wb") as f:
            f.write(b"{not json")
        assert session_for(auth).get(server.resource_url).status_code == 200
        assert server.token_requests == 1
        saved = store.load(key)
        assert saved is not None and "Bearer " + saved["access_token"] == sent_tokens(server)[0]

    def test_a_lock_that_cannot_be_taken_fails_typed_unless_a_valid_token_is_in_memory(
        self, store: FileStore, server: AuthServer, fake_clock: FakeClock
    ) -> None:
        auth = auth_for(server, fake_clock, store, max_wait_seconds=0)  # no waiting for a lock
        session = session_for(auth)
        assert session.get(server.resource_url).status_code == 200
        lock_file = store.path(store_key(auth.manager.grant))[: -len(".json")] + ".lock"
        os.unlink(lock_file)
        os.mkdir(lock_file)  # the lock file cannot be opened any more (even by root)
        fake_clock.advance(LIFETIME * 0.8)  # stale: a refresh ahead is due, and fails
        assert session.get(server.resource_url).status_code == 200
        assert session.get(server.resource_url).status_code == 200
        assert server.token_requests == 1
        fake_clock.advance(EXPIRED_AFTER)  # expired, and no lock to renew under
        with pytest.raises(TokenStoreError, match=r"\.lock"):
            session.get(server.resource_url)
        assert server.token_requests == 1

    def test_a_pickled_store_opens_the_same_directory(self, store: FileStore) -> None:
        store.save("k", TOKEN)
        copy = pickle.loads(pickle.dumps(store))
        assert copy.load("k") == TOKEN
        with copy.lock("k"):
            pass


# -- RedisStore -------------------------------------------------------------------------------


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: Any) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"tokenauth-test:{uuid.uuid4().hex}:"
    yield prefix
    keys = list(redis_client.scan_iter(match=prefix + "*", count=100))
    if keys:
        redis_client.delete(*keys)


@pytest.mark.redis
class TestRedisStore(StoreContract):
    @pytest.fixture
    def store(self, redis_client: Any, prefix: str, fake_clock: FakeClock) -> RedisStore:
        return RedisStore(redis_client, key_prefix=prefix, clock=fake_clock)

    @pytest.fixture
    def make_store(
        self, redis_client: Any, prefix: str, fake_clock: FakeClock
    ) -> Callable[..., TokenStore]:
        return lambda **kwargs: RedisStore(
            redis_client, key_prefix=prefix, clock=fake_clock, **kwargs
        )

    def test_values_are_json_a_person_can_read(
        self, store: RedisStore, redis_client: Any, redis_url: str
    ) -> None:
        store.save("k", TOKEN)
        assert json.loads(redis_client.get(store.redis_key("k"))) == TOKEN
        cli = shutil.which("redis-cli")
        if cli is not None:
            shown = subprocess.run(
                [cli, "-u", redis_url, "GET", store.redis_key("k")],
                capture_output=True,
                text=True,
                timeout=WAIT,
                check=True,
            ).stdout
            assert json.loads(shown) == TOKEN

    def test_a_client_that_decodes_responses_works_too(self, redis_url: str, prefix: str) -> None:
        import redis

        client = redis.Redis.from_url(redis_url, decode_responses=True)
        store = RedisStore(client, key_prefix=prefix)
        store.save("k", TOKEN)
        assert store.load("k") == TOKEN
        client.close()

    def test_a_token_without_refresh_token_expires_with_its_access_token(
        self, store: RedisStore, redis_client: Any, fake_clock: FakeClock
    ) -> None:
        token = {"access_token": "a", "expires_in": 100, "expires_at": fake_clock.time() + 100}
        store.save("k", token)
        assert 99_000 < redis_client.pttl(store.redis_key("k")) <= 100_000

    def test_a_token_with_a_refresh_token_is_kept_past_its_access_token(
        self, store: RedisStore, redis_client: Any, fake_clock: FakeClock
    ) -> None:
        store.save("k", {**TOKEN, "expires_at": fake_clock.time() + 100})
        assert redis_client.pttl(store.redis_key("k")) == -1  # no TTL
        store.save("n", {"access_token": "a"})  # no expiry at all
        assert redis_client.pttl(store.redis_key("n")) == -1

    def test_refresh_ttl_seconds_bounds_how_long_a_refresh_token_is_kept(
        self, redis_client: Any, prefix: str
    ) -> None:
        store = RedisStore(redis_client, key_prefix=prefix, refresh_ttl_seconds=86_400)
        store.save("k", TOKEN)
        assert 86_399_000 < redis_client.pttl(store.redis_key("k")) <= 86_400_000

    def test_a_crashed_holders_lock_ends_with_its_lease(
        self, store: RedisStore, redis_client: Any
    ) -> None:
        name = store.redis_key("k") + ":lock"
        crashed = redis_client.lock(name, timeout=0.3)  # taken and never released
        assert crashed.acquire(blocking=False)
        other = RedisStore(redis_client, key_prefix=store.key_prefix, lock_timeout_seconds=0)
        with pytest.raises(TokenStoreError, match="stayed held"), other.lock("k"):
            pass
        assert _hold_and_release(store, "k") == "held"  # waits out the lease

    def test_a_lock_lost_inside_the_block_is_logged_not_raised(
        self, redis_client: Any, prefix: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        store = RedisStore(redis_client, key_prefix=prefix, lock_lease_seconds=0.05)
        with store.lock("k"):
            redis_client.delete(store.lock_key("k"))  # e.g. a Redis restart without persistence
        assert "was gone before it was released" in caplog.text

    def test_a_value_that_is_not_a_token_is_a_typed_error(
        self, store: RedisStore, redis_client: Any
    ) -> None:
        redis_client.set(store.redis_key("k"), b'{"access_token": "leak-me", ')
        with pytest.raises(TokenStoreError, match="not valid JSON") as info:
            store.load("k")
        assert "leak-me" not in str(info.value)

    def test_it_cannot_be_pickled(self, store: RedisStore) -> None:
        with pytest.raises(TypeError, match="each process"):
            pickle.dumps(store)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


@pytest.mark.redis
def test_an_unreachable_redis_is_a_typed_error(
    redis_url: str, server: AuthServer, fake_clock: FakeClock
) -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # no client-side retries: redis-py's default would retry each command with backoff
    client = redis.Redis(
        host="127.0.0.1", port=_closed_port(), socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    store = RedisStore(client, lock_timeout_seconds=1)
    for operation in (lambda: store.load("k"), lambda: store.save("k", TOKEN)):
        with pytest.raises(TokenStoreError, match="ConnectionError") as info:
            operation()
        assert "at-1" not in str(info.value) and "rt-1" not in str(info.value)
    with pytest.raises(TokenStoreError, match="Redis lock"), store.lock("k"):
        pass
    session = session_for(auth_for(server, fake_clock, store, max_wait_seconds=0))
    with pytest.raises(TokenStoreError):
        session.get(server.resource_url)
    with pytest.raises(requests.exceptions.RequestException):  # what callers already catch
        session.get(server.resource_url)
    assert server.token_requests == 0


@pytest.mark.redis
def test_redis_going_away_leaves_a_valid_in_memory_token_in_use(
    redis_url: str, server: AuthServer, fake_clock: FakeClock
) -> None:
    import redis

    binary = redis_server_binary()
    if binary is None:
        pytest.skip("needs redis-server on PATH to stop a Redis of its own")
    with redis_server(binary) as url:
        store = RedisStore(redis.Redis.from_url(url, socket_timeout=2), clock=fake_clock)
        session = session_for(auth_for(server, fake_clock, store, max_wait_seconds=0))
        assert session.get(server.resource_url).status_code == 200
    # that Redis is gone now
    fake_clock.advance(LIFETIME * 0.8)  # stale: the refresh ahead fails on the store
    assert session.get(server.resource_url).status_code == 200
    assert session.get(server.resource_url).status_code == 200
    fake_clock.advance(EXPIRED_AFTER)
    with pytest.raises(TokenStoreError):
        session.get(server.resource_url)
    assert server.token_requests == 1


# -- encryption at rest -----------------------------------------------------------------------


@pytest.fixture
def fernet_key() -> bytes:
    from cryptography.fernet import Fernet

    return Fernet.generate_key()


def _raw_file(store: FileStore, key: str) -> str:
    with open(store.path(key), encoding="utf-8") as f:
        return f.read()


class TestEncryption:
    def test_the_refresh_token_is_encrypted_in_the_file_and_the_rest_readable(
        self, tmp_path: Any, fernet_key: bytes
    ) -> None:
        store = FileStore(tmp_path, encryption_key=fernet_key)
        store.save("k", TOKEN)
        raw = json.loads(_raw_file(store, "k"))
        assert "refresh_token" not in raw and "rt-1" not in _raw_file(store, "k")
        assert raw["access_token"] == "at-1" and raw["expires_at"] == TOKEN["expires_at"]
        assert raw[SEALED_FIELD].startswith("gAAAA")
        assert store.load("k") == TOKEN

    @pytest.mark.redis
    def test_the_refresh_token_is_encrypted_in_redis(
        self, redis_client: Any, prefix: str, fernet_key: bytes
    ) -> None:
        store = RedisStore(redis_client, key_prefix=prefix, encryption_key=fernet_key)
        store.save("k", TOKEN)
        raw = redis_client.get(store.redis_key("k")).decode()
        assert "rt-1" not in raw and SEALED_FIELD in raw and "at-1" in raw
        assert store.load("k") == TOKEN
        assert redis_client.pttl(store.redis_key("k")) == -1  # still kept for its refresh token

    def test_another_key_or_no_key_cannot_read_it(self, tmp_path: Any, fernet_key: bytes) -> None:
        from cryptography.fernet import Fernet

        FileStore(tmp_path, encryption_key=fernet_key).save("k", TOKEN)
        with pytest.raises(TokenStoreError, match="cannot be decrypted"):
            FileStore(tmp_path, encryption_key=Fernet.generate_key()).load("k")
        with pytest.raises(TokenStoreError, match="encryption_key"):
            FileStore(tmp_path).load("k")

    def test_keys_rotate(self, tmp_path: Any, fernet_key: bytes) -> None:
        from cryptography.fernet import Fernet

        FileStore(tmp_path, encryption_key=fernet_key).save("old", TOKEN)
        rotated = FileStore(tmp_path, encryption_key=[Fernet.generate_key(), fernet_key])
        assert rotated.load("old") == TOKEN

    def test_rotating_refresh_tokens_survive_encrypted_storage(
        self, tmp_path: Any, fernet_key: bytes, server: AuthServer, fake_clock: FakeClock
    ) -> None:
        server.rotate_refresh_tokens = True
        store = FileStore(tmp_path, encryption_key=fernet_key)
        saved = server.issue_token("app", refresh=True, user="alice")
        grant = RefreshToken(
            server.token_url,
            client_id="app",
            client_secret="app-secret",
            refresh_token=saved["refresh_token"],
        )
        auth = auth_for(server, fake_clock, store, grant=grant, token=saved)
        session = session_for(auth)
        for _ in range(3):
            assert session.get(server.resource_url).status_code == 200
            fake_clock.advance(EXPIRED_AFTER)
        assert server.token_requests_by_grant == {"refresh_token": 2}
        assert server.token_errors == {}
        on_disk = _raw_file(store, store_key(grant))
        assert auth.token is not None and auth.token.refresh_token not in on_disk

    def test_a_bad_key_is_a_configuration_error_that_does_not_echo_it(self, tmp_path: Any) -> None:
        with pytest.raises(ConfigurationError, match="Fernet") as info:
            FileStore(tmp_path, encryption_key="not-a-key-s3cr3t")
        assert "s3cr3t" not in str(info.value)
        with pytest.raises(ConfigurationError):
            FileStore(tmp_path, encryption_key=[])

    def test_without_cryptography_a_key_names_the_extra(
        self, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "cryptography", None)
        monkeypatch.setitem(sys.modules, "cryptography.fernet", None)
        with pytest.raises(ConfigurationError, match=r"requests-tokenauth\[encryption\]"):
            FileStore(tmp_path, encryption_key=b"x" * 44)

    def test_the_package_imports_and_stores_work_without_cryptography(self, tmp_path: Any) -> None:
        script = (
            "import sys; sys.modules['cryptography'] = None\n"
            "import requests_tokenauth as t\n"
            f"s = t.FileStore({str(tmp_path)!r}); s.save('k', {{'access_token': 'a'}})\n"
            "assert s.load('k') == {'access_token': 'a'}\n"
            "try:\n"
            "    t.FileStore('x', encryption_key='k')\n"
            "except t.ConfigurationError as exc:\n"
            "    print(exc)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert "[encryption]" in out.stdout


class _FlakyStore:
    """A FileStore whose lock fails while ``down`` is set."""

    def __init__(self, inner: FileStore) -> None:
        self.inner = inner
        self.down = False

    def load(self, key: str) -> Optional[dict[str, Any]]:
        return self.inner.load(key)

    def save(self, key: str, token: dict[str, Any]) -> None:
        self.inner.save(key, token)

    def lock(self, key: str) -> Any:
        if self.down:
            raise TokenStoreError("the store is down (test)")
        return self.inner.lock(key)


def test_a_token_loaded_from_the_store_ends_the_remembered_store_failures(
    tmp_path: Any, server: AuthServer, fake_clock: FakeClock
) -> None:
    """After the store recovers and hands over a token, the next failure starts the backoff
    afresh: a failure streak that ended must not lengthen later waits."""
    flaky = _FlakyStore(FileStore(tmp_path))
    session = session_for(auth_for(server, fake_clock, flaky, max_wait_seconds=0))
    flaky.down = True
    for _ in range(3):
        with pytest.raises(TokenStoreError):
            session.get(server.resource_url)
        fake_clock.advance(EXACT.backoff_max_seconds)
    flaky.down = False
    other = session_for(auth_for(server, fake_clock, flaky.inner))  # e.g. another process
    assert other.get(server.resource_url).status_code == 200
    assert session.get(server.resource_url).status_code == 200  # loaded from the store
    assert server.token_requests == 1
    fake_clock.advance(EXPIRED_AFTER)  # inside the skew: a failed renewal serves the token
    server.set_token_fault("503", count=1)
    assert session.get(server.resource_url).status_code == 200
    failure = session.auth.manager._failure
    assert failure is not None and failure.count == 1  # the streak started afresh
    wait = failure.next_attempt_monotonic - fake_clock.monotonic()
    assert wait == 0.5 * EXACT.backoff_base_seconds  # the 1st step, not a longer one
    assert server.token_requests == 2

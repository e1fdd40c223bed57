"""What a store hands back is what was saved under that key, by whoever holds the lock:
encrypted records bound to their key (issue 15, item 4), Redis locks out of reach of token
keys (15.5), a Redis lease that outlives a live holder (10.6), MemoryStore locks that time
out and survive fork (10.8), and pickles that carry no token (15.9)."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import threading
from typing import Any, Callable

import pytest
import wrapt

from requests_tokenauth import (
    ConfigurationError,
    FileStore,
    MemoryStore,
    RedisStore,
    RefreshToken,
    TokenAuth,
    TokenExchange,
    TokenStore,
    TokenStoreError,
)
from requests_tokenauth._stores import store_key
from requests_tokenauth.testing import AuthServer

from .helpers import session_for

WAIT = 10.0
ALICE = {
    "access_token": "at-alice",
    "token_type": "Bearer",
    "expires_at": 4_000_000_000.0,
    "refresh_token": "rt-alice",
}
BOB = {**ALICE, "access_token": "at-bob", "refresh_token": "rt-bob"}


@pytest.fixture
def fernet_key() -> bytes:
    from cryptography.fernet import Fernet

    return Fernet.generate_key()


@pytest.fixture
def redis_client(redis_url: str) -> Any:
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: Any) -> Any:
    import uuid

    prefix = f"tokenauth-test:{uuid.uuid4().hex}:"
    yield prefix
    keys = list(redis_client.scan_iter(match=prefix + "*", count=100))
    if keys:
        redis_client.delete(*keys)


# -- encrypted records are bound to their key (15.4) ------------------------------------------


class _Raw:
    """Read and write a store's raw record text, as someone with access to the storage."""

    def __init__(self, get: Callable[[str], str], put: Callable[[str, str], None]) -> None:
        self.get, self.put = get, put


@pytest.fixture(params=["file", pytest.param("redis", marks=pytest.mark.redis)])
def encrypted(
    request: pytest.FixtureRequest, tmp_path: Any, fernet_key: bytes
) -> tuple[TokenStore, _Raw]:
    if request.param == "file":
        store = FileStore(tmp_path / "tokens", encryption_key=fernet_key)

        def get(key: str) -> str:
            with open(store.path(key), encoding="utf-8") as f:
                return f.read()

        def put(key: str, text: str) -> None:
            with open(store.path(key), "w", encoding="utf-8") as f:
                f.write(text)

        return store, _Raw(get, put)
    client = request.getfixturevalue("redis_client")
    redis_store = RedisStore(
        client, key_prefix=request.getfixturevalue("prefix"), encryption_key=fernet_key
    )
    return redis_store, _Raw(
        lambda key: client.get(redis_store.redis_key(key)).decode(),
        lambda key, text: client.set(redis_store.redis_key(key), text),
    )


def test_a_record_moved_to_another_key_is_refused(encrypted: tuple[TokenStore, _Raw]) -> None:
    store, raw = encrypted
    store.save("alice", ALICE)
    store.save("bob", BOB)
    raw.put("bob", raw.get("alice"))  # alice's ciphertext in bob's record
    with pytest.raises(TokenStoreError, match="another key") as info:
        store.load("bob")
    assert "rt-alice" not in str(info.value)
    assert store.load("alice") == ALICE


@pytest.mark.parametrize(
    "edit",
    [{"access_token": "at-planted"}, {"expires_at": 4_100_000_000.0}, {"scope": "admin"}],
    ids=["access_token", "expires_at", "added-field"],
)
def test_an_edited_record_is_refused(
    encrypted: tuple[TokenStore, _Raw], edit: dict[str, Any]
) -> None:
    store, raw = encrypted
    store.save("alice", ALICE)
    record = json.loads(raw.get("alice"))
    raw.put("alice", json.dumps({**record, **edit}))
    with pytest.raises(TokenStoreError, match="differ"):
        store.load("alice")


def test_a_plaintext_record_is_refused_when_the_store_encrypts(
    encrypted: tuple[TokenStore, _Raw],
) -> None:
    store, raw = encrypted
    store.save("alice", ALICE)
    raw.put("alice", json.dumps({**ALICE, "refresh_token": "rt-planted"}))
    with pytest.raises(TokenStoreError, match="not encrypted"):
        store.load("alice")
    raw.put("alice", json.dumps({"access_token": "at-planted", "token_type": "Bearer"}))
    with pytest.raises(TokenStoreError, match="not encrypted"):
        store.load("alice")


def test_a_record_of_the_old_unbound_format_is_refused(
    encrypted: tuple[TokenStore, _Raw], fernet_key: bytes
) -> None:
    from cryptography.fernet import Fernet

    store, raw = encrypted
    store.save("alice", BOB)  # the record exists (and the directory)
    old = {k: v for k, v in ALICE.items() if k != "refresh_token"}
    old["refresh_token_fernet"] = Fernet(fernet_key).encrypt(b"rt-alice").decode()
    raw.put("alice", json.dumps(old))
    with pytest.raises(TokenStoreError, match="older version"):
        store.load("alice")


def test_a_refused_record_is_replaced_by_a_new_token(
    tmp_path: Any, fernet_key: bytes, auth_server: AuthServer
) -> None:
    from requests_tokenauth import ClientCredentials

    grant = ClientCredentials(auth_server.token_url, client_id="svc", client_secret="svc-secret")
    store = FileStore(tmp_path, encryption_key=fernet_key)
    planted = auth_server.issue_token("svc")  # a real token, planted in clear
    with open(store.path(store_key(grant)), "w") as f:
        json.dump({**planted, "expires_at": 4_000_000_000}, f)
    session = session_for(TokenAuth(grant, store=store))
    assert session.get(auth_server.resource_url).status_code == 200
    assert auth_server.token_requests == 1
    sent = [s.authorization for s in auth_server.seen if s.path.startswith("/resource")]
    assert sent != ["Bearer " + planted["access_token"]]


# -- Redis: token keys cannot reach locks (15.5) ----------------------------------------------


@pytest.mark.redis
def test_a_token_key_cannot_be_another_keys_lock(redis_client: Any, prefix: str) -> None:
    store = RedisStore(redis_client, key_prefix=prefix, lock_timeout_seconds=0.5)
    with pytest.raises(TokenStoreError, match="names locks"):
        store.save("alice:lock", ALICE)
    with pytest.raises(TokenStoreError, match="names locks"):
        store.load("alice:lock")
    with store.lock("alice"):  # alice's renewals are not blocked
        pass
    assert not redis_client.exists(prefix + "alice:lock")


# -- Redis: a live holder keeps its lease (10.6) ----------------------------------------------


class _CountingLock(wrapt.BaseObjectProxy):  # type: ignore[misc]
    """A redis-py lock whose lease extensions are counted, so a test waits for them."""

    def __init__(self, lock: Any, extended: threading.Condition, count: list[int]) -> None:
        super().__init__(lock)
        self._self_extended = extended
        self._self_count = count

    def reacquire(self) -> Any:
        result = self.__wrapped__.reacquire()
        with self._self_extended:
            self._self_count[0] += 1
            self._self_extended.notify_all()
        return result


class _CountingClient(wrapt.BaseObjectProxy):  # type: ignore[misc]
    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self._self_extended = threading.Condition()
        self._self_count = [0]

    def lock(self, *args: Any, **kwargs: Any) -> Any:
        lock = self.__wrapped__.lock(*args, **kwargs)
        return _CountingLock(lock, self._self_extended, self._self_count)

    def wait_for_extensions(self, n: int) -> bool:
        with self._self_extended:
            return self._self_extended.wait_for(lambda: self._self_count[0] >= n, WAIT)


@pytest.mark.redis
def test_a_live_holder_keeps_the_lock_past_its_lease(
    redis_client: Any, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The holder is held on a gate (a slow token request) until its lease has been
    extended four times, i.e. for longer than one lease: the lock must still be there and
    a second client must not get it; the holder then releases it cleanly."""
    lease = 0.5
    counting = _CountingClient(redis_client)
    holder = RedisStore(counting, key_prefix=prefix, lock_lease_seconds=lease)
    waiter = RedisStore(redis_client, key_prefix=prefix, lock_timeout_seconds=0)
    holding, gate = threading.Event(), threading.Event()
    out: list[Any] = []

    def hold() -> None:
        with holder.lock("k"):
            holding.set()
            out.append(gate.wait(WAIT))

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        assert holding.wait(WAIT)
        assert counting.wait_for_extensions(4)  # 4 x lease/3: held past one lease
        assert redis_client.exists(holder.lock_key("k"))
        with pytest.raises(TokenStoreError, match="stayed held"), waiter.lock("k"):
            pass
    finally:
        gate.set()
        thread.join(WAIT)
    assert out == [True]
    assert "gone before it was released" not in caplog.text
    assert "lost while held" not in caplog.text
    with waiter.lock("k"):  # released: the next one gets it at once
        pass


# -- MemoryStore: timeouts and fork (10.8) ----------------------------------------------------


def test_a_memory_store_lock_times_out_with_a_typed_error() -> None:
    store = MemoryStore(lock_timeout_seconds=0.05)
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with store.lock("k"):
            taken.set()
            done.wait(WAIT)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        assert taken.wait(WAIT)
        with pytest.raises(TokenStoreError, match="stayed held"), store.lock("k"):
            pass
    finally:
        done.set()
        thread.join(WAIT)
    with pytest.raises(ConfigurationError):
        MemoryStore(lock_timeout_seconds=-1)


def _child_request(session: Any, url: str) -> None:  # pragma: no cover - in the child
    import os

    try:
        code = 0 if session.get(url, timeout=WAIT).status_code == 200 else 2
    except BaseException:
        code = 3
    os._exit(code)


def test_a_child_forked_during_a_refresh_with_a_memory_store_does_not_deadlock(
    auth_server: AuthServer,
) -> None:
    """A thread holds the MemoryStore lock, waiting for its token request, when the process
    forks: the child's own request must not wait forever for a lock nobody will release."""
    from requests_tokenauth import ClientCredentials

    grant = ClientCredentials(auth_server.token_url, client_id="svc", client_secret="svc-secret")
    auth = TokenAuth(grant, store=MemoryStore())
    session = session_for(auth)
    auth_server.hold_token_endpoint()
    parent: list[Any] = []
    thread = threading.Thread(
        target=lambda: parent.append(session.get(auth_server.resource_url).status_code),
        daemon=True,
    )
    thread.start()
    child = None
    try:
        assert auth_server.wait_for_token_requests(1)  # the store lock is held now
        child = multiprocessing.get_context("fork").Process(
            target=_child_request, args=(session, auth_server.resource_url), daemon=True
        )
        child.start()
        auth_server.release_token_endpoint()
        thread.join(WAIT)
        child.join(WAIT)
        assert parent == [200]
        assert child.exitcode == 0
    finally:
        auth_server.release_token_endpoint()
        if child is not None and child.is_alive():
            child.kill()
            child.join(WAIT)


# -- pickles carry no token (15.9) ------------------------------------------------------------


def test_a_pickled_refresh_token_grant_leaves_its_refresh_token_out(
    tmp_path: Any, auth_server: AuthServer
) -> None:
    seed = auth_server.issue_token("app", refresh=True, user="alice")
    grant = RefreshToken(
        auth_server.token_url,
        client_id="app",
        client_secret="app-secret",
        refresh_token=seed["refresh_token"],
    )
    store = FileStore(tmp_path)
    auth = TokenAuth(grant, store=store)
    data = pickle.dumps(auth)
    assert seed["refresh_token"].encode() not in data
    copy = pickle.loads(data)
    assert store_key(copy.manager.grant) == store_key(grant)  # same user, same key
    with pytest.raises(ConfigurationError, match="pickled copy"):
        copy.get_token()  # nothing in the store yet, and no refresh token to start from
    assert session_for(auth).get(auth_server.resource_url).json()["user"] == "alice"
    assert session_for(copy).get(auth_server.resource_url).json()["user"] == "alice"
    assert auth_server.token_requests == 1  # the copy took the store's token


def test_a_pickled_token_exchange_leaves_its_subject_and_actor_tokens_out(
    auth_server: AuthServer,
) -> None:
    grant = TokenExchange(
        auth_server.token_url,
        client_id="gateway",
        client_secret="gateway-secret",
        subject_token="subject-token-value",
        actor_token="actor-token-value",
        actor_token_type="urn:ietf:params:oauth:token-type:access_token",
    )
    data = pickle.dumps(grant)
    assert b"subject-token-value" not in data and b"actor-token-value" not in data
    copy = pickle.loads(data)
    assert copy.store_identity() == grant.store_identity()
    with pytest.raises(ConfigurationError, match="unpickled"):
        TokenAuth(copy).get_token()


def test_a_pickled_file_store_keeps_its_encryption_key(tmp_path: Any, fernet_key: bytes) -> None:
    """As documented: the key is what lets the copy read the records (treat the pickle as a
    secret); without it the copy would write refresh tokens in clear."""
    store = FileStore(tmp_path, encryption_key=fernet_key)
    store.save("k", ALICE)
    data = pickle.dumps(store)
    assert b"rt-alice" not in data
    assert pickle.loads(data).load("k") == ALICE

"""The Redis lock's waiters (issue 16): woken by the holder's release message, not by a
poll; where an ACL forbids pub/sub, they poll. A real Redis; counts, not wall time."""

from __future__ import annotations

import threading
import uuid

import pytest

from requests_tokenauth import RedisStore

from .test_stores_fleet import WAIT, _raw, _run, _wait_until


@pytest.mark.redis
def test_a_redis_lock_waiter_is_woken_by_the_release_not_by_a_poll(redis_url: str) -> None:
    import redis

    prefix = f"tokenauth-test:{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(redis_url, socket_timeout=WAIT + 70)
    holder = RedisStore(client, key_prefix=prefix)
    waiter = RedisStore(client, key_prefix=prefix, lock_poll_seconds=60)
    release = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        with holder.lock("k"):
            holding.set()
            release.wait(WAIT)

    def wait() -> str:
        with waiter.lock("k"):
            return "held"

    try:
        held, _ = _run(hold)
        assert holding.wait(WAIT)
        waiting, out = _run(wait)
        channel = waiter.lock_key("k")
        assert _wait_until(lambda: dict(client.pubsub_numsub(channel))[_raw(channel)] == 1)
        assert out == []  # still waiting
        release.set()
        held.join(WAIT)
        waiting.join(WAIT)
        assert out == ["held"]
        # the release message woke it, or it tried again right after subscribing; no poll
        assert waiter.lock_wait_counts["polled"] == 0
        assert waiter.lock_wait_counts["woken"] <= 1
    finally:
        release.set()
        client.delete(holder.lock_key("k"))
        client.close()


@pytest.mark.redis
def test_where_an_acl_forbids_pub_sub_the_redis_lock_waiter_polls(redis_url: str) -> None:
    """No channel permission: subscribing and publishing fail, and the lock still works
    (the waiter tries again every poll)."""
    import redis

    admin = redis.Redis.from_url(redis_url, socket_timeout=WAIT)
    user = f"nochannels-{uuid.uuid4().hex[:8]}"
    admin.execute_command("ACL", "SETUSER", user, "on", ">pw", "~*", "+@all", "resetchannels")
    prefix = f"tokenauth-test:{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(redis_url, username=user, password="pw", socket_timeout=WAIT)
    holder = RedisStore(client, key_prefix=prefix)
    waiter = RedisStore(client, key_prefix=prefix, lock_poll_seconds=0.01)
    release, holding = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.lock("k"):
            holding.set()
            release.wait(WAIT)

    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.publish("any", "x")
        held, _ = _run(hold)
        assert holding.wait(WAIT)
        waiting, out = _run(lambda: _hold(waiter))
        assert _wait_until(lambda: waiter.lock_wait_counts["polled"] >= 2)
        assert out == []
        release.set()
        held.join(WAIT)
        waiting.join(WAIT)
        assert out == ["held"]
        assert waiter.lock_wait_counts["woken"] == 0
    finally:
        release.set()
        admin.delete(holder.lock_key("k"))
        admin.execute_command("ACL", "DELUSER", user)
        client.close()
        admin.close()


def _hold(store: RedisStore) -> str:
    with store.lock("k"):
        return "held"

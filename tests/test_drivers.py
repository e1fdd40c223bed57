"""The same guarantees for every driver (requests, httpx.Client, httpx.AsyncClient), one test
body per scenario, against the real loopback server: single flight at expiry, rotation,
revocation, the always-401 cooldown, bodies, redirects, origins, a shared Redis store, DPoP
and outages. Exact counts; races held open with the server's gate and the FakeClock."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from requests_tokenauth import (
    ClientCredentials,
    OriginNotAllowedError,
    RedisStore,
    RefreshToken,
    TokenEndpointError,
)
from requests_tokenauth.testing import AuthServer, FakeClock

from .drivers import DRIVER_NAMES, DRIVERS, Driver, Outcome, Reply, Streamed
from .helpers import EXACT, EXPIRED_AFTER, LIFETIME


@pytest.fixture(params=DRIVER_NAMES)
def driver(request: pytest.FixtureRequest) -> Iterator[Driver]:
    made = DRIVERS[request.param]()
    yield made
    made.close()


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    auth_server.token_lifetime_seconds = LIFETIME
    return auth_server


@pytest.fixture
def other(auth_server_factory: Any, fake_clock: FakeClock) -> AuthServer:
    """A second origin on the same clock."""
    return auth_server_factory(clock=fake_clock)


def service_grant(server: AuthServer) -> ClientCredentials:
    return ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")


def service_auth(driver: Driver, server: AuthServer, clock: FakeClock, **options: Any) -> Any:
    options.setdefault("policy", EXACT)
    options.setdefault("random", lambda: 0.5)
    return driver.auth_for(service_grant(server), clock=clock, **options)


def tokens_sent(server: AuthServer, path: str = "/resource") -> list[str | None]:
    return [s.authorization for s in server.seen if s.path == path]


def statuses(outcomes: list[Outcome]) -> list[Any]:
    """Each outcome's status code, or the exception it raised (so a failure shows it)."""
    return [o.status_code if isinstance(o, Reply) else o for o in outcomes]


# -- single flight at expiry ---------------------------------------------------------------


def test_64_concurrent_calls_on_an_expired_token_make_one_token_request(
    driver: Driver, server: AuthServer, fake_clock: FakeClock
) -> None:
    auth = service_auth(driver, server, fake_clock)
    caller = driver.caller(auth)
    assert caller.get(server.resource_url).status_code == 200
    fake_clock.advance(EXPIRED_AFTER)
    waiting = driver.waiting(auth)
    server.hold_token_endpoint()
    calls = caller.start(64, "GET", server.resource_url)
    assert server.wait_for_token_requests(2)  # one call is at the token endpoint...
    assert waiting.wait_for(64)  # ...and all 64 wait for its token
    server.release_token_endpoint()
    assert statuses(calls.join()) == [200] * 64
    assert server.token_requests == 2
    assert tokens_sent(server)[1:] == [auth.token.authorization] * 64


def test_rotating_refresh_tokens_16_concurrent_calls_over_3_expiries(
    driver: Driver, server: AuthServer, fake_clock: FakeClock
) -> None:
    server.rotate_refresh_tokens = True
    saved = server.issue_token("app", scopes=("read",), refresh=True, user="alice")
    persisted: list[dict[str, Any]] = []
    grant = RefreshToken(server.token_url, client_id="app", client_secret="app-secret")
    auth = driver.auth_for(
        grant, token=saved, on_token=persisted.append, clock=fake_clock, policy=EXACT
    )
    caller = driver.caller(auth)
    waiting = driver.waiting(auth)
    for expiry in range(1, 4):
        fake_clock.advance(EXPIRED_AFTER)
        server.hold_token_endpoint()
        before = waiting.count
        calls = caller.start(16, "GET", server.resource_url)
        assert server.wait_for_token_requests(expiry)
        assert waiting.wait_for(before + 16)
        server.release_token_endpoint()
        assert statuses(calls.join()) == [200] * 16
    assert server.token_requests_by_grant == {"refresh_token": 3}
    assert server.token_errors == {}  # no invalid_grant: each refresh token was used once
    assert len({p["refresh_token"] for p in persisted}) == 3
    assert persisted[-1]["refresh_token"] == auth.token.refresh_token


# -- the 401 retry -------------------------------------------------------------------------


def test_a_token_revoked_server_side_is_replaced_and_the_call_succeeds(
    driver: Driver, server: AuthServer, fake_clock: FakeClock
) -> None:
    auth = service_auth(driver, server, fake_clock)
    caller = driver.caller(auth)
    caller.get(server.resource_url)
    revoked = auth.token
    server.revoke_all()
    server.reset_counters()
    reply = caller.get(server.resource_url)
    assert reply.status_code == 200
    assert reply.history_codes == [401]  # one retry
    assert server.resource_requests == 2 and server.token_requests == 1
    assert tokens_sent(server)[-2:] == [revoked.authorization, auth.token.authorization]
    assert auth.token is not revoked


def test_32_concurrent_calls_rejected_with_one_revoked_token_make_one_token_request(
    driver: Driver, server: AuthServer, fake_clock: FakeClock
) -> None:
    auth = service_auth(driver, server, fake_clock)
    caller = driver.caller(auth)
    caller.get(server.resource_url)
    server.revoke_all()
    server.reset_counters()
    waiting = driver.waiting(auth)
    server.hold_token_endpoint()
    calls = caller.start(32, "GET", server.resource_url)
    assert server.wait_for_token_requests(1)
    assert waiting.wait_for(32)  # every call got its 401 and waits for the replacement
    server.release_token_endpoint()
    outcomes = calls.join()
    assert statuses(outcomes) == [200] * 32
    assert all(o.history_codes == [401] for o in outcomes if isinstance(o, Reply))
    assert server.token_requests == 1 and server.resource_requests == 64


def test_a_resource_that_always_answers_401_gets_one_retry_per_call_and_no_storm(
    driver: Driver, server: AuthServer, fake_clock: FakeClock
) -> None:
    auth = service_auth(driver, server, fake_clock)
    caller = driver.caller(auth)
    caller.get(server.resource_url)
    server.always_401 = True
    server.reset_counters()
    outcomes = caller.concurrently(8, "GET", server.resource_url, repeat=10)
    assert statuses(outcomes) == [401] * 80
    sends = [1 + len(o.history) for o in outcomes if isinstance(o, Reply)]
    assert max(sends) <= 2  # never more than one retry
    assert server.resource_requests == sum(sends)
    assert server.token_requests == 1  # one replacement; then the cooldown holds
    fake_clock.advance(EXACT.unauthorized_cooldown_seconds)
    assert caller.get(server.resource_url).history_codes == [401]  # the cooldown ended
    assert server.token_requests == 2


# -- bodies --------------------------------------------------------------------------------


def test_a_bytes_body_is_sent_again_in_full_after_a_401(
    driver: Driver, server: AuthServer, fake_clock: FakeClock
) -> None:
    payload = bytes(range(256)) * 64
    caller = driver.caller(service_auth(driver, server, fake_clock))
    caller.get(server.resource_url)
    server.revoke_all()
    reply = caller.post(server.resource_url, payload)
    assert reply.status_code == 200 and reply.history_codes == [401]
    assert reply.json()["body_length"] == len(payload)
    assert reply.json()["body_sha256"] == hashlib.sha256(payload).hexdigest()
    posted = [s.body_length for s in server.seen if (s.method, s.path) == ("POST", "/resource")]
    assert posted == [len(payload)] * 2


def test_a_generator_body_is_not_sent_again_but_the_next_call_has_the_new_token(
    driver: Driver, server: AuthServer, fake_clock: FakeClock
) -> None:
    auth = service_auth(driver, server, fake_clock)
    caller = driver.caller(auth)
    caller.get(server.resource_url)
    revoked = auth.token
    server.revoke_all()
    server.reset_counters()
    body = Streamed((b"chunk",) * 3)
    reply = caller.post(server.resource_url, body)
    assert reply.status_code == 401 and reply.history_codes == []
    assert server.resource_requests == 1
    assert server.token_requests == 1  # the token was replaced all the same (issue 12)
    again = caller.post(server.resource_url, body)
    assert again.status_code == 200 and again.history_codes == []
    assert server.token_requests == 1
    posts = [s for s in server.seen if (s.method, s.path) == ("POST", "/resource")]
    assert [s.body_length for s in posts] == [15, 15]
    assert [s.authorization for s in posts] == [revoked.authorization, auth.token.authorization]


# -- where the token goes ------------------------------------------------------------------


def test_redirects_keep_the_token_on_the_same_origin_and_drop_it_across_origins(
    driver: Driver, server: AuthServer, other: AuthServer, fake_clock: FakeClock
) -> None:
    auth = service_auth(driver, server, fake_clock)
    caller = driver.caller(auth)
    same = caller.get(server.url + "/redirect", params={"to": server.resource_url})
    assert same.status_code == 200 and same.history_codes == [302]
    away = caller.get(server.url + "/redirect", params={"to": other.resource_url})
    assert away.status_code == 401  # the other origin got no token...
    assert away.history_codes == [302]  # ...and its 401 is not ours to retry
    assert "Authorization" not in away.request_headers
    assert tokens_sent(other) == [None]
    assert tokens_sent(server) == [auth.token.authorization]
    redirects = [s.authorization for s in server.seen if s.path.startswith("/redirect")]
    assert redirects == [auth.token.authorization] * 2
    assert server.token_requests == 1


def test_the_token_goes_only_to_the_allowed_origins(
    driver: Driver, server: AuthServer, other: AuthServer, fake_clock: FakeClock
) -> None:
    auth = service_auth(driver, server, fake_clock, origins=[server.url])
    caller = driver.caller(auth)
    assert caller.get(other.resource_url).status_code == 401  # sent, without the token
    assert tokens_sent(other) == [None]
    assert caller.get(server.resource_url).status_code == 200
    assert tokens_sent(server) == [auth.token.authorization]
    strict_auth = service_auth(
        driver, server, fake_clock, origins=[server.url], strict_origins=True
    )
    strict = driver.caller(strict_auth)
    other.clear_seen()
    with pytest.raises(OriginNotAllowedError, match="origins"):
        strict.get(other.resource_url)
    assert other.seen == []


def test_plain_http_to_a_host_that_is_not_this_machine_is_refused_before_any_traffic(
    driver: Driver, server: AuthServer, fake_clock: FakeClock
) -> None:
    caller = driver.caller(service_auth(driver, server, fake_clock))
    with pytest.raises(OriginNotAllowedError, match="allow_insecure_http=True") as info:
        caller.get("http://api.example.invalid/orders", params={"secret": "1"})
    assert "secret=1" not in str(info.value)
    assert server.seen == []  # not even a token request


# -- a shared store (real Redis) -----------------------------------------------------------


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[tuple[str, str]]:
    import redis

    prefix = f"tokenauth-test:{uuid.uuid4().hex}:"
    yield redis_url, prefix
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    keys = list(client.scan_iter(match=prefix + "*", count=100))
    if keys:
        client.delete(*keys)
    client.close()


def redis_store(redis_prefix: tuple[str, str], clock: FakeClock) -> RedisStore:
    """Another handle on the shared store, with a Redis connection of its own."""
    import redis

    url, prefix = redis_prefix
    return RedisStore(redis.Redis.from_url(url, socket_timeout=30), key_prefix=prefix, clock=clock)


@pytest.mark.redis
def test_two_auths_sharing_a_redis_store_make_one_token_request_per_expiry(
    driver: Driver, server: AuthServer, fake_clock: FakeClock, redis_prefix: tuple[str, str]
) -> None:
    auths = [
        service_auth(driver, server, fake_clock, store=redis_store(redis_prefix, fake_clock))
        for _ in range(2)
    ]
    callers = [driver.caller(auth) for auth in auths]
    for expiry in range(1, 4):
        both = [c.start(8, "GET", server.resource_url) for c in callers]
        assert [statuses(calls.join()) for calls in both] == [[200] * 8] * 2
        assert server.token_requests == expiry
        assert auths[0].token.access_token == auths[1].token.access_token
        fake_clock.advance(EXPIRED_AFTER)
    assert len(set(tokens_sent(server))) == 3


@pytest.mark.redis
def test_rotating_refresh_tokens_through_a_shared_redis_store(
    driver: Driver, server: AuthServer, fake_clock: FakeClock, redis_prefix: tuple[str, str]
) -> None:
    server.rotate_refresh_tokens = True
    saved = server.issue_token("app", scopes=("read",), refresh=True, user="alice")
    grant = RefreshToken(server.token_url, client_id="app", client_secret="app-secret")
    auths = [
        driver.auth_for(
            grant,
            token=saved,
            store_key="app:user:alice",
            store=redis_store(redis_prefix, fake_clock),
            clock=fake_clock,
            policy=EXACT,
        )
        for _ in range(2)
    ]
    callers = [driver.caller(auth) for auth in auths]
    for _ in range(3):
        fake_clock.advance(EXPIRED_AFTER)
        both = [c.start(8, "GET", server.resource_url) for c in callers]
        assert [statuses(calls.join()) for calls in both] == [[200] * 8] * 2
    assert server.token_requests_by_grant == {"refresh_token": 3}
    assert server.token_errors == {}  # no rotated-away refresh token was ever sent
    assert auths[0].token.refresh_token == auths[1].token.refresh_token


# -- DPoP ----------------------------------------------------------------------------------


def dpop_claims(proof: str) -> dict[str, Any]:
    claims = proof.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))  # type: ignore[no-any-return]


def test_dpop_bound_tokens_a_fresh_proof_per_request_and_nonce_challenges_answered(
    driver: Driver, server: AuthServer, fake_clock: FakeClock
) -> None:
    pytest.importorskip("cryptography")
    from requests_tokenauth import DPoPKey

    key = DPoPKey.generate()
    server.require_dpop_nonce = True
    auth = service_auth(driver, server, fake_clock, dpop=key)
    caller = driver.caller(auth)
    replies = [caller.get(server.resource_url) for _ in range(3)]
    assert [r.status_code for r in replies] == [200] * 3
    token = auth.token
    assert token.token_type == "DPoP"
    assert server.dpop.bound_key(token.access_token) == key.thumbprint
    # the token endpoint asked for a nonce once (one retry); the resource, on the same
    # origin, got it from the start
    assert server.token_requests == 2 and server.token_errors == {"use_dpop_nonce": 1}
    assert [r.history_codes for r in replies] == [[], [], []]
    proofs = [dpop_claims(r.request_headers["DPoP"]) for r in replies]
    assert len({p["jti"] for p in proofs}) == 3
    assert {p["nonce"] for p in proofs} == {server.dpop.nonce}
    assert set(tokens_sent(server)) == {f"DPoP {token.access_token}"}
    # the resource rotates its nonce: one retry with a fresh proof, the same token
    server.dpop.rotate_nonce()
    server.reset_counters()
    reply = caller.post(server.resource_url, b"payload")
    assert reply.status_code == 200 and reply.json()["body_length"] == 7
    assert reply.history_codes == [401]
    assert reply.history[0].headers["DPoP-Nonce"] == server.dpop.nonce
    assert dpop_claims(reply.request_headers["DPoP"])["nonce"] == server.dpop.nonce
    assert auth.token is token
    assert server.token_requests == 0 and server.resource_requests == 2
    assert server.dpop.rejections == {"nonce": 2}  # at the token endpoint, then the resource


# -- outages (FakeClock: exact schedules, callers parked on the clock) ---------------------


def outage_auth(driver: Driver, server: AuthServer, clock: FakeClock, **options: Any) -> Any:
    """As tests/test_resilience.py: refresh inline, backoff jitter at its top (exact)."""
    options.setdefault("refresh_ahead", "inline")
    options.setdefault("random", lambda: 1.0)
    return service_auth(driver, server, clock, **options)


def park(clock: FakeClock, n: int) -> None:
    """Wait until ``n`` threads wait on ``clock`` for the next attempt."""
    assert clock.wait_for_sleepers(n), "the callers did not all wait for the next attempt"


def test_an_outage_with_a_valid_token_costs_callers_nothing_and_follows_the_backoff(
    driver: Driver, server: AuthServer, fake_clock: FakeClock
) -> None:
    auth = outage_auth(driver, server, fake_clock)
    caller = driver.caller(auth)
    caller.get(server.resource_url)
    first, start = auth.token, fake_clock.monotonic()
    server.set_token_fault("500")
    attempts_at: list[float] = []
    # stale at 70; attempts then follow the backoff: +1, +2, +4 (base 1 s, doubling)
    for t in (70.0, 70.5, 71.0, 72.0, 73.0, 76.9, 77.0):
        fake_clock.advance(start + t - fake_clock.monotonic())
        before = server.token_requests
        assert statuses(caller.concurrently(8, "GET", server.resource_url)) == [200] * 8
        attempts_at += [t] * (server.token_requests - before)
    assert attempts_at == [70.0, 71.0, 73.0, 77.0]
    assert auth.token is first  # the old token kept serving
    server.clear_token_fault()
    fake_clock.advance(start + 85.0 - fake_clock.monotonic())
    assert statuses(caller.concurrently(8, "GET", server.resource_url)) == [200] * 8
    assert server.token_requests == 1 + 5 and auth.token is not first


def test_callers_without_a_token_wait_through_an_outage_and_succeed_when_it_ends(
    driver: Driver, server: AuthServer, fake_clock: FakeClock
) -> None:
    auth = outage_auth(driver, server, fake_clock)  # default max wait: 5 s
    caller = driver.caller(auth)
    caller.get(server.resource_url)
    fake_clock.advance(LIFETIME)  # nominally expired
    server.set_token_fault("500")
    base = server.token_requests
    calls = caller.start(8, "GET", server.resource_url)
    park(fake_clock, driver.parked(8))  # one attempt failed; every call waits for the next
    assert server.token_requests == base + 1 and not calls.done()
    for step in (2, 3, 4):
        fake_clock.advance(0.5)  # the probe interval (random 1.0: its top)
        park(fake_clock, driver.parked(8))
        assert server.token_requests == base + step, "one attempt per step, not per caller"
    server.clear_token_fault()
    fake_clock.advance(0.5)
    assert statuses(calls.join()) == [200] * 8
    assert server.token_requests == base + 5
    assert server.resource_requests == 1 + 8


def test_an_outage_with_an_expired_token_and_max_wait_0_fails_fast_with_one_attempt(
    driver: Driver, server: AuthServer, fake_clock: FakeClock
) -> None:
    caller = driver.caller(outage_auth(driver, server, fake_clock, max_wait_seconds=0))
    caller.get(server.resource_url)
    server.set_token_fault("503", retry_after=10)
    fake_clock.advance(LIFETIME)
    outcomes = caller.concurrently(8, "GET", server.resource_url)
    assert all(isinstance(o, TokenEndpointError) and o.status_code == 503 for o in outcomes)
    assert server.token_requests == 2  # 8 callers, one attempt
    server.clear_token_fault()
    fake_clock.advance(10)  # Retry-After: 10
    assert statuses(caller.concurrently(8, "GET", server.resource_url)) == [200] * 8
    assert server.token_requests == 3


def test_a_401_during_an_outage_waits_for_the_next_attempt_and_is_retried(
    driver: Driver, server: AuthServer, fake_clock: FakeClock
) -> None:
    caller = driver.caller(outage_auth(driver, server, fake_clock))
    caller.get(server.resource_url)
    server.revoke_all()  # the resource now rejects the current token...
    server.set_token_fault("500")  # ...and no new one can be had for now
    calls = caller.start(1, "GET", server.resource_url)
    park(fake_clock, 1)  # the replacement failed; the call waits for the next attempt
    assert server.token_requests == 2 and not calls.done()
    server.clear_token_fault()
    fake_clock.advance(1.0)  # the first backoff step (the refused token is not expired)
    [reply] = calls.join()
    assert isinstance(reply, Reply)
    assert reply.status_code == 200 and reply.history_codes == [401]
    assert server.token_requests == 3

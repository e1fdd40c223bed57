"""Stores never hand one user's token to another (issue 15, item 1).

Grants that act for a user (refresh token, authorization code, device code, token
exchange) share a store between two users, alice and bob, for MemoryStore, FileStore (a real
directory) and RedisStore (a real Redis), against the loopback server, whose resource answers
with the user a token belongs to. Either the default store key names the user, or the store
refuses a derived key and asks for ``store_key=``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from requests_tokenauth import (
    AuthorizationCode,
    ConfigurationError,
    DeviceCode,
    FileStore,
    Grant,
    MemoryStore,
    RedisStore,
    RefreshToken,
    TokenAuth,
    TokenExchange,
    TokenStore,
)
from requests_tokenauth._stores import store_key
from requests_tokenauth.testing import AuthServer, FakeClock

from .helpers import EXACT, EXPIRED_AFTER, LIFETIME, session_for

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
USERS = ("alice", "bob")


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    auth_server.token_lifetime_seconds = LIFETIME
    auth_server.add_client("gateway", "gateway-secret", grant_types=(TOKEN_EXCHANGE,))
    return auth_server


@pytest.fixture(params=["memory", "file", pytest.param("redis", marks=pytest.mark.redis)])
def store(
    request: pytest.FixtureRequest, tmp_path: Any, fake_clock: FakeClock
) -> Iterator[TokenStore]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "file":
        yield FileStore(tmp_path / "tokens")
    else:
        import redis

        client = redis.Redis.from_url(request.getfixturevalue("redis_url"), socket_timeout=5)
        prefix = f"tokenauth-test:{uuid.uuid4().hex}:"
        yield RedisStore(client, key_prefix=prefix, clock=fake_clock)
        keys = list(client.scan_iter(match=prefix + "*", count=100))
        if keys:
            client.delete(*keys)
        client.close()


def auth_for(grant: Grant, clock: FakeClock, store: TokenStore, **kwargs: Any) -> TokenAuth:
    return TokenAuth(
        grant,
        store=store,
        clock=clock,
        policy=EXACT,
        random=lambda: 0.5,
        refresh_ahead="inline",
        **kwargs,
    )


def user_token(server: AuthServer, clock: FakeClock, user: str) -> dict[str, Any]:
    """A token (with a refresh token) the server issued to ``user`` through client "app"."""
    token = server.issue_token("app", refresh=True, user=user)
    token["expires_at"] = clock.time() + token["expires_in"]
    return token


def refresh_token_grant(server: AuthServer, refresh_token: Any = None) -> RefreshToken:
    return RefreshToken(
        server.token_url, client_id="app", client_secret="app-secret", refresh_token=refresh_token
    )


def authorization_code_grant(server: AuthServer) -> AuthorizationCode:
    return AuthorizationCode(
        server.token_url,
        client_id="app",
        client_secret="app-secret",
        authorization_url=server.url + "/authorize",
        redirect_uri="http://127.0.0.1:9/callback",
    )


def device_code_grant(server: AuthServer) -> DeviceCode:
    return DeviceCode(
        server.token_url,
        client_id="app",
        client_secret="app-secret",
        device_authorization_url=server.url + "/device_authorization",
    )


def exchange_grant(server: AuthServer, subject_token: Any) -> TokenExchange:
    return TokenExchange(
        server.token_url,
        client_id="gateway",
        client_secret="gateway-secret",
        subject_token=subject_token,
        audience="orders",
    )


def user_seen(auth: TokenAuth, server: AuthServer) -> str:
    response = session_for(auth).get(server.resource_url)
    assert response.status_code == 200, response.text
    return str(response.json()["user"])


def each_user_gets_their_own(make: Callable[[str], TokenAuth], server: AuthServer) -> None:
    """Make each user's auth with ``make`` and check the resource sees that user."""
    for user in USERS:
        assert user_seen(make(user), server) == user


# -- the default key names the user -----------------------------------------------------------


def test_refresh_token_grants_of_two_users_keep_two_tokens(
    store: TokenStore, server: AuthServer, fake_clock: FakeClock
) -> None:
    """Each user's RefreshToken(refresh_token=...) is keyed by a digest of that token."""
    auths = {}
    for user in USERS:
        seed = user_token(server, fake_clock, user)
        grant = refresh_token_grant(server, seed["refresh_token"])
        auths[user] = auth_for(grant, fake_clock, store)
    for _ in range(2):  # a first token each, then one refresh each
        assert {user: user_seen(auths[user], server) for user in USERS} == {
            "alice": "alice",
            "bob": "bob",
        }
        fake_clock.advance(EXPIRED_AFTER)
    assert server.token_requests_by_grant == {"refresh_token": 4}
    keys = {store_key(auth.manager.grant) for auth in auths.values()}
    assert len(keys) == 2


def test_token_exchanges_for_two_subjects_keep_two_tokens(
    store: TokenStore, server: AuthServer, fake_clock: FakeClock
) -> None:
    subjects = {
        user: server.issue_token("app", user=user, lifetime_seconds=10 * LIFETIME) for user in USERS
    }
    auths = {
        user: auth_for(exchange_grant(server, subjects[user]["access_token"]), fake_clock, store)
        for user in USERS
    }
    assert {user: user_seen(auths[user], server) for user in USERS} == {
        "alice": "alice",
        "bob": "bob",
    }
    assert server.token_requests_by_grant == {TOKEN_EXCHANGE: 2}


def test_a_rotating_refresh_token_keeps_one_key(
    store: TokenStore, server: AuthServer, fake_clock: FakeClock
) -> None:
    """The key comes from the token the grant was made with, not the current one: after
    three rotations, a process configured with the same starting token (a restart, another
    worker) finds the newest token under the same key and spends no refresh token twice."""
    server.rotate_refresh_tokens = True
    seed = user_token(server, fake_clock, "alice")
    first = auth_for(refresh_token_grant(server, seed["refresh_token"]), fake_clock, store)
    key = store_key(first.manager.grant)
    for _ in range(3):
        assert user_seen(first, server) == "alice"
        fake_clock.advance(EXPIRED_AFTER)
    assert user_seen(first, server) == "alice"
    assert server.token_requests_by_grant == {"refresh_token": 4}
    assert first.token is not None and first.token.refresh_token != seed["refresh_token"]
    stored = store.load(key)
    assert stored is not None and stored["refresh_token"] == first.token.refresh_token
    later = auth_for(refresh_token_grant(server, seed["refresh_token"]), fake_clock, store)
    assert store_key(later.manager.grant) == key
    assert user_seen(later, server) == "alice"
    assert server.token_requests_by_grant == {"refresh_token": 4}  # taken from the store
    assert server.token_errors == {}


# -- grants that cannot name the user refuse a derived key ------------------------------------


UNNAMED: dict[str, Callable[[AuthServer], Grant]] = {
    "refresh_token_from_token": lambda server: refresh_token_grant(server),
    "authorization_code": authorization_code_grant,
    "device_code": device_code_grant,
}


@pytest.mark.parametrize("kind", sorted(UNNAMED))
def test_a_grant_that_cannot_name_the_user_needs_a_store_key(
    kind: str, store: TokenStore, server: AuthServer, fake_clock: FakeClock
) -> None:
    """With ``token=`` only, the grant does not know whose token it renews: the default
    key would be one key for every user (bob's requests went out with alice's token)."""
    tokens = {user: user_token(server, fake_clock, user) for user in USERS}

    def default_key(user: str) -> TokenAuth:
        return auth_for(UNNAMED[kind](server), fake_clock, store, token=tokens[user])

    def named_key(user: str) -> TokenAuth:
        return auth_for(
            UNNAMED[kind](server), fake_clock, store, token=tokens[user], store_key=f"app:{user}"
        )

    with pytest.raises(ConfigurationError, match="store_key="):
        each_user_gets_their_own(default_key, server)
    each_user_gets_their_own(named_key, server)  # named by the application
    assert server.token_requests == 0


def test_a_callable_subject_token_needs_a_store_key(
    store: TokenStore, server: AuthServer, fake_clock: FakeClock
) -> None:
    subjects = {
        user: server.issue_token("app", user=user, lifetime_seconds=10 * LIFETIME) for user in USERS
    }

    def make(user: str, **kwargs: Any) -> TokenAuth:
        grant = exchange_grant(server, lambda: subjects[user]["access_token"])
        return auth_for(grant, fake_clock, store, **kwargs)

    with pytest.raises(ConfigurationError, match="store_key="):
        each_user_gets_their_own(make, server)
    each_user_gets_their_own(lambda user: make(user, store_key=f"gw:{user}"), server)


def test_without_a_store_no_key_is_needed(server: AuthServer, fake_clock: FakeClock) -> None:
    token = user_token(server, fake_clock, "alice")
    auth = TokenAuth(authorization_code_grant(server), token=token, clock=fake_clock)
    assert user_seen(auth, server) == "alice"


def test_the_store_identity_never_holds_the_token(server: AuthServer) -> None:
    grant = refresh_token_grant(server, "rt-secret-value")
    identity = grant.store_identity()
    assert identity is not None and "rt-secret-value" not in identity
    exchange = exchange_grant(server, "subject-secret-value")
    identity = exchange.store_identity()
    assert identity is not None and "subject-secret-value" not in identity

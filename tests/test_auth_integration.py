"""TokenAuth against the real loopback authorization server: single flight at expiry,
rotation, revocation, the 401 retry and its guards, bodies, redirects. Exact counts."""

from __future__ import annotations

import hashlib
import io
import threading

import pytest
import requests

from requests_tokenauth import InvalidGrantError, RefreshToken, TokenAdapter, TokenAuth
from requests_tokenauth.testing import AuthServer

from .helpers import (
    EXACT,
    EXPIRED_AFTER,
    LIFETIME,
    count_lock,
    join_all,
    service_auth,
    session_for,
    start_threads,
)


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    auth_server.token_lifetime_seconds = LIFETIME
    return auth_server


def tokens_sent(server: AuthServer, path: str = "/resource") -> list[str | None]:
    return [s.authorization for s in server.seen if s.path == path]


def test_first_request_obtains_a_token_and_later_ones_reuse_it(server, fake_clock) -> None:
    session = session_for(service_auth(server, fake_clock))
    for _ in range(5):
        assert session.get(server.resource_url).json()["client_id"] == "svc"
    assert server.token_requests == 1
    assert len(set(tokens_sent(server))) == 1


def test_works_without_a_session(server, fake_clock) -> None:
    auth = service_auth(server, fake_clock)
    assert requests.get(server.resource_url, auth=auth).status_code == 200
    assert requests.post(server.resource_url, data=b"x", auth=auth).status_code == 200
    assert server.token_requests == 1


def test_64_threads_released_at_expiry_make_exactly_one_token_request(server, fake_clock) -> None:
    auth = service_auth(server, fake_clock)
    session = session_for(auth)
    session.get(server.resource_url)
    fake_clock.advance(EXPIRED_AFTER)
    lock = count_lock(auth)
    server.hold_token_endpoint()
    threads, results = start_threads(64, lambda i: session.get(server.resource_url))
    assert server.wait_for_token_requests(2)  # one thread is at the token endpoint...
    assert lock.wait_for_attempts(64)  # ...and all 64 have reached the lock
    server.release_token_endpoint()
    join_all(threads)
    assert server.token_requests == 2
    assert [r.status_code for r in results] == [200] * 64
    new_token = auth.token
    assert new_token is not None
    assert tokens_sent(server)[1:] == [new_token.authorization] * 64


def test_rotating_refresh_tokens_16_threads_over_3_expiries(server, fake_clock) -> None:
    server.rotate_refresh_tokens = True
    saved = server.issue_token("app", scopes=("read",), refresh=True, user="alice")
    persisted: list[dict] = []
    grant = RefreshToken(server.token_url, client_id="app", client_secret="app-secret")
    auth = TokenAuth(grant, token=saved, on_token=persisted.append, clock=fake_clock, policy=EXACT)
    session = session_for(auth)
    lock = count_lock(auth)
    for expiry in range(1, 4):
        fake_clock.advance(EXPIRED_AFTER)
        server.hold_token_endpoint()
        before = lock.attempts
        threads, results = start_threads(16, lambda i: session.get(server.resource_url))
        assert server.wait_for_token_requests(expiry)
        assert lock.wait_for_attempts(before + 16)
        server.release_token_endpoint()
        join_all(threads)
        assert [r.status_code for r in results] == [200] * 16
    assert server.token_requests_by_grant == {"refresh_token": 3}
    assert server.token_errors == {}
    assert len(persisted) == 3
    assert len({p["refresh_token"] for p in persisted}) == 3  # each rotation was saved
    assert persisted[-1]["refresh_token"] == auth.token.refresh_token


def test_token_revoked_server_side_is_replaced_and_the_call_succeeds(server, fake_clock) -> None:
    session = session_for(service_auth(server, fake_clock))
    session.get(server.resource_url)
    server.revoke_all()
    server.reset_counters()
    response = session.get(server.resource_url)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert server.resource_requests == 2
    assert server.token_requests == 1


def test_32_threads_hitting_one_revoked_token_make_one_token_request(server, fake_clock) -> None:
    auth = service_auth(server, fake_clock)
    session = session_for(auth)
    session.get(server.resource_url)
    server.revoke_all()
    server.reset_counters()
    lock = count_lock(auth)
    server.hold_token_endpoint()
    threads, results = start_threads(32, lambda i: session.get(server.resource_url))
    assert server.wait_for_token_requests(1)
    assert lock.wait_for_attempts(32)  # every thread got its 401 and asked for a replacement
    server.release_token_endpoint()
    join_all(threads)
    assert server.token_requests == 1
    assert [r.status_code for r in results] == [200] * 32
    assert server.resource_requests == 64


def test_resource_that_always_answers_401_never_causes_a_refresh_storm(server, fake_clock) -> None:
    auth = service_auth(server, fake_clock)
    session = session_for(auth)
    session.get(server.resource_url)
    server.always_401 = True
    server.reset_counters()

    def ten_calls(_: int) -> list[int]:
        sends = []
        for _ in range(10):
            r = session.get(server.resource_url)
            assert r.status_code == 401
            sends.append(1 + len(r.history))
        return sends

    threads, results = start_threads(8, ten_calls)
    join_all(threads)
    per_call = [n for sends in results for n in sends]
    assert len(per_call) == 80 and max(per_call) <= 2
    assert server.token_requests == 1  # one replacement; then the cooldown holds
    assert server.resource_requests == sum(per_call)


def test_cooldown_ends_and_a_later_401_may_replace_again(server, fake_clock) -> None:
    auth = service_auth(server, fake_clock)
    session = session_for(auth)
    session.get(server.resource_url)
    server.always_401 = True
    session.get(server.resource_url)
    session.get(server.resource_url)
    assert server.token_requests == 2
    fake_clock.advance(EXACT.unauthorized_cooldown_seconds)
    session.get(server.resource_url)
    assert server.token_requests == 3


@pytest.mark.parametrize("kind", ["bytes", "bytesio", "file"])
def test_replayable_bodies_are_resent_in_full(server, fake_clock, tmp_path, kind) -> None:
    payload = bytes(range(256)) * 64
    session = session_for(service_auth(server, fake_clock))
    session.get(server.resource_url)
    server.revoke_all()
    if kind == "bytes":
        body = payload
    elif kind == "bytesio":
        body = io.BytesIO(payload)
    else:
        path = tmp_path / "body.bin"
        path.write_bytes(payload)
        body = path.open("rb")
    try:
        response = session.post(server.resource_url, data=body)
    finally:
        if kind == "file":
            body.close()
    assert response.status_code == 200
    assert response.history[0].status_code == 401
    assert response.json()["body_length"] == len(payload)
    assert response.json()["body_sha256"] == hashlib.sha256(payload).hexdigest()
    assert [s.body_length for s in server.seen if s.method == "POST" and s.path == "/resource"] == [
        len(payload)
    ] * 2


def test_generator_body_is_not_resent_and_the_401_is_returned(server, fake_clock) -> None:
    session = session_for(service_auth(server, fake_clock))
    session.get(server.resource_url)
    server.revoke_all()
    server.reset_counters()
    response = session.post(server.resource_url, data=(b"chunk" for _ in range(3)))
    assert response.status_code == 401
    assert response.history == []
    assert server.resource_requests == 1
    assert server.token_requests == 1  # the token is replaced for the next request (issue 12)
    again = session.post(server.resource_url, data=(b"chunk" for _ in range(3)))
    assert again.status_code == 200
    assert server.token_requests == 1
    assert [s.body_length for s in server.seen if s.method == "POST" and s.path == "/resource"] == [
        15,
        15,
    ]


def test_insufficient_scope_is_not_retried(server, fake_clock) -> None:
    server.insufficient_scope_status = 401
    session = session_for(service_auth(server, fake_clock))
    response = session.get(server.url + "/resource/scope/admin")
    assert response.status_code == 401
    assert response.history == []
    assert server.token_requests == 1


def test_a_401_to_a_request_that_carried_no_token_is_not_retried(server, fake_clock) -> None:
    # the redirect target is another origin: requests strips the token, so its 401 is not ours
    other = AuthServer(clock=fake_clock).start()
    try:
        other.always_401 = True
        session = session_for(service_auth(server, fake_clock))
        r = session.get(server.url + "/redirect", params={"to": other.resource_url})
        assert r.status_code == 401
        assert other.resource_requests == 1
        assert tokens_sent(other) == [None]
        assert server.token_requests == 1
    finally:
        other.close()


def test_redirects_keep_the_token_on_the_same_origin_only(
    server, fake_clock, auth_server_factory
) -> None:
    other = auth_server_factory(clock=fake_clock)
    auth = service_auth(server, fake_clock)
    session = session_for(auth)
    same = session.get(server.url + "/redirect", params={"to": server.resource_url})
    assert same.status_code == 200
    away = session.get(server.url + "/redirect", params={"to": other.resource_url})
    assert away.status_code == 401  # the other origin got no token
    assert tokens_sent(other) == [None]
    assert tokens_sent(server) == [auth.token.authorization]
    assert [s.authorization for s in server.seen if s.path.startswith("/redirect")] == [
        auth.token.authorization
    ] * 2


def test_adapter_mounted_on_a_bare_scheme_sends_the_token_to_its_origin_only(
    server, fake_clock, auth_server_factory
) -> None:
    other = auth_server_factory(clock=fake_clock)
    auth = service_auth(server, fake_clock)
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", TokenAdapter(auth))  # pinned to the first origin it sends to
    assert session.get(server.resource_url).status_code == 200
    r = session.get(server.url + "/redirect", params={"to": other.resource_url})
    assert r.status_code == 401
    assert tokens_sent(other) == [None]
    assert session.get(other.resource_url).status_code == 401  # direct call: still no token
    assert tokens_sent(other) == [None, None]


def test_adapter_with_explicit_origins_and_the_401_retry(
    server, fake_clock, auth_server_factory
) -> None:
    other = auth_server_factory(clock=fake_clock)
    auth = service_auth(server, fake_clock)
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", TokenAdapter(auth, origins=[server.url]))
    assert session.get(other.resource_url).status_code == 401
    assert tokens_sent(other) == [None]
    assert session.get(server.resource_url).status_code == 200
    server.revoke_all()
    server.reset_counters()
    payload = io.BytesIO(b"z" * 1000)
    r = session.post(server.resource_url, data=payload)
    assert r.status_code == 200
    assert r.json()["body_length"] == 1000
    assert [h.status_code for h in r.history] == [401]
    assert server.token_requests == 1 and server.resource_requests == 2


def test_dead_refresh_token_raises_a_terminal_error(server, fake_clock) -> None:
    saved = server.issue_token("app", scopes=("read",), refresh=True, user="alice")
    server.rotate_refresh_tokens = True
    grant = RefreshToken(server.token_url, client_id="app", client_secret="app-secret")
    auth = TokenAuth(
        grant, token={**saved, "refresh_token": "not-a-real-one"}, clock=fake_clock, policy=EXACT
    )
    session = session_for(auth)
    assert session.get(server.resource_url).status_code == 200
    fake_clock.advance(LIFETIME)  # nominally expired (inside the skew it would still be used)
    with pytest.raises(InvalidGrantError) as info:
        session.get(server.resource_url)
    assert info.value.error == "invalid_grant"
    assert server.token_requests == 1
    assert isinstance(info.value, requests.exceptions.RequestException)


def test_request_prepared_on_one_thread_and_sent_on_another(server, fake_clock) -> None:
    auth = service_auth(server, fake_clock)
    session = session_for(auth)
    session.get(server.resource_url)
    server.revoke_all()
    prepared = session.prepare_request(requests.Request("GET", server.resource_url))
    out: list[requests.Response] = []
    t = threading.Thread(target=lambda: out.append(session.send(prepared)))
    t.start()
    join_all([t])
    assert out[0].status_code == 200 and len(out[0].history) == 1

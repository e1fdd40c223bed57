"""DPoP (RFC 9449) against the testing server, which checks proofs for real: bound tokens,
a fresh proof per request, what the server refuses, and the use_dpop_nonce flow on the
token endpoint and on resources, within the one-retry budget."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
from typing import Any

import pytest
import requests

pytest.importorskip("cryptography")

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from requests_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    DPoPKey,
    TokenAdapter,
    TokenAuth,
    TokenEndpointError,
    UnsupportedTokenTypeError,
)
from requests_tokenauth._dpop import htu
from requests_tokenauth.testing import AuthServer, FakeClock

from .helpers import EXACT, LIFETIME, join_all, start_threads


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    auth_server.token_lifetime_seconds = LIFETIME
    return auth_server


@pytest.fixture
def key() -> DPoPKey:
    return DPoPKey.generate()


def dpop_auth(server: AuthServer, clock: FakeClock, key: DPoPKey, **kwargs: Any) -> TokenAuth:
    grant = ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")
    return TokenAuth(grant, clock=clock, policy=EXACT, random=lambda: 0.5, dpop=key, **kwargs)


def session_for(auth: TokenAuth, mode: str = "auth") -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    if mode == "auth":
        session.auth = auth
    else:
        session.mount("http://", TokenAdapter(auth))
    return session


def decode(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, claims, _ = proof.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(head))),
        json.loads(base64.urlsafe_b64decode(pad(claims))),
    )


def ath(token: str) -> str:
    digest = hashlib.sha256(token.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


MODES = ["auth", "adapter"]


# -- the happy path ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_tokens_are_bound_and_every_request_carries_a_fresh_proof(
    server, fake_clock, key, mode
) -> None:
    auth = dpop_auth(server, fake_clock, key)
    session = session_for(auth, mode)
    responses = [session.get(server.resource_url) for _ in range(3)]
    assert [r.status_code for r in responses] == [200] * 3
    token = auth.token
    assert token is not None and token.token_type == "DPoP"
    assert server.dpop.bound_key(token.access_token) == key.thumbprint
    assert {s.authorization for s in server.seen if s.path == "/resource"} == {
        f"DPoP {token.access_token}"
    }
    proofs = [r.request.headers["DPoP"] for r in responses]
    assert len({decode(p)[1]["jti"] for p in proofs}) == 3
    assert server.dpop.accepted == 4  # one token request, three resource requests
    assert server.dpop.rejections == {}
    assert server.token_requests == 1


def test_proof_claims(server, fake_clock, key) -> None:
    auth = dpop_auth(server, fake_clock, key)
    r = session_for(auth).post(server.resource_url + "/x?page=2#frag", data=b"body")
    assert r.status_code == 200
    header, claims = decode(r.request.headers["DPoP"])
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256"
    assert header["jwk"] == key.public_jwk and "d" not in header["jwk"]
    assert claims["htm"] == "POST"
    assert claims["htu"] == server.resource_url + "/x"  # no query, no fragment
    assert claims["iat"] == int(fake_clock.time())
    assert claims["ath"] == ath(auth.token.access_token)
    assert "nonce" not in claims


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://API.example.com:443/a/b?q=1#f", "https://api.example.com/a/b"),
        ("http://u:p@127.0.0.1:8080", "http://127.0.0.1:8080/"),
        ("https://[::1]:8443/x", "https://[::1]:8443/x"),
    ],
)
def test_htu_drops_query_fragment_userinfo_and_default_port(url, expected) -> None:
    assert htu(url) == expected


def test_sixteen_threads_each_send_their_own_proof(server, fake_clock, key) -> None:
    auth = dpop_auth(server, fake_clock, key)
    session = session_for(auth)
    session.get(server.resource_url)
    threads, results = start_threads(16, lambda i: session.get(server.resource_url).status_code)
    join_all(threads)
    assert results == [200] * 16
    assert server.dpop.rejections == {}  # no proof was reused across threads
    assert server.dpop.accepted == 18 and server.token_requests == 1


# -- what the server refuses ---------------------------------------------------------------


@pytest.fixture
def bound(server, fake_clock, key) -> str:
    """An access token bound to ``key``, obtained through TokenAuth."""
    auth = dpop_auth(server, fake_clock, key)
    session_for(auth).get(server.resource_url)
    assert auth.token is not None
    return auth.token.access_token


def raw(method: str, url: str, token: str, proof: str) -> requests.Response:
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    return requests.request(method, url, headers=headers, timeout=10)


def test_server_rejects_a_replayed_proof(server, fake_clock, key, bound) -> None:
    proof = key.proof("GET", server.resource_url, issued_at=fake_clock.time(), access_token=bound)
    assert raw("GET", server.resource_url, bound, proof).status_code == 200
    replay = raw("GET", server.resource_url, bound, proof)
    assert replay.status_code == 401
    assert 'error="invalid_dpop_proof"' in replay.headers["WWW-Authenticate"]
    assert server.dpop.rejections == {"replay": 1}


def test_server_rejects_a_proof_for_another_url(server, fake_clock, key, bound) -> None:
    proof = key.proof(
        "GET", server.url + "/resource/a", issued_at=fake_clock.time(), access_token=bound
    )
    assert raw("GET", server.url + "/resource/b", bound, proof).status_code == 401
    assert server.dpop.rejections == {"htu": 1}
    # the query string is not part of htu: the same proof passes for /resource/a?x=1
    assert raw("GET", server.url + "/resource/a?x=1", bound, proof).status_code == 200


def test_server_rejects_a_proof_for_another_method(server, fake_clock, key, bound) -> None:
    proof = key.proof("GET", server.resource_url, issued_at=fake_clock.time(), access_token=bound)
    assert raw("POST", server.resource_url, bound, proof).status_code == 401
    assert server.dpop.rejections == {"htm": 1}


def test_server_rejects_a_wrong_ath(server, fake_clock, key, bound) -> None:
    proof = key.proof(
        "GET", server.resource_url, issued_at=fake_clock.time(), access_token=bound + "x"
    )
    assert raw("GET", server.resource_url, bound, proof).status_code == 401
    assert server.dpop.rejections == {"ath": 1}
    no_ath = key.proof("GET", server.resource_url, issued_at=fake_clock.time())
    assert raw("GET", server.resource_url, bound, no_ath).status_code == 401
    assert server.dpop.rejections == {"ath": 2}


def test_server_rejects_another_key_a_stale_proof_a_bad_signature_and_bearer_use(
    server, fake_clock, key, bound
) -> None:
    now = fake_clock.time()
    thief = DPoPKey.generate()
    stolen = thief.proof("GET", server.resource_url, issued_at=now, access_token=bound)
    assert raw("GET", server.resource_url, bound, stolen).status_code == 401
    stale = key.proof("GET", server.resource_url, issued_at=now - 600, access_token=bound)
    assert raw("GET", server.resource_url, bound, stale).status_code == 401
    good = key.proof("GET", server.resource_url, issued_at=now, access_token=bound)
    head, _, sig = good.split(".")
    forged_claims = base64.urlsafe_b64encode(
        json.dumps({**decode(good)[1], "htm": "DELETE"}).encode()
    ).rstrip(b"=")
    forged = f"{head}.{forged_claims.decode()}.{sig}"
    assert raw("DELETE", server.resource_url, bound, forged).status_code == 401
    as_bearer = requests.get(
        server.resource_url, headers={"Authorization": f"Bearer {bound}"}, timeout=10
    )
    assert as_bearer.status_code == 401
    assert server.dpop.rejections == {"jkt": 1, "iat": 1, "signature": 1, "bearer": 1}


def test_token_endpoint_rejects_a_replayed_proof(server, fake_clock, key) -> None:
    proof = key.proof("POST", server.token_url, issued_at=fake_clock.time())

    def token_request() -> requests.Response:
        return requests.post(
            server.token_url,
            data={"grant_type": "client_credentials"},
            auth=("svc", "svc-secret"),
            headers={"DPoP": proof},
            timeout=10,
        )

    first = token_request()
    assert first.status_code == 200 and first.json()["token_type"] == "DPoP"
    again = token_request()
    assert again.status_code == 400 and again.json()["error"] == "invalid_dpop_proof"
    assert server.token_errors == {"invalid_dpop_proof": 1}


# -- nonces -------------------------------------------------------------------------------


def test_token_endpoint_nonce_challenge_costs_exactly_one_retry(server, fake_clock, key) -> None:
    server.require_dpop_nonce = True
    auth = dpop_auth(server, fake_clock, key)
    assert session_for(auth).get(server.resource_url).status_code == 200
    assert server.token_requests == 2
    assert server.token_errors == {"use_dpop_nonce": 1}
    assert server.dpop.rejections == {"nonce": 1}


def test_token_endpoint_that_keeps_asking_for_a_nonce_fails_after_one_retry(
    server, fake_clock, key
) -> None:
    server.require_dpop_nonce = True
    auth = dpop_auth(server, fake_clock, key, max_wait_seconds=0)
    original = server.dpop.verify

    def rotate_then_verify(*args: Any, **kwargs: Any) -> str:
        server.dpop.rotate_nonce()  # every proof now carries a stale nonce
        return original(*args, **kwargs)

    server.dpop.verify = rotate_then_verify  # type: ignore[method-assign]
    with pytest.raises(TokenEndpointError) as info:
        auth.get_token()
    assert info.value.error == "use_dpop_nonce" and info.value.retryable
    assert server.token_requests == 2


@pytest.mark.parametrize("mode", MODES)
def test_resource_nonce_challenge_is_one_retry_with_the_same_token(
    server, fake_clock, key, mode
) -> None:
    server.require_dpop_nonce = True
    auth = dpop_auth(server, fake_clock, key)
    session = session_for(auth, mode)
    assert session.get(server.resource_url).status_code == 200
    token = auth.token
    server.dpop.rotate_nonce()
    server.reset_counters()
    r = session.post(server.resource_url, data=b"payload")
    assert r.status_code == 200 and r.json()["body_length"] == 7
    assert [h.status_code for h in r.history] == [401]
    assert r.history[0].headers["DPoP-Nonce"] == server.dpop.nonce
    assert decode(r.request.headers["DPoP"])[1]["nonce"] == server.dpop.nonce
    assert auth.token is token  # no new token: only a new proof
    assert server.token_requests == 0 and server.resource_requests == 2


@pytest.mark.parametrize("mode", MODES)
def test_nonce_retry_uses_the_one_retry_budget(server, fake_clock, key, mode) -> None:
    server.require_dpop_nonce = True
    auth = dpop_auth(server, fake_clock, key)
    session = session_for(auth, mode)
    session.get(server.resource_url)
    server.dpop.rotate_nonce()
    server.revoke_all()
    server.reset_counters()
    r = session.get(server.resource_url)
    # nonce challenge -> one retry with a fresh proof -> 401 invalid_token: no second retry
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert server.resource_requests == 2 and server.token_requests == 0


def test_nonce_is_remembered_per_origin(server, other_server, fake_clock, key) -> None:
    server.require_dpop_nonce = other_server.require_dpop_nonce = True
    auth = dpop_auth(server, fake_clock, key)
    session = session_for(auth)
    session.get(server.resource_url)
    sent = session.get(server.resource_url).request.headers["DPoP"]
    assert decode(sent)[1]["nonce"] == server.dpop.nonce
    other_server.clear_seen()
    session.get(other_server.resource_url)  # a different origin: its own nonce, one retry
    assert server.dpop.nonce != other_server.dpop.nonce
    later = session.get(server.resource_url)
    assert later.history == [] and decode(later.request.headers["DPoP"])[1]["nonce"] == (
        server.dpop.nonce
    )


@pytest.fixture
def other_server(auth_server_factory, fake_clock) -> AuthServer:
    return auth_server_factory(clock=fake_clock)


# -- redirects ------------------------------------------------------------------------------


def test_same_origin_redirect_under_token_auth_gets_a_fresh_proof(server, fake_clock, key) -> None:
    auth = dpop_auth(server, fake_clock, key)
    session = session_for(auth)
    session.get(server.resource_url)
    server.reset_counters()
    r = session.get(server.url + "/redirect", params={"to": server.resource_url + "/next"})
    assert r.status_code == 200
    assert server.token_requests == 0
    assert decode(r.request.headers["DPoP"])[1]["htu"] == server.resource_url + "/next"
    # the old proof was not forwarded: the hop arrived without one, then got one retry
    assert server.dpop.rejections == {"missing": 1}


def test_same_origin_redirect_through_the_adapter_is_stamped_per_hop(
    server, fake_clock, key
) -> None:
    auth = dpop_auth(server, fake_clock, key)
    session = session_for(auth, "adapter")
    r = session.get(server.url + "/redirect", params={"to": server.resource_url})
    assert r.status_code == 200 and [h.status_code for h in r.history] == [302]
    assert server.dpop.rejections == {}


@pytest.mark.parametrize("mode", MODES)
def test_cross_origin_redirect_carries_neither_token_nor_proof(
    server, other_server, fake_clock, key, mode
) -> None:
    auth = dpop_auth(server, fake_clock, key)
    r = session_for(auth, mode).get(
        server.url + "/redirect", params={"to": other_server.resource_url}
    )
    assert r.status_code == 401
    assert "Authorization" not in r.request.headers and "DPoP" not in r.request.headers
    assert [s.authorization for s in other_server.seen] == [None]


# -- the key and the token type ----------------------------------------------------------


def test_key_repr_pickle_and_pem(key) -> None:
    assert repr(key) == f"DPoPKey(thumbprint={key.thumbprint!r})"
    again = pickle.loads(pickle.dumps(key))
    assert again.thumbprint == key.thumbprint and again.public_jwk == key.public_jwk
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    loaded = DPoPKey.from_pem(pem, b"pw")
    assert loaded.public_jwk == DPoPKey(private).public_jwk
    with pytest.raises(ConfigurationError, match="P-256"):
        DPoPKey(ec.generate_private_key(ec.SECP384R1()))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="PEM"):
        DPoPKey.from_pem(b"not a key")


def test_one_grant_cannot_serve_two_keys(server, fake_clock, key) -> None:
    grant = ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")
    TokenAuth(grant, clock=fake_clock, dpop=key)
    with pytest.raises(ConfigurationError, match="another key"):
        TokenAuth(grant, clock=fake_clock, dpop=DPoPKey.generate())


def test_a_dpop_token_without_dpop_configured_is_refused(server, fake_clock) -> None:
    grant = ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")
    response = requests.Response()
    response.status_code = 200
    response._content = json.dumps(
        {"access_token": "abc", "token_type": "DPoP", "expires_in": 60}
    ).encode()
    with pytest.raises(UnsupportedTokenTypeError, match="only Bearer"):
        grant._parse(response, fake_clock, 0.0, 0.0, "client_credentials", None)
    TokenAuth(grant, clock=fake_clock, dpop=DPoPKey.generate())  # turns DPoP on for the grant
    token = grant._parse(response, fake_clock, 0.0, 0.0, "client_credentials", None)
    assert token.authorization == "DPoP abc"

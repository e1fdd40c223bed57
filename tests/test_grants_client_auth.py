"""Client authentication details: RFC 6749 §2.3.1 encoding, JWT client assertions (fresh
jti, short exp, replay refused by the server), mutual TLS request building, the optional
PyJWT extra, and that no key or secret shows in a repr or a message."""

from __future__ import annotations

import pickle
import subprocess
import sys
import urllib.parse
from typing import Any

import pytest
import requests

from requests_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    InvalidGrantError,
    JWTBearer,
    Password,
    TokenAuth,
)
from requests_tokenauth._grants import basic_credentials
from requests_tokenauth._grants._client_auth import CLIENT_ASSERTION_TYPE, ClientAssertion
from requests_tokenauth.testing import AuthServer, FakeClock

SECRET = "assertion-secret-0123456789-abcdefghijkl"

ODD_ID = "client:1%+ü/é"
ODD_SECRET = "pa:ss%20w+rd ñ€"


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_odd_characters_in_client_credentials(
    auth_server: AuthServer, fake_clock: FakeClock, auth_method: str
) -> None:
    auth_server.add_client(ODD_ID, ODD_SECRET, grant_types=("client_credentials",))
    grant = ClientCredentials(
        auth_server.token_url, client_id=ODD_ID, client_secret=ODD_SECRET, auth_method=auth_method
    )
    auth = TokenAuth(grant, clock=fake_clock)
    assert (
        requests.get(auth_server.resource_url, auth=auth, timeout=10).json()["client_id"] == ODD_ID
    )
    assert auth_server.token_requests == 1 and auth_server.token_errors == {}


def test_basic_credentials_are_form_encoded_before_base64() -> None:
    header = basic_credentials(ODD_ID, ODD_SECRET)
    import base64

    decoded = base64.b64decode(header.removeprefix("Basic ")).decode("ascii")
    assert decoded == "client%3A1%25%2B%C3%BC%2F%C3%A9:pa%3Ass%2520w%2Brd+%C3%B1%E2%82%AC"


def test_a_wrong_odd_secret_is_refused(auth_server: AuthServer, fake_clock: FakeClock) -> None:
    auth_server.add_client(ODD_ID, ODD_SECRET, grant_types=("client_credentials",))
    grant = ClientCredentials(
        auth_server.token_url, client_id=ODD_ID, client_secret=ODD_SECRET[:-1]
    )
    with pytest.raises(InvalidGrantError) as caught:
        TokenAuth(grant, clock=fake_clock).get_token()
    assert caught.value.error == "invalid_client"


# -- JWT client assertions ------------------------------------------------------------------


def claims_of(fields: list[tuple[str, str]], key: Any, algorithm: str) -> dict[str, Any]:
    import jwt

    values = dict(fields)
    assert values["client_assertion_type"] == CLIENT_ASSERTION_TYPE
    return dict(
        jwt.decode(
            values["client_assertion"],
            key,
            algorithms=[algorithm],
            audience="https://idp.example/token",
            options={"verify_exp": False, "verify_iat": False},
        )
    )


def test_client_secret_jwt_assertions_are_fresh_and_short_lived() -> None:
    pytest.importorskip("jwt")
    clock = FakeClock()
    signer = ClientAssertion("c1", SECRET, hmac=True, key_id="k1")
    first = claims_of(signer.fields("https://idp.example/token", clock), SECRET, "HS256")
    clock.advance(1)
    second = claims_of(signer.fields("https://idp.example/token", clock), SECRET, "HS256")
    assert first["iss"] == first["sub"] == "c1"
    assert first["iat"] == int(clock.time()) - 1 and first["exp"] - first["iat"] == 60
    assert first["jti"] != second["jti"]
    assert SECRET not in repr(signer)


def test_private_key_jwt_infers_the_algorithm(auth_server: AuthServer) -> None:
    pytest.importorskip("jwt")
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    for algorithm in ("RS256", "ES256"):
        pem = auth_server.private_key_pem(algorithm)
        signer = ClientAssertion("c1", pem, hmac=False)
        assert signer.algorithm == algorithm
        public = load_pem_private_key(pem.encode(), None).public_key()
        claims = claims_of(
            signer.fields("https://idp.example/token", FakeClock()), public, algorithm
        )
        assert claims["sub"] == "c1"


def test_a_replayed_client_assertion_is_refused(auth_server: AuthServer) -> None:
    pytest.importorskip("jwt")
    auth_server.add_client("c1", SECRET, grant_types=("client_credentials",))
    fields = ClientAssertion("c1", SECRET, hmac=True).fields(
        auth_server.token_url, auth_server.clock
    )
    body = {"grant_type": "client_credentials", "client_id": "c1", **dict(fields)}
    first = requests.post(auth_server.token_url, data=body, timeout=10)
    again = requests.post(auth_server.token_url, data=body, timeout=10)
    assert first.status_code == 200
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"


def test_an_expired_client_assertion_is_refused(auth_server: AuthServer, fake_clock) -> None:
    pytest.importorskip("jwt")
    auth_server.add_client("c1", SECRET, grant_types=("client_credentials",))
    fields = ClientAssertion("c1", SECRET, hmac=True).fields(auth_server.token_url, fake_clock)
    fake_clock.advance(61)
    body = {"grant_type": "client_credentials", **dict(fields)}
    assert requests.post(auth_server.token_url, data=body, timeout=10).status_code == 401


def test_jwt_client_auth_arguments_are_checked() -> None:
    pytest.importorskip("jwt")
    url = "https://idp.example/token"
    with pytest.raises(ConfigurationError, match="client_key"):
        ClientCredentials(url, client_id="c", auth_method="private_key_jwt")
    with pytest.raises(ConfigurationError, match="client_secret"):
        ClientCredentials(url, client_id="c", auth_method="client_secret_jwt")
    with pytest.raises(ConfigurationError, match="HS256"):
        ClientCredentials(
            url,
            client_id="c",
            client_secret=SECRET,
            auth_method="client_secret_jwt",
            client_assertion_algorithm="RS256",
        )
    with pytest.raises(ConfigurationError, match="PEM") as caught:
        ClientCredentials(url, client_id="c", auth_method="private_key_jwt", client_key="not-a-key")
    assert "not-a-key" not in str(caught.value)


def test_jwt_grants_hide_their_keys_and_pickle(auth_server: AuthServer) -> None:
    pytest.importorskip("jwt")
    pem = auth_server.private_key_pem()
    grant = JWTBearer(
        auth_server.token_url,
        client_id="robot",
        client_key=pem,
        auth_method="private_key_jwt",
        issuer="robot",
        subject="robot",
        key=pem,
    )
    assert "PRIVATE" not in repr(grant)
    copy = pickle.loads(pickle.dumps(grant))
    assert copy.assertion(FakeClock()).count(".") == 2


# -- the JWT bearer grant, refused ----------------------------------------------------------


@pytest.mark.parametrize("problem", ["audience", "key"])
def test_a_bad_jwt_bearer_assertion_is_refused(
    auth_server: AuthServer, fake_clock: FakeClock, problem: str
) -> None:
    pytest.importorskip("jwt")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    stranger = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    auth_server.add_client(
        "robot", None, grant_types=("urn:ietf:params:oauth:grant-type:jwt-bearer",)
    )
    grant = JWTBearer(
        auth_server.token_url,
        client_id="robot",
        issuer="robot",
        subject="robot",
        key=stranger if problem == "key" else auth_server.private_key_pem("ES256"),
        audience="https://elsewhere.example" if problem == "audience" else None,
    )
    with pytest.raises(InvalidGrantError) as caught:
        TokenAuth(grant, clock=fake_clock).get_token()
    assert caught.value.error == "invalid_grant"


# -- mutual TLS (RFC 8705) ------------------------------------------------------------------


def test_tls_client_auth_needs_a_session_with_a_certificate() -> None:
    with pytest.raises(ConfigurationError, match="cert"):
        ClientCredentials("https://idp.example/token", client_id="c", auth_method="tls_client_auth")
    with pytest.raises(ConfigurationError, match="cert"):
        ClientCredentials(
            "https://idp.example/token",
            client_id="c",
            auth_method="tls_client_auth",
            session=requests.Session(),
        )


def test_tls_client_auth_sends_the_client_id_and_uses_the_session(
    auth_server: AuthServer, fake_clock: FakeClock, tmp_path
) -> None:
    """No TLS server here: this checks the request the grant builds (client_id in the body,
    no secret, no Authorization header) and that it goes through the session whose
    certificate a TLS server would ask for."""
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("certificate")
    key.write_text("key")
    session = requests.Session()
    session.trust_env = False
    session.cert = (str(cert), str(key))
    sent: list[requests.PreparedRequest] = []
    session.hooks["response"].append(lambda r, **kw: sent.append(r.request))
    auth_server.add_client("device-42", None, grant_types=("password",))
    grant = Password(
        auth_server.token_url,
        client_id="device-42",
        auth_method="tls_client_auth",
        session=session,
        username="alice",
        password="wonderland",
    )
    assert TokenAuth(grant, clock=fake_clock).get_token().access_token
    assert len(sent) == 1 and "Authorization" not in sent[0].headers
    body = dict(urllib.parse.parse_qsl(sent[0].body.decode()))  # type: ignore[union-attr]
    assert body["client_id"] == "device-42" and "client_secret" not in body


# -- the optional extra ---------------------------------------------------------------------


def test_without_pyjwt_a_clear_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jwt", None)  # import jwt now raises ImportError
    with pytest.raises(ConfigurationError, match=r'pip install "requests-tokenauth\[jwt\]"'):
        ClientCredentials(
            "https://idp.example/token",
            client_id="c",
            client_secret=SECRET,
            auth_method="client_secret_jwt",
        )
    with pytest.raises(ConfigurationError, match=r"requests-tokenauth\[jwt\]"):
        JWTBearer("https://idp.example/token", client_id="c", issuer="i", subject="s", key="k")


def test_the_package_imports_without_pyjwt() -> None:
    code = (
        "import sys; sys.modules['jwt'] = None\n"
        "import requests_tokenauth as t\n"
        "g = t.Password('https://idp.example/token', client_id='c', client_secret='s',"
        " username='u', password='p')\n"
        "print(type(g).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "Password"

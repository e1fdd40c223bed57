"""JWT client assertions name the endpoint they are sent to as ``aud`` (the testing server,
by default, accepts only that), and a key that cannot sign with the algorithm is refused at
construction, before any request."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
import requests

pytest.importorskip("jwt")
pytest.importorskip("cryptography")

import jwt

from requests_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    DeviceAuthorization,
    DeviceCode,
    JWTBearer,
    TokenAuth,
)
from requests_tokenauth.testing import AuthServer, FakeClock

from .helpers import EXACT

SECRET = "assertion-secret-0123456789-abcdefghijkl"


class Recorder:
    """A session whose response hook keeps the client assertion of every request it sends,
    by path."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.hooks["response"].append(self._keep)
        self.assertions: list[tuple[str, str]] = []

    def _keep(self, response: requests.Response, **kwargs: Any) -> None:
        body = response.request.body or b""
        text = body.decode() if isinstance(body, bytes) else str(body)
        fields = dict(urllib.parse.parse_qsl(text))
        if "client_assertion" in fields:
            path = urllib.parse.urlsplit(response.request.url).path
            self.assertions.append((path, fields["client_assertion"]))

    def audiences(self) -> list[tuple[str, Any]]:
        return [
            (path, jwt.decode(a, options={"verify_signature": False})["aud"])
            for path, a in self.assertions
        ]


def assertion_kwargs(server: AuthServer, method: str) -> dict[str, Any]:
    if method == "private_key_jwt":
        return {"auth_method": method, "client_key": server.private_key_pem("ES256")}
    return {"auth_method": method, "client_secret": SECRET}


@pytest.mark.parametrize("method", ["private_key_jwt", "client_secret_jwt"])
def test_revocation_assertion_names_the_revocation_endpoint(
    auth_server: AuthServer, fake_clock: FakeClock, method: str
) -> None:
    auth_server.add_client("jwt-client", SECRET, grant_types=("client_credentials",))
    recorder = Recorder()
    grant = ClientCredentials(
        auth_server.token_url,
        client_id="jwt-client",
        revocation_url=auth_server.url + "/revoke",
        session=recorder.session,
        **assertion_kwargs(auth_server, method),
    )
    auth = TokenAuth(grant, clock=fake_clock, policy=EXACT)
    auth.get_token()
    assert auth.revoke()  # the server (strict_assertion_audience) accepted its assertion
    assert recorder.audiences() == [
        ("/token", auth_server.token_url),
        ("/revoke", auth_server.url + "/revoke"),
    ]
    assert auth_server.revocation_requests == 1


def test_device_authorization_assertion_names_the_device_endpoint(
    auth_server: AuthServer, fake_clock: FakeClock
) -> None:
    recorder = Recorder()

    def approve(authorization: DeviceAuthorization) -> None:
        auth_server.approve_device(authorization.user_code, "alice")

    grant = DeviceCode(
        auth_server.token_url,
        client_id="device",
        device_authorization_url=auth_server.url + "/device_authorization",
        on_user_code=approve,
        sleep=fake_clock.advance,
        session=recorder.session,
        **assertion_kwargs(auth_server, "private_key_jwt"),
    )
    TokenAuth(grant, clock=fake_clock, policy=EXACT).get_token()
    assert recorder.audiences() == [
        ("/device_authorization", auth_server.url + "/device_authorization"),
        ("/token", auth_server.token_url),
    ]


def test_the_strict_server_refuses_an_assertion_meant_for_another_endpoint(
    auth_server: AuthServer,
) -> None:
    """The server side of the rule: an assertion whose ``aud`` is the token endpoint is
    refused at the revocation endpoint, unless the knob is off."""
    import secrets

    auth_server.add_client("jwt-client", SECRET, grant_types=("client_credentials",))

    def assertion(audience: str) -> str:
        now = int(auth_server.clock.time())
        claims = {
            "iss": "jwt-client",
            "sub": "jwt-client",
            "aud": audience,
            "jti": secrets.token_urlsafe(8),
            "iat": now,
            "exp": now + 60,
        }
        return str(jwt.encode(claims, SECRET, algorithm="HS256"))

    def revoke(audience: str) -> int:
        data = {
            "token": "unknown",
            "client_id": "jwt-client",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion(audience),
        }
        return requests.post(auth_server.url + "/revoke", data=data, timeout=10).status_code

    assert revoke(auth_server.token_url) == 401
    assert revoke(auth_server.url + "/revoke") == 200
    auth_server.strict_assertion_audience = False
    assert revoke(auth_server.token_url) == 200


# -- a key that cannot sign is refused at construction ---------------------------------------


@pytest.mark.parametrize(
    ("key_algorithm", "algorithm"),
    [
        ("RS256", "ES256"),  # an RSA key for ECDSA
        ("ES256", "RS256"),  # an EC key for RSA
        ("ES256", "ES384"),  # the wrong curve
        ("RS256", "none"),  # unsigned
        ("RS256", "NONE"),
        ("RS256", "XY999"),
    ],
)
def test_private_key_jwt_with_a_key_that_does_not_fit_is_a_configuration_error(
    auth_server: AuthServer, key_algorithm: str, algorithm: str
) -> None:
    pem = auth_server.private_key_pem(key_algorithm)
    with pytest.raises(ConfigurationError) as caught:
        ClientCredentials(
            auth_server.token_url,
            client_id="svc",
            auth_method="private_key_jwt",
            client_key=pem,
            client_assertion_algorithm=algorithm,
        )
    assert "PRIVATE KEY" not in str(caught.value)
    assert auth_server.token_requests == 0


@pytest.mark.parametrize("algorithm", ["none", "ES256"])
def test_jwt_bearer_with_a_key_that_does_not_fit_is_a_configuration_error(
    auth_server: AuthServer, algorithm: str
) -> None:
    with pytest.raises(ConfigurationError):
        JWTBearer(
            auth_server.token_url,
            client_id="robot",
            issuer="robot",
            subject="alice",
            key=auth_server.private_key_pem("RS256"),
            algorithm=algorithm,
        )


def test_fitting_keys_are_accepted(auth_server: AuthServer) -> None:
    for key_algorithm in ("RS256", "ES256"):
        grant = ClientCredentials(
            auth_server.token_url,
            client_id="svc",
            auth_method="private_key_jwt",
            client_key=auth_server.private_key_pem(key_algorithm),
            client_assertion_algorithm=key_algorithm,
        )
        assert grant.auth_method == "private_key_jwt"
    assert auth_server.token_requests == 0

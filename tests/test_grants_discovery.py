"""Server metadata discovery (RFC 8414, then OpenID Connect): endpoints, the exact issuer
check, the choice of client authentication, and the process-wide cache."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from requests_tokenauth import (
    AuthorizationCode,
    ClientCredentials,
    ConfigurationError,
    DeviceCode,
    JWTBearer,
    Password,
    TokenAuth,
)
from requests_tokenauth._grants._discovery import clear_cache, metadata_urls, pick_auth_method
from requests_tokenauth.testing import AuthServer

from .helpers import join_all, start_threads


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_cache()  # ports are reused between tests; cached metadata must not leak across
    yield
    clear_cache()


def test_from_issuer_reads_the_rfc8414_document(auth_server: AuthServer, fake_clock) -> None:
    grant = ClientCredentials.from_issuer(
        auth_server.issuer, client_id="svc", client_secret="svc-secret"
    )
    assert grant.token_url == auth_server.token_url
    assert grant.revocation_url == auth_server.url + "/revoke"
    assert grant.auth_method == "client_secret_basic"
    assert auth_server.metadata_requests == 1
    assert TokenAuth(grant, clock=fake_clock).get_token().access_token
    assert auth_server.token_requests == 1
    paths = [s.path for s in auth_server.seen if s.path.startswith("/.well-known/")]
    assert paths == ["/.well-known/oauth-authorization-server"]


def test_metadata_is_fetched_once_per_issuer(auth_server: AuthServer) -> None:
    def build(i: int) -> object:
        return Password.from_issuer(
            auth_server.issuer,
            client_id="app",
            client_secret="app-secret",
            username="alice",
            password="wonderland",
        )

    threads, results = start_threads(8, build)
    join_all(threads)
    assert all(isinstance(r, Password) for r in results), results
    ClientCredentials.from_issuer(auth_server.issuer, client_id="svc", client_secret="svc-secret")
    assert auth_server.metadata_requests == 1


def test_falls_back_to_openid_configuration(auth_server: AuthServer) -> None:
    auth_server.metadata_documents = {"openid-configuration"}
    grant = ClientCredentials.from_issuer(
        auth_server.issuer, client_id="svc", client_secret="svc-secret"
    )
    assert grant.token_url == auth_server.token_url
    paths = [s.path for s in auth_server.seen if s.path.startswith("/.well-known/")]
    assert paths == ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"]


def test_a_document_for_another_issuer_is_refused(auth_server: AuthServer) -> None:
    auth_server.metadata_issuer = "https://evil.example"
    with pytest.raises(ConfigurationError, match=r"evil\.example"):
        ClientCredentials.from_issuer(auth_server.issuer, client_id="svc", client_secret="s")
    # a trailing slash is a different issuer too (RFC 8414 §3.3: identical, not similar)
    auth_server.metadata_issuer = None
    with pytest.raises(ConfigurationError, match="not"):
        ClientCredentials.from_issuer(auth_server.issuer + "/", client_id="svc", client_secret="s")


def test_no_metadata_at_all(auth_server: AuthServer) -> None:
    auth_server.metadata_documents = set()
    with pytest.raises(ConfigurationError, match="no authorization server metadata"):
        ClientCredentials.from_issuer(auth_server.issuer, client_id="svc", client_secret="s")
    assert auth_server.metadata_requests == 2


def test_every_grant_finds_its_own_endpoints(auth_server: AuthServer) -> None:
    pytest.importorskip("jwt")
    issuer = auth_server.issuer
    device = DeviceCode.from_issuer(issuer, client_id="device")
    assert device.device_authorization_url == issuer + "/device_authorization"
    assert device.auth_method == "none"
    web = AuthorizationCode.from_issuer(
        issuer, client_id="web", client_secret="web-secret", redirect_uri="http://127.0.0.1/cb"
    )
    assert web.authorization_url == issuer + "/authorize"
    robot = JWTBearer.from_issuer(
        issuer,
        client_id="robot",
        client_key=auth_server.private_key_pem(),
        issuer="robot",
        subject="robot",
        key=auth_server.private_key_pem(),
    )
    assert robot.auth_method == "private_key_jwt" and robot.audience == auth_server.token_url
    assert auth_server.metadata_requests == 1


def test_pick_auth_method_follows_the_server_and_the_credentials() -> None:
    both = {"token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"]}
    assert pick_auth_method(both, {"client_secret": "s"}) == "client_secret_post"
    assert pick_auth_method(both, {"client_key": "k", "client_secret": "s"}) == "private_key_jwt"
    assert pick_auth_method({}, {"client_secret": "s"}) == "client_secret_basic"  # the default
    with pytest.raises(ConfigurationError):
        pick_auth_method({}, {})  # a public client, but the server lists only basic
    jwt_only = {"token_endpoint_auth_methods_supported": ["client_secret_jwt"]}
    assert pick_auth_method(jwt_only, {"client_secret": "s"}) == "client_secret_jwt"


@pytest.mark.parametrize(
    ("issuer", "rfc8414", "oidc"),
    [
        (
            "https://idp.example",
            "https://idp.example/.well-known/oauth-authorization-server",
            "https://idp.example/.well-known/openid-configuration",
        ),
        (
            "https://idp.example/tenant/1",
            "https://idp.example/.well-known/oauth-authorization-server/tenant/1",
            "https://idp.example/tenant/1/.well-known/openid-configuration",
        ),
    ],
)
def test_well_known_urls(issuer: str, rfc8414: str, oidc: str) -> None:
    assert metadata_urls(issuer) == (rfc8414, oidc)


def test_issuer_must_be_https_or_loopback() -> None:
    with pytest.raises(ConfigurationError, match="plain http"):
        ClientCredentials.from_issuer("http://idp.example", client_id="c", client_secret="s")
    with pytest.raises(ConfigurationError, match="query"):
        ClientCredentials.from_issuer("https://idp.example?x=1", client_id="c", client_secret="s")

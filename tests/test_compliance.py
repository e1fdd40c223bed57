"""Compliance hooks on grants (requests-oauthlib's names and signatures) against the loopback
server: requests-oauthlib's own ``ebay_compliance_fix`` unchanged, an unusable
``token_type`` as a terminal error, hooks on token and resource requests (issue 12)."""

from __future__ import annotations

import json

import pytest
import requests
from requests_oauthlib.compliance_fixes import ebay_compliance_fix

from requests_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    InvalidGrantError,
    MalformedTokenResponseError,
    RefreshToken,
    TokenAuth,
    TokenEndpointError,
    UnsupportedTokenTypeError,
)
from requests_tokenauth.testing import AuthServer

from .helpers import EXACT, EXPIRED_AFTER, LIFETIME, service_auth, session_for


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    auth_server.token_lifetime_seconds = LIFETIME
    return auth_server


def test_ebay_compliance_fix_works_unchanged_on_a_grant(server, fake_clock) -> None:
    server.token_type = "Application Access Token"
    grant = ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")
    assert ebay_compliance_fix(grant) is grant
    session = session_for(TokenAuth(grant, clock=fake_clock, policy=EXACT, max_wait_seconds=0))
    response = session.get(server.resource_url)
    assert response.status_code == 200
    assert session.auth.token.token_type == "Bearer"
    assert server.token_requests == 1


def test_ebay_fix_covers_refreshes_with_a_rotating_refresh_token(server, fake_clock) -> None:
    server.rotate_refresh_tokens = True
    server.token_type = "User Access Token"
    saved = server.issue_token("app", scopes=("read",), refresh=True, user="alice")
    grant = RefreshToken(server.token_url, client_id="app", client_secret="app-secret")
    ebay_compliance_fix(grant)
    saved_tokens: list[dict] = []
    auth = TokenAuth(
        grant, token=saved, on_token=saved_tokens.append, clock=fake_clock, policy=EXACT
    )
    session = session_for(auth)
    for _ in range(2):
        fake_clock.advance(EXPIRED_AFTER)
        assert session.get(server.resource_url).status_code == 200
    assert server.token_requests_by_grant == {"refresh_token": 2}
    assert [t["token_type"] for t in saved_tokens] == ["Bearer", "Bearer"]
    assert saved_tokens[0]["refresh_token"] != saved_tokens[1]["refresh_token"]


def test_an_unusable_token_type_is_terminal_and_names_compliance_hooks(server, fake_clock) -> None:
    server.token_type = "N_A"
    session = session_for(service_auth(server, fake_clock))
    with pytest.raises(UnsupportedTokenTypeError) as first:
        session.get(server.resource_url)
    assert isinstance(first.value, InvalidGrantError)  # terminal, not a transient error
    assert not isinstance(first.value, TokenEndpointError)
    assert first.value.retryable is False
    assert first.value.error == "unsupported_token_type"
    assert "'N_A'" in str(first.value) and "compliance hook" in str(first.value)
    with pytest.raises(UnsupportedTokenTypeError):
        session.get(server.resource_url)  # remembered: no second token request
    assert server.token_requests == 1
    assert server.resource_requests == 0


@pytest.mark.parametrize("token_type", ["bearer", "BEARER", "BeArEr"])
def test_bearer_is_matched_case_insensitively(server, fake_clock, token_type) -> None:
    server.token_type = token_type
    auth = service_auth(server, fake_clock)
    assert session_for(auth).get(server.resource_url).status_code == 200
    assert auth.token.authorization.startswith("Bearer ")


def test_request_hooks_see_url_headers_and_body(server, fake_clock) -> None:
    seen: list[tuple[str, dict, str]] = []

    def fix(url, headers, body):
        seen.append((url, dict(headers), body))
        return server.token_url, {**headers, "X-Fix": "1"}, body + "&scope=read"

    # the provider's documented URL is wrong; the fix sends the request where it works
    grant = ClientCredentials(
        server.url + "/oauth/v2/token", client_id="svc", client_secret="svc-secret"
    )
    grant.register_compliance_hook("access_token_request", fix)
    grant.register_compliance_hook("access_token_request", fix)  # once, like a set
    session = session_for(TokenAuth(grant, clock=fake_clock, policy=EXACT, max_wait_seconds=0))
    assert session.get(server.resource_url).json()["scope"] == "read"
    assert [(url, body) for url, _, body in seen] == [
        (server.url + "/oauth/v2/token", "grant_type=client_credentials")
    ]
    assert seen[0][1]["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert [s.path for s in server.seen if "token" in s.path] == ["/token"]


def test_protected_request_hooks_run_on_resource_requests(server, fake_clock) -> None:
    grant = ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")

    def tag(url, headers, body):
        return url + "?tagged=1", headers, body

    grant.register_compliance_hook("protected_request", tag)
    session = session_for(TokenAuth(grant, clock=fake_clock, policy=EXACT, max_wait_seconds=0))
    assert session.get(server.resource_url).json()["path"] == "/resource?tagged=1"


def test_a_hook_that_fails_on_a_2xx_is_a_typed_error(server, fake_clock) -> None:
    grant = ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")

    def broken(response):
        raise KeyError("expires")

    grant.register_compliance_hook("access_token_response", broken)
    session = session_for(TokenAuth(grant, clock=fake_clock, policy=EXACT, max_wait_seconds=0))
    with pytest.raises(MalformedTokenResponseError, match="broken raised KeyError"):
        session.get(server.resource_url)


def test_a_json_fix_given_an_error_page_lets_the_real_error_through(server, fake_clock) -> None:
    grant = ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")
    ebay_compliance_fix(grant)  # json.loads() of a plain-text 503 raises
    server.set_token_fault("503", count=1)
    session = session_for(TokenAuth(grant, clock=fake_clock, policy=EXACT, max_wait_seconds=0))
    with pytest.raises(TokenEndpointError) as info:
        session.get(server.resource_url)
    assert info.value.status_code == 503


def test_a_hook_cannot_send_the_token_request_over_plain_http(server, fake_clock) -> None:
    grant = ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")
    grant.register_compliance_hook(
        "access_token_request", lambda url, headers, body: ("http://idp.example/t", headers, body)
    )
    with pytest.raises(ConfigurationError, match="http"):
        TokenAuth(grant, clock=fake_clock).get_token()
    assert server.token_requests == 0


def test_unknown_hook_types_are_refused() -> None:
    grant = ClientCredentials("https://idp.example/token", client_id="svc", client_secret="s")
    with pytest.raises(ConfigurationError, match="access_token_response"):
        grant.register_compliance_hook("token_response", lambda r: r)
    with pytest.raises(ConfigurationError):
        grant.register_compliance_hook("access_token_response", "not callable")


def test_a_fix_that_rewrites_expires_is_used(server, fake_clock) -> None:
    # a provider that sends "expires" instead of "expires_in" (facebook's old shape)
    def expires_to_expires_in(response: requests.Response) -> requests.Response:
        token = json.loads(response.text)
        if "expires_in" in token:
            token["expires"] = token.pop("expires_in")
        if "expires" in token:
            token["expires_in"] = token.pop("expires")
        response._content = json.dumps(token).encode()
        return response

    grant = ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")
    grant.register_compliance_hook("access_token_response", expires_to_expires_in)
    auth = TokenAuth(grant, clock=fake_clock, policy=EXACT, max_wait_seconds=0)
    assert session_for(auth).get(server.resource_url).status_code == 200
    assert auth.token.expires_in_seconds == LIFETIME

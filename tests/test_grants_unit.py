"""Grants without IO: building requests with oauthlib, parsing into a Token or a typed error."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from requests_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    InvalidGrantError,
    MalformedTokenResponseError,
    RefreshToken,
    Token,
    TokenEndpointError,
    TokenRefreshError,
    UnsupportedTokenTypeError,
)
from requests_tokenauth._grants import basic_credentials, is_loopback
from requests_tokenauth.testing import FakeClock

URL = "https://idp.example.com/token"


def response(status: int, body: object, headers: dict | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r.headers.update(headers or {"Content-Type": "application/json"})
    r.encoding = "utf-8"
    return r


def parse(grant, r: requests.Response) -> Token:
    clock = FakeClock()
    return grant._parse(r, clock, 10.0, 20.0, grant.grant_type, None)


CC = ClientCredentials(URL, client_id="svc", client_secret="s3cr3t", scope=["read", "write"])


def form(body: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(body))


def test_client_credentials_body_and_basic_auth() -> None:
    assert form(CC._grant_body(CC._client_params())) == {
        "grant_type": "client_credentials",
        "scope": "read write",
    }
    assert CC._authorization() == "Basic " + base64.b64encode(b"svc:s3cr3t").decode()


def test_client_secret_post_puts_credentials_in_the_body() -> None:
    grant = ClientCredentials(
        URL,
        client_id="svc",
        client_secret="s",
        auth_method="client_secret_post",
        extra={"audience": "api"},
    )
    assert form(grant._grant_body(grant._client_params())) == {
        "grant_type": "client_credentials",
        "client_id": "svc",
        "client_secret": "s",
        "audience": "api",
    }
    assert grant._authorization() is None


def test_refresh_body_keeps_extra_parameters() -> None:
    grant = RefreshToken(
        URL, client_id="app", auth_method="none", extra={"resource": "https://api"}
    )
    assert form(grant._refresh_body("r1")) == {
        "grant_type": "refresh_token",
        "refresh_token": "r1",
        "client_id": "app",
        "resource": "https://api",
    }


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [("a:b", "c:d"), ("100%", "x+y z"), ("klïent", "sécret/=")],
)
def test_basic_credentials_are_form_encoded_first(client_id: str, secret: str) -> None:
    header = basic_credentials(client_id, secret)
    decoded = base64.b64decode(header.split(" ", 1)[1]).decode("ascii")
    raw_id, raw_secret = decoded.split(":")  # exactly one ':' survives: the separator
    assert urllib.parse.unquote_plus(raw_id) == client_id
    assert urllib.parse.unquote_plus(raw_secret) == secret


@pytest.mark.parametrize(
    "url",
    ["http://idp.example.com/token", "ftp://127.0.0.1/token", "/token", "http:///token"],
)
def test_insecure_or_relative_token_urls_are_refused_before_any_traffic(url: str) -> None:
    with pytest.raises(ConfigurationError, match="token URL"):
        ClientCredentials(url, client_id="svc", client_secret="s")


def test_plain_http_needs_opt_in_except_on_loopback() -> None:
    ClientCredentials("http://127.0.0.1:1/token", client_id="svc", client_secret="s")
    ClientCredentials("http://[::1]:1/token", client_id="svc", client_secret="s")
    ClientCredentials("http://localhost/token", client_id="svc", client_secret="s")
    grant = ClientCredentials(
        "http://idp.internal/token", client_id="svc", client_secret="s", allow_insecure_http=True
    )
    assert grant.token_url == "http://idp.internal/token"
    assert (
        is_loopback("127.8.9.10") and not is_loopback("10.0.0.1") and not is_loopback("example.com")
    )


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="auth_method"):
        ClientCredentials(URL, client_id="svc", client_secret="s", auth_method="magic")
    with pytest.raises(ConfigurationError, match="client_secret"):
        ClientCredentials(URL, client_id="svc")
    with pytest.raises(ConfigurationError, match="client_id"):
        ClientCredentials(URL, client_id="", client_secret="s")
    with pytest.raises(ConfigurationError, match="refresh token"):
        RefreshToken(URL, client_id="app", auth_method="none").fetch(None, FakeClock())


def test_repr_has_no_secret() -> None:
    assert "s3cr3t" not in repr(CC)


def test_success_is_parsed_by_oauthlib_into_a_token() -> None:
    token = parse(
        CC, response(200, {"access_token": "A", "token_type": "Bearer", "expires_in": 60})
    )
    assert token.access_token == "A"
    assert token.obtained_monotonic == 10.0  # when the request was sent, not when parsed
    assert token.expires_at == 80.0
    assert token.scope == ("read", "write")


def test_scope_change_is_not_an_error() -> None:
    token = parse(CC, response(200, {"access_token": "A", "token_type": "Bearer", "scope": "read"}))
    assert token.scope == ("read",)


@pytest.mark.parametrize(
    ("status", "body", "error_type", "code"),
    [
        (
            400,
            {"error": "invalid_grant", "error_description": "revoked"},
            InvalidGrantError,
            "invalid_grant",
        ),
        (401, {"error": "invalid_client"}, InvalidGrantError, "invalid_client"),
        (400, {"error": "unauthorized_client"}, InvalidGrantError, "unauthorized_client"),
        (400, {"error": "invalid_scope"}, InvalidGrantError, "invalid_scope"),
        (400, {"error": "unsupported_grant_type"}, InvalidGrantError, "unsupported_grant_type"),
        (400, {"error": "invalid_request"}, InvalidGrantError, "invalid_request"),
        (400, {"error": "temporarily_unavailable"}, TokenEndpointError, "temporarily_unavailable"),
        (400, {"error": "server_error"}, TokenEndpointError, "server_error"),
        (500, {"error": "server_error"}, TokenEndpointError, "server_error"),
        (503, b"<html>down</html>", TokenEndpointError, None),
        (429, {}, TokenEndpointError, None),
        (400, b"<html>bad</html>", InvalidGrantError, None),
        (302, b"", TokenEndpointError, None),
        (200, b"<html>login page</html>", MalformedTokenResponseError, None),
        (200, {"token_type": "Bearer"}, MalformedTokenResponseError, None),
        (
            200,
            {"access_token": "A", "token_type": "mac"},
            UnsupportedTokenTypeError,
            "unsupported_token_type",
        ),
        (200, {"access_token": "A", "expires_in": -5}, MalformedTokenResponseError, None),
        (200, {"access_token": "A", "expires_in": "soon"}, MalformedTokenResponseError, None),
        (200, [1, 2], MalformedTokenResponseError, None),
    ],
)
def test_failures_are_typed(status: int, body: object, error_type: type, code: str | None) -> None:
    with pytest.raises(error_type) as info:
        parse(CC, response(status, body))
    assert type(info.value) is error_type
    assert info.value.error == code
    assert info.value.status_code == status


def test_retry_after_is_kept() -> None:
    with pytest.raises(TokenEndpointError) as info:
        parse(CC, response(503, {}, {"Retry-After": "7"}))
    assert info.value.retry_after_seconds == 7.0


def test_error_body_is_kept_redacted() -> None:
    body = {"access_token": "LEAKED-AT", "token_type": "mac", "refresh_token": "LEAKED-RT"}
    with pytest.raises(UnsupportedTokenTypeError) as info:
        parse(CC, response(200, body))
    assert "LEAKED" not in str(info.value) + repr(info.value) + (info.value.body or "")
    assert "mac" in (info.value.body or "")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=10,
)
token_fields = st.sampled_from(
    [
        "access_token",
        "token_type",
        "expires_in",
        "expires_at",
        "refresh_token",
        "scope",
        "error",
        "refresh_in",
    ]
)


@given(
    st.dictionaries(token_fields | st.text(max_size=8), json_values, max_size=8),
    st.sampled_from([200, 400, 401, 500]),
)
def test_any_json_object_gives_a_token_or_a_typed_error(data: dict, status: int) -> None:
    try:
        token = parse(CC, response(status, data))
    except TokenRefreshError:
        return
    assert isinstance(token, Token) and token.access_token

"""Findings of the httpx driver's review, each pinned by a test that failed before its fix:
nonsensical ``token_client_options``, ..."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import requests

from requests_tokenauth import ClientCredentials, ConfigurationError
from requests_tokenauth.httpx import TokenAuth
from requests_tokenauth.testing import AuthServer

SECRET = "svc-secret"


def auth_with(server: AuthServer, **options: Any) -> TokenAuth:
    grant = ClientCredentials(server.token_url, client_id="svc", client_secret=SECRET)
    return TokenAuth(grant, **options)


def token_in(flow: str, auth: TokenAuth) -> Any:
    if flow == "sync":
        return auth.get_token()
    return asyncio.run(auth.aget_token())


# -- token_client_options that make no sense: typed errors -----------------------------------


def test_an_unknown_token_client_option_is_refused_at_construction(
    auth_server: AuthServer,
) -> None:
    with pytest.raises(ConfigurationError, match="verfiy") as caught:
        auth_with(auth_server, token_client_options={"verfiy": False})
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("flow", ["sync", "async"])
@pytest.mark.parametrize(
    "options",
    [
        {"verify": "/nonexistent/ca-bundle.pem", "trust_env": False},
        {"cert": "/nonexistent/client.pem"},
        {"limits": "many"},
    ],
    ids=["verify-missing-file", "cert-missing-file", "limits-not-limits"],
)
def test_a_token_client_option_httpx_cannot_use_is_a_typed_error(
    auth_server: AuthServer, flow: str, options: dict[str, Any]
) -> None:
    auth = auth_with(auth_server, token_client_options=options)
    with pytest.raises(ConfigurationError, match="token_client_options") as caught:
        token_in(flow, auth)
    assert isinstance(caught.value, requests.RequestException)
    assert SECRET not in str(caught.value)

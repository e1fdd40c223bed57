"""No secret in reprs, messages or log lines; and the suite-wide log guard really catches one."""

from __future__ import annotations

import logging

import pytest
import requests

from requests_tokenauth import ClientCredentials, TokenAuth, TokenEndpointError
from requests_tokenauth._testserver._state import known_secrets
from requests_tokenauth.testing import AuthServer

from .conftest import _Capture, leaked


def test_the_log_guard_catches_a_planted_secret(auth_server: AuthServer) -> None:
    token = auth_server.issue_token()["access_token"]
    assert token in known_secrets()
    capture = _Capture()
    logger = logging.getLogger("requests_tokenauth.planted")
    logger.addHandler(capture)
    logger.propagate = False  # the suite-wide guard would (rightly) fail this test
    try:
        logger.debug("oops %s", token)
        logger.debug("harmless line")
    finally:
        logger.removeHandler(capture)
        logger.propagate = True
    assert leaked(capture.lines, known_secrets()) == [f"oops {token}"]


def test_reprs_with_a_live_token_show_no_secret(auth_server: AuthServer) -> None:
    saved = auth_server.issue_token("app", refresh=True, user="alice")
    grant = ClientCredentials(auth_server.token_url, client_id="svc", client_secret="svc-secret")
    auth = TokenAuth(grant, token=saved)
    session = requests.Session()
    session.auth = auth
    assert auth.token is not None
    texts = [
        repr(auth),
        str(auth),
        repr(auth.manager),
        repr(grant),
        repr(auth.token),
        str(auth.token),
    ]
    for secret in (saved["access_token"], saved["refresh_token"], "svc-secret"):
        assert not any(secret in t for t in texts)
    assert auth.token.fingerprint in repr(auth.manager)


def test_errors_from_a_dead_endpoint_name_it_without_secrets() -> None:
    server = AuthServer().start()
    url = server.token_url
    server.close()  # nothing listens there any more
    grant = ClientCredentials(url, client_id="svc", client_secret="svc-secret", timeout=2.0)
    with pytest.raises(TokenEndpointError) as info:
        TokenAuth(grant).get_token()
    message = f"{info.value} {info.value!r}"
    assert url in message and "ConnectionError" in message
    assert "svc-secret" not in message
    assert info.value.retryable

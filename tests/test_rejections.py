"""How a rejected token is handled against the loopback server: 403 as "expired"
(``refresh_status_codes``), bodies that cannot be re-sent, a redirect after the retry, and
the cookies a 401 sets (issues 12 and 10). Exact counts, no sleeps."""

from __future__ import annotations

import logging

import pytest
import requests
from requests_toolbelt import MultipartEncoder

from requests_tokenauth import (
    ConfigurationError,
    TokenAdapter,
    TokenAuth,
    TokenEvent,
    wrap_adapter,
)
from requests_tokenauth.testing import AuthServer

from .helpers import LIFETIME, service_auth, session_for


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    auth_server.token_lifetime_seconds = LIFETIME
    return auth_server


def sent_to(server: AuthServer, path: str) -> list[str | None]:
    return [s.authorization for s in server.seen if s.path.startswith(path)]


def auth_header(session: requests.Session) -> str:
    token = session.auth.token  # type: ignore[union-attr]
    assert token is not None
    return token.authorization


def revoked_session(server: AuthServer, auth: TokenAuth) -> requests.Session:
    """A session whose token the server has just revoked (one token request so far)."""
    session = session_for(auth)
    assert session.get(server.resource_url).status_code == 200
    server.revoke_all()
    return session


# -- 403 as "this token is no good" ---------------------------------------------------------


def test_403_mode_is_not_retried_by_default(server, fake_clock) -> None:
    server.invalid_token_status = 403
    session = revoked_session(server, service_auth(server, fake_clock))
    response = session.get(server.resource_url)
    assert response.status_code == 403
    assert "WWW-Authenticate" not in response.headers  # the 403 mode sends no challenge
    assert server.token_requests == 1


def test_403_mode_with_refresh_status_codes_replaces_the_token_and_retries(
    server, fake_clock
) -> None:
    server.invalid_token_status = 403
    auth = service_auth(server, fake_clock, refresh_status_codes=(401, 403))
    session = revoked_session(server, auth)
    old = auth.token
    response = session.get(server.resource_url)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [403]
    assert server.token_requests == 2
    assert auth.token is not old
    assert sent_to(server, "/resource")[-2:] == [old.authorization, auth.token.authorization]


def test_403_insufficient_scope_is_never_retried(server, fake_clock) -> None:
    auth = service_auth(server, fake_clock, refresh_status_codes=(401, 403))
    session = session_for(auth)
    response = session.get(server.url + "/resource/scope/admin")
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert response.history == []
    assert server.token_requests == 1


def test_403_for_every_token_is_one_replacement_within_the_cooldown(server, fake_clock) -> None:
    server.invalid_token_status = 403
    auth = service_auth(server, fake_clock, refresh_status_codes=(401, 403))
    session = session_for(auth)
    session.get(server.resource_url)
    server.always_401 = True  # every token rejected: with the 403 mode, as a bare 403
    statuses = [session.get(server.resource_url).status_code for _ in range(10)]
    assert statuses == [403] * 10
    assert server.token_requests == 2  # one replacement, then the cooldown holds


@pytest.mark.parametrize("mount", ["token_adapter", "wrap_adapter", "wrap_adapter_own_codes"])
def test_adapters_follow_refresh_status_codes(server, fake_clock, mount) -> None:
    server.invalid_token_status = 403
    codes = None if mount == "wrap_adapter_own_codes" else (401, 403)
    auth = service_auth(server, fake_clock, **({"refresh_status_codes": codes} if codes else {}))
    session = requests.Session()
    session.trust_env = False
    if mount == "token_adapter":
        adapter = TokenAdapter(auth)
    elif mount == "wrap_adapter":
        adapter = wrap_adapter(requests.adapters.HTTPAdapter(), auth)
    else:
        adapter = wrap_adapter(
            requests.adapters.HTTPAdapter(), auth, refresh_status_codes=(401, 403)
        )
    session.mount(server.url + "/", adapter)
    assert session.get(server.resource_url).status_code == 200
    server.revoke_all()
    response = session.get(server.resource_url)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [403]
    assert server.token_requests == 2


@pytest.mark.parametrize("codes", [(), (500,), ("401",), (True,), 401])
def test_refresh_status_codes_must_be_4xx(server, fake_clock, codes) -> None:
    with pytest.raises(ConfigurationError):
        service_auth(server, fake_clock, refresh_status_codes=codes)


# -- bodies that cannot be sent again -------------------------------------------------------


def test_multipart_upload_after_revocation_replaces_the_token_for_the_next_upload(
    server, fake_clock, caplog
) -> None:
    events: list[TokenEvent] = []
    session = revoked_session(server, service_auth(server, fake_clock, on_event=events.append))

    def upload() -> requests.Response:
        encoder = MultipartEncoder({"file": ("a.txt", b"x" * 1000, "text/plain")})
        return session.post(
            server.resource_url, data=encoder, headers={"Content-Type": encoder.content_type}
        )

    with caplog.at_level(logging.INFO, logger="requests_tokenauth"):
        first = upload()
    assert first.status_code == 401  # a streamed body cannot be re-sent...
    assert first.history == []
    assert server.token_requests == 2  # ...but the token was replaced
    assert [e.error for e in events if e.kind == "unauthorized_not_retried"] == [
        "body_not_replayable"
    ]
    assert any("cannot be sent again" in r.getMessage() for r in caplog.records)
    second = upload()
    assert second.status_code == 200
    assert second.json()["body_length"] > 1000  # the whole multipart body arrived
    assert server.token_requests == 2
    uploads = [s.authorization for s in server.seen if s.method == "POST"]
    assert uploads[-2] != uploads[-1] == auth_header(session)


def test_unreplayable_body_with_a_token_another_thread_replaced_makes_no_token_request(
    server, fake_clock
) -> None:
    auth = service_auth(server, fake_clock)
    session = revoked_session(server, auth)
    assert session.get(server.resource_url).status_code == 200  # replaced by this retry
    assert server.token_requests == 2
    response = session.post(server.resource_url, data=(b"x" for _ in range(2)))
    assert response.status_code == 200
    assert server.token_requests == 2


# -- redirects and cookies after the retry (issue 10, items 10 and 11) ----------------------


def test_a_redirect_after_the_retry_carries_the_new_token(server, fake_clock) -> None:
    auth = service_auth(server, fake_clock)
    session = revoked_session(server, auth)
    old = auth.token
    response = session.get(
        server.url + "/resource/redirect", params={"to": server.url + "/resource/after"}
    )
    new = auth.token
    assert new is not old
    assert response.status_code == 200
    assert response.json()["path"] == "/resource/after"
    assert sent_to(server, "/resource/redirect") == [old.authorization, new.authorization]
    assert sent_to(server, "/resource/after") == [new.authorization]
    assert server.token_requests == 2


def test_a_cookie_set_by_the_401_goes_with_the_retry(server, fake_clock) -> None:
    auth = service_auth(server, fake_clock)
    session = revoked_session(server, auth)
    old = auth.token
    session.cookies.set("app", "1", domain="127.0.0.1", path="/")
    server.unauthorized_cookie = "lb=node-7; Path=/"
    response = session.get(server.resource_url)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    # each answer keeps the request that got it
    assert response.history[0].request.headers["Authorization"] == old.authorization
    assert response.request.headers["Authorization"] == auth.token.authorization
    sent = sorted(response.json()["cookie"].split("; "))
    assert sent == ["app=1", "lb=node-7"]


def test_adapter_replaces_the_token_for_an_unreplayable_body_too(server, fake_clock) -> None:
    events: list[TokenEvent] = []
    auth = service_auth(server, fake_clock, on_event=events.append)
    session = requests.Session()
    session.trust_env = False
    session.mount(server.url + "/", TokenAdapter(auth))
    assert session.get(server.resource_url).status_code == 200
    server.revoke_all()
    first = session.post(server.resource_url, data=(b"chunk" for _ in range(3)))
    assert first.status_code == 401
    assert server.token_requests == 2
    assert [e.kind for e in events].count("unauthorized_not_retried") == 1
    second = session.post(server.resource_url, data=(b"chunk" for _ in range(3)))
    assert second.status_code == 200
    assert server.token_requests == 2

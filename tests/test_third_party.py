"""Real third-party clients, each given a session the way its own docs say, against a small
loopback API that checks the bearer token with the testing server (issue 12): python-gitlab
(a multipart upload after revocation), atlassian-python-api (a call after expiry, and the 403
mode) and requests-futures (16 concurrent calls on one expired token)."""

from __future__ import annotations

from collections.abc import Iterator

import gitlab
import pytest
import requests
from atlassian import Jira
from requests_futures.sessions import FuturesSession

from requests_tokenauth.testing import AuthServer

from ._fake_apis import FakeAPI
from .helpers import EXPIRED_AFTER, LIFETIME, count_lock, service_auth, session_for


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    auth_server.token_lifetime_seconds = LIFETIME
    return auth_server


@pytest.fixture
def api(server: AuthServer) -> Iterator[FakeAPI]:
    with FakeAPI(server) as api:
        yield api


def test_python_gitlab_upload_after_revocation(server, api, fake_clock) -> None:
    session = session_for(service_auth(server, fake_clock))
    gl = gitlab.Gitlab(api.url, session=session)  # python-gitlab's "custom session"
    project = gl.projects.get(42, lazy=True)
    assert project.upload("notes.txt", filedata=b"first")["alt"] == "notes.txt"
    assert server.token_requests == 1
    server.revoke_all()
    # python-gitlab streams uploads with requests-toolbelt's MultipartEncoder, which cannot
    # be sent twice: this upload gets the 401, but the token is replaced...
    with pytest.raises(gitlab.exceptions.GitlabAuthenticationError):
        project.upload("notes.txt", filedata=b"second")
    assert server.token_requests == 2
    # ...so the next upload goes through, with no further token request
    assert project.upload("notes.txt", filedata=b"third")["url"].endswith("/notes.txt")
    assert server.token_requests == 2
    uploads = [(status, size > 0) for method, _, status, size in api.calls if method == "POST"]
    assert uploads == [(200, True), (401, True), (200, True)]


def test_jira_call_after_expiry(server, api, fake_clock) -> None:
    session = session_for(service_auth(server, fake_clock))
    jira = Jira(url=api.url, session=session)  # atlassian-python-api takes a session
    assert jira.myself()["name"] == "svc"
    fake_clock.advance(EXPIRED_AFTER)
    assert jira.myself()["name"] == "svc"
    assert server.token_requests == 2
    assert [c[2] for c in api.calls] == [200, 200]  # renewed before the call, no 401


@pytest.mark.parametrize("refresh_status_codes", [None, (401, 403)])
def test_jira_in_403_mode(server, api, fake_clock, refresh_status_codes) -> None:
    server.invalid_token_status = 403
    options = {} if refresh_status_codes is None else {"refresh_status_codes": refresh_status_codes}
    session = session_for(service_auth(server, fake_clock, **options))
    jira = Jira(url=api.url, session=session)
    assert jira.myself()["name"] == "svc"
    server.revoke_all()
    if refresh_status_codes is None:
        with pytest.raises(requests.HTTPError) as info:
            jira.myself()
        assert info.value.response.status_code == 403
        assert server.token_requests == 1  # stays broken until the token expires
    else:
        assert jira.myself()["name"] == "svc"
        assert server.token_requests == 2
        assert [c[2] for c in api.calls] == [200, 403, 200]


def test_requests_futures_16_concurrent_calls_on_one_expired_token(server, api, fake_clock) -> None:
    auth = service_auth(server, fake_clock)
    session = session_for(auth)
    assert session.get(api.url + "/api/items/first").status_code == 200
    fake_clock.advance(EXPIRED_AFTER)
    lock = count_lock(auth)
    server.hold_token_endpoint()
    with FuturesSession(session=session, max_workers=16) as futures_session:
        futures = [futures_session.get(f"{api.url}/api/items/{i}") for i in range(16)]
        try:
            assert server.wait_for_token_requests(2)  # one worker is at the token endpoint
            assert lock.wait_for_attempts(16)  # and all 16 have reached the lock
        finally:
            server.release_token_endpoint()
        responses = [f.result(timeout=20) for f in futures]
    assert [r.status_code for r in responses] == [200] * 16
    assert sorted(r.json()["item"] for r in responses) == sorted(str(i) for i in range(16))
    assert server.token_requests == 2
    assert auth.token is not None
    sent = {c[1] for c in api.calls}
    assert len(sent) == 17

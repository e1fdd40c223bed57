"""What is specific to the httpx driver (``requests_tokenauth.httpx``): its senders' proxy
rules and client options, what it refuses at construction, DPoP proofs on httpx requests,
bodies httpx streams once, the cookies a rejection sets, and the async flow's need for an
asyncio loop. The guarantees every driver shares are tested once for all drivers
(``test_drivers.py``), the senders' deadline and size cap in ``test_hostile_endpoints.py``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import pickle
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, Callable, Optional

import httpx
import pytest
import requests

from requests_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    OriginNotAllowedError,
    ResponseTooLargeError,
    TokenEndpointError,
)
from requests_tokenauth._clock import SYSTEM_CLOCK
from requests_tokenauth._grants._wire import Bounds, OutgoingRequest
from requests_tokenauth._httpx_flow import body_replayable
from requests_tokenauth._httpx_send import AsyncHttpxSending, HttpxSender
from requests_tokenauth.httpx import TokenAuth
from requests_tokenauth.testing import AuthServer, FakeClock

from .helpers import EXACT
from .test_loopback_exemption import RecordingProxy, proxy_in_environment

SECRET = "svc-secret"

#: The httpx driver's two flows.
FLOWS = ["sync", "async"]


def grant_for(server: AuthServer, **kwargs: Any) -> ClientCredentials:
    return ClientCredentials(
        server.token_url,
        client_id="svc",
        client_secret=SECRET,
        revocation_url=server.url + "/revoke",
        **kwargs,
    )


def auth_for(server: AuthServer, clock: FakeClock, **options: Any) -> TokenAuth:
    return TokenAuth(grant_for(server), clock=clock, policy=EXACT, **options)


def with_client(flow: str, auth: TokenAuth, use: Callable[[Any], Any], **client: Any) -> Any:
    """``use(client)`` with an ``httpx.Client(auth=auth, **client)`` (``flow="sync"``), or
    with an ``httpx.AsyncClient`` on a loop run here (``"async"``: ``use`` returns an
    awaitable, awaited)."""
    if flow == "sync":
        with httpx.Client(auth=auth, **client) as sync_client:
            return use(sync_client)

    async def run() -> Any:
        async with httpx.AsyncClient(auth=auth, **client) as async_client:
            return await use(async_client)

    return asyncio.run(run())


def get(
    flow: str,
    auth: TokenAuth,
    url: str,
    method: str = "GET",
    client: Optional[dict[str, Any]] = None,
    **kwargs: Any,
) -> httpx.Response:
    """One request with ``auth``, from a client of ``flow``."""
    response: httpx.Response = with_client(
        flow, auth, lambda c: c.request(method, url, **kwargs), **(client or {})
    )
    return response


def run_member(flow: str, auth: TokenAuth, name: str) -> Any:
    """``auth.get_token()`` / ``auth.revoke()``, or their awaited twins for ``"async"``."""
    if flow == "sync":
        return getattr(auth, name)()
    return asyncio.run(getattr(auth, "a" + name)())


# -- proxies: direct requests take none ------------------------------------------------------


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProxy]:
    """A recording proxy named in ``HTTP_PROXY``, with no ``NO_PROXY``."""
    with proxy_in_environment(monkeypatch) as server:
        yield server


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("via", ["environment", "ALL_PROXY", "token_client_options"])
def test_token_and_revocation_requests_to_loopback_bypass_every_proxy(
    proxy: RecordingProxy,
    auth_server: AuthServer,
    fake_clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    flow: str,
    via: str,
) -> None:
    options: dict[str, Any] = {}
    if via == "ALL_PROXY":
        monkeypatch.delenv("HTTP_PROXY")
        monkeypatch.setenv("ALL_PROXY", proxy.url)
    elif via == "token_client_options":
        monkeypatch.delenv("HTTP_PROXY")
        options = {"proxy": proxy.url}
    auth = auth_for(auth_server, fake_clock, token_client_options=options)
    run_member(flow, auth, "get_token")
    assert run_member(flow, auth, "revoke")
    assert proxy.everything() == b""  # not a byte, so no Basic credentials either
    assert auth_server.token_requests == 1 and auth_server.revocation_requests == 1


@pytest.mark.parametrize("sending", ["sync", "async"])
def test_a_request_that_is_not_direct_does_take_the_proxy(
    proxy: RecordingProxy, auth_server: AuthServer, sending: str
) -> None:
    """The control: the same senders honour the environment's proxy when the request is
    not ``direct`` (so the test above would see a leak)."""
    request = OutgoingRequest(
        "POST", auth_server.token_url, {"X-Probe": "p"}, b"grant_type=x", "token request", False
    )
    bounds = Bounds((5.0, 5.0), SYSTEM_CLOCK, SYSTEM_CLOCK.monotonic() + 10, 1 << 20)
    if sending == "sync":
        answer = HttpxSender().send(request, bounds)
    else:
        answer = asyncio.run(AsyncHttpxSending().send(request, bounds))
    assert answer.status_code == 502
    assert b"X-Probe: p" in proxy.everything()
    assert auth_server.token_requests == 0


@pytest.mark.parametrize("flow", FLOWS)
def test_a_loopback_request_the_environment_would_proxy_is_refused(
    proxy: RecordingProxy, auth_server: AuthServer, fake_clock: FakeClock, flow: str
) -> None:
    auth = auth_for(auth_server, fake_clock, token=auth_server.issue_token())
    with pytest.raises(OriginNotAllowedError) as caught:
        get(flow, auth, auth_server.resource_url)
    message = str(caught.value)
    assert "NO_PROXY" in message and "TokenAdapter" not in message
    assert proxy.everything() == b""


# -- construction -----------------------------------------------------------------------------


def test_a_grant_with_a_requests_session_is_refused(auth_server: AuthServer) -> None:
    grant = grant_for(auth_server, session=requests.Session())
    with pytest.raises(ConfigurationError, match="token_client_options") as caught:
        TokenAuth(grant)
    assert SECRET not in str(caught.value)


def test_protected_request_compliance_hooks_are_refused(auth_server: AuthServer) -> None:
    grant = grant_for(auth_server)
    grant.register_compliance_hook(
        "protected_request", lambda url, headers, body: (url, headers, body)
    )
    with pytest.raises(ConfigurationError, match="protected_request"):
        TokenAuth(grant)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"auth": ("svc", SECRET)}, "auth"),
        ({"follow_redirects": True}, "follow_redirects"),
        ({"base_url": "https://idp.example"}, "base_url"),
        ([("verify", False)], "mapping"),
    ],
)
def test_token_client_options_that_would_change_what_is_sent_are_refused(
    auth_server: AuthServer, options: Any, named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named) as caught:
        TokenAuth(grant_for(auth_server), token_client_options=options)
    assert SECRET not in str(caught.value)


def test_the_async_flow_needs_an_asyncio_loop(
    auth_server: AuthServer, fake_clock: FakeClock
) -> None:
    # what an AsyncClient under trio does: run the flow with no asyncio loop running
    auth = auth_for(auth_server, fake_clock)
    step = auth.async_auth_flow(httpx.Request("GET", auth_server.resource_url)).__anext__()
    with pytest.raises(ConfigurationError, match="asyncio"):
        step.send(None)
    assert auth_server.token_requests == 0


# -- the senders' client options --------------------------------------------------------------


class Recorded:
    """A mock transport's requests; it answers a redirect, which must not be followed."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(302, headers={"Location": "https://idp.example/elsewhere"})


def remote_request() -> OutgoingRequest:
    headers = {"Authorization": "Basic c3ZjOnN2Yy1zZWNyZXQ=", "X-Probe": "p"}
    return OutgoingRequest(
        "POST", "https://idp.example/token", headers, b"grant_type=x", "token request", False
    )


def bounds(max_bytes: int = 1 << 20) -> Bounds:
    return Bounds((5.0, 5.0), SYSTEM_CLOCK, SYSTEM_CLOCK.monotonic() + 10, max_bytes)


def send_with(sending: str, options: dict[str, Any], request: OutgoingRequest, **kw: Any) -> Any:
    if sending == "sync":
        return HttpxSender(options).send(request, bounds(**kw))
    return asyncio.run(AsyncHttpxSending(options).send(request, bounds(**kw)))


@pytest.mark.parametrize("sending", ["sync", "async"])
def test_client_options_reach_the_client_and_the_request_goes_as_built(sending: str) -> None:
    recorded = Recorded()
    answer = send_with(sending, {"transport": httpx.MockTransport(recorded)}, remote_request())
    assert answer.status_code == 302  # the answer as it is: no redirect followed
    assert answer.headers["Location"] == "https://idp.example/elsewhere"
    [sent] = recorded.requests
    assert sent.headers["Accept-Encoding"] == "identity"
    assert sent.headers["Authorization"] == "Basic c3ZjOnN2Yy1zZWNyZXQ="
    assert sent.content == b"grant_type=x"


@pytest.mark.parametrize("sending", ["sync", "async"])
def test_a_direct_request_is_sent_without_the_given_transport(
    sending: str, auth_server: AuthServer
) -> None:
    recorded = Recorded()
    request = OutgoingRequest(
        "POST", auth_server.token_url, {}, b"grant_type=client_credentials", "token request", True
    )
    answer = send_with(sending, {"transport": httpx.MockTransport(recorded)}, request)
    assert answer.status_code == 401  # the real server: no client credentials sent
    assert recorded.requests == []


class Unread(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that must not be read."""

    def __iter__(self) -> Iterator[bytes]:
        raise AssertionError("read")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        raise AssertionError("read")
        yield b""  # pragma: no cover


@pytest.mark.parametrize("sending", ["sync", "async"])
def test_a_content_length_over_the_cap_is_refused_before_reading(sending: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "5000000"}, stream=Unread())

    with pytest.raises(ResponseTooLargeError, match="5000000") as caught:
        send_with(sending, {"transport": httpx.MockTransport(handler)}, remote_request())
    assert caught.value.status_code == 200


@pytest.mark.parametrize("sending", ["sync", "async"])
def test_no_answer_is_a_typed_error_naming_only_the_request(sending: str) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(TokenEndpointError) as caught:
        send_with(sending, {"transport": httpx.MockTransport(refuse)}, remote_request())
    assert str(caught.value) == "token request to https://idp.example/token failed: ConnectError"
    assert type(caught.value) is TokenEndpointError and caught.value.retryable


def test_the_async_sender_needs_an_async_transport() -> None:
    with pytest.raises(ConfigurationError, match="AsyncBaseTransport"):
        send_with("async", {"transport": httpx.HTTPTransport()}, remote_request())


def test_the_sync_sender_pickles_without_clients_and_a_forked_child_drops_them(
    auth_server: AuthServer,
) -> None:
    sender = HttpxSender({"timeout": 3.0})
    request = OutgoingRequest("POST", auth_server.token_url, {}, b"", "token request", True)
    sender.send(request, bounds())
    assert sender._clients  # a client with a keep-alive connection to the server
    copy = pickle.loads(pickle.dumps(sender))
    assert copy.client_options == {"timeout": 3.0} and copy._clients == {}
    pid = os.fork()
    if pid == 0:  # the child: its clients (the parent's sockets) are gone
        os._exit(0 if sender._clients == {} else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert sender._clients  # the parent keeps its own


def test_an_unpickled_auth_works_in_both_flows(auth_server: AuthServer) -> None:
    # the system clock: a FakeClock does not pickle
    auth = TokenAuth(grant_for(auth_server), token_client_options={"timeout": 3.0})
    assert get("async", auth, auth_server.resource_url).status_code == 200  # SSL contexts made
    copy = pickle.loads(pickle.dumps(auth))
    assert copy.token is None  # a pickle carries no token
    for flow in FLOWS:
        assert get(flow, copy, auth_server.resource_url).status_code == 200
    assert auth_server.token_requests == 2


# -- DPoP on httpx requests -------------------------------------------------------------------


def decode(proof: str) -> dict[str, Any]:
    claims = proof.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))  # type: ignore[no-any-return]


@pytest.fixture
def key() -> Any:
    pytest.importorskip("cryptography")
    from requests_tokenauth import DPoPKey

    return DPoPKey.generate()


@pytest.mark.parametrize("flow", FLOWS)
def test_every_httpx_request_carries_a_fresh_proof_for_its_url(
    auth_server: AuthServer, fake_clock: FakeClock, key: Any, flow: str
) -> None:
    auth = auth_for(auth_server, fake_clock, dpop=key)
    url = auth_server.resource_url + "?page=2"

    def three(client: Any) -> Any:
        if flow == "sync":
            return [client.get(url), client.post(url, content=b"x"), client.get(url)]

        async def calls() -> list[httpx.Response]:
            return [
                await client.get(url),
                await client.post(url, content=b"x"),
                await client.get(url),
            ]

        return calls()

    responses = with_client(flow, auth, three)
    assert [r.status_code for r in responses] == [200, 200, 200]
    claims = [decode(r.request.headers["DPoP"]) for r in responses]
    assert len({c["jti"] for c in claims}) == 3
    assert [c["htm"] for c in claims] == ["GET", "POST", "GET"]
    assert {c["htu"] for c in claims} == {auth_server.resource_url}  # no query
    token = auth.token
    assert token is not None and token.token_type == "DPoP"
    assert auth_server.dpop.bound_key(token.access_token) == key.thumbprint
    assert auth_server.dpop.accepted == 4 and auth_server.dpop.rejections == {}
    assert auth.dpop is key


@pytest.mark.parametrize("flow", FLOWS)
def test_a_resource_nonce_challenge_is_one_retry_with_the_same_token(
    auth_server: AuthServer, fake_clock: FakeClock, key: Any, flow: str
) -> None:
    auth_server.require_dpop_nonce = True
    auth = auth_for(auth_server, fake_clock, dpop=key)
    assert get(flow, auth, auth_server.resource_url).status_code == 200
    token = auth.token
    auth_server.dpop.rotate_nonce()
    auth_server.reset_counters()
    response = get(flow, auth, auth_server.resource_url, method="POST", content=b"payload")
    assert response.status_code == 200 and response.json()["body_length"] == 7
    assert [h.status_code for h in response.history] == [401]
    assert decode(response.request.headers["DPoP"])["nonce"] == auth_server.dpop.nonce
    assert auth.token is token  # no new token: only a new proof
    assert auth_server.token_requests == 0 and auth_server.resource_requests == 2


@pytest.mark.parametrize("flow", FLOWS)
def test_a_same_origin_redirect_gets_a_fresh_proof_for_its_url(
    auth_server: AuthServer, fake_clock: FakeClock, key: Any, flow: str
) -> None:
    auth = auth_for(auth_server, fake_clock, dpop=key)
    assert get(flow, auth, auth_server.resource_url).status_code == 200
    auth_server.reset_counters()
    target = auth_server.resource_url + "/next"
    response = get(
        flow,
        auth,
        auth_server.url + "/redirect",
        params={"to": target},
        client={"follow_redirects": True},
    )
    assert response.status_code == 200
    # httpx forwards the first proof; the hop it names the wrong URL for is sent again
    # (that hop, not the whole chain) with a fresh proof and the same token
    [rejected] = response.history
    assert rejected.status_code == 401
    assert rejected.request.url == target and response.request.url == target
    assert decode(response.request.headers["DPoP"])["htu"] == target
    assert auth_server.dpop.rejections == {"htu": 1}
    assert auth_server.token_requests == 0


# -- bodies httpx streams once ----------------------------------------------------------------


def chunks() -> Iterator[bytes]:
    yield b"part-1;"
    yield b"part-2"


async def async_chunks() -> AsyncIterator[bytes]:
    yield b"part-1;"
    yield b"part-2"


@pytest.mark.parametrize(
    ("content", "replayable"),
    [
        (None, True),
        (b"bytes", True),
        ("text", True),
        (chunks(), False),
        (async_chunks(), False),
        (io.BytesIO(b"a file"), False),
    ],
    ids=["none", "bytes", "str", "generator", "async-generator", "file"],
)
def test_which_bodies_can_be_sent_again(content: Any, replayable: bool) -> None:
    assert (
        body_replayable(httpx.Request("POST", "https://api.example/", content=content))
        is replayable
    )


def test_a_streamed_body_read_in_advance_can_be_sent_again() -> None:
    request = httpx.Request("POST", "https://api.example/", content=chunks())
    request.read()
    assert body_replayable(request)
    assert body_replayable(httpx.Request("POST", "https://api.example/", json={"a": 1}))
    assert body_replayable(httpx.Request("POST", "https://api.example/", data={"a": "1"}))


@pytest.mark.parametrize("flow", FLOWS)
def test_a_streamed_body_is_not_sent_again_but_the_token_is_replaced(
    auth_server: AuthServer,
    fake_clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    flow: str,
) -> None:
    events: list[Any] = []
    auth = auth_for(auth_server, fake_clock, on_event=events.append)
    assert get(flow, auth, auth_server.resource_url).status_code == 200
    first = auth.token
    auth_server.revoke_all()
    auth_server.reset_counters()
    body = chunks() if flow == "sync" else async_chunks()
    with caplog.at_level(logging.INFO, logger="requests_tokenauth"):
        response = get(flow, auth, auth_server.resource_url, method="POST", content=body)
    assert response.status_code == 401 and response.history == []
    assert auth_server.resource_requests == 1 and auth_server.token_requests == 1
    assert auth.token is not first
    assert auth.wait_for_refresh(10)
    [event] = [e for e in events if e.kind == "unauthorized_not_retried"]
    assert event.error == "body_not_replayable"
    assert any("cannot be sent again" in r.getMessage() for r in caplog.records)
    assert get(flow, auth, auth_server.resource_url).status_code == 200  # the next one
    assert auth_server.token_requests == 1


def test_the_async_flow_runs_no_callback_on_the_loop(
    auth_server: AuthServer, fake_clock: FakeClock
) -> None:
    threads: list[tuple[str, str]] = []

    def record(name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: threads.append((name, threading.current_thread().name))

    auth = auth_for(
        auth_server, fake_clock, on_event=lambda e: record(e.kind)(), on_token=record("on_token")
    )
    assert get("async", auth, auth_server.resource_url).status_code == 200
    auth_server.revoke_all()
    response = get("async", auth, auth_server.resource_url)  # a retry with a new token
    assert response.status_code == 200 and auth_server.token_requests == 2
    assert auth.wait_for_refresh(10)
    kinds = [kind for kind, _ in threads]
    assert kinds.count("on_token") == 2 and "unauthorized_retry" in kinds
    loop_thread = threading.current_thread().name  # asyncio.run runs the loop here
    assert [t for _, t in threads if t == loop_thread] == []


# -- cookies a rejection sets -----------------------------------------------------------------


@pytest.mark.parametrize("flow", FLOWS)
def test_the_retry_carries_the_cookies_the_rejection_set(
    auth_server: AuthServer, fake_clock: FakeClock, flow: str
) -> None:
    auth = auth_for(auth_server, fake_clock, token=auth_server.issue_token())
    auth_server.revoke_all()
    auth_server.unauthorized_cookie = "lb=node-2; Path=/"
    response = get(flow, auth, auth_server.resource_url, client={"cookies": {"session": "s1"}})
    assert response.status_code == 200 and [h.status_code for h in response.history] == [401]
    sent = response.json()["cookie"]
    assert sorted(sent.split("; ")) == ["lb=node-2", "session=s1"]


def test_a_retry_without_new_cookies_keeps_the_request_s_own(
    auth_server: AuthServer, fake_clock: FakeClock
) -> None:
    auth = auth_for(auth_server, fake_clock, token=auth_server.issue_token())
    auth_server.revoke_all()
    response = get("sync", auth, auth_server.resource_url, client={"cookies": {"session": "s1"}})
    assert response.status_code == 200 and response.json()["cookie"] == "session=s1"

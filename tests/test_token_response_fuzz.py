"""Whole token responses, generated (status, headers, JSON, form or raw body, sizes up to
past the cap), sent by the real loopback server to a real :class:`TokenAuth`: the outcome
is a :class:`Token` or a typed error that is a :class:`requests.RequestException`, no secret
of the response reaches a message, a field of the error or a log line, and every attempt is
one bounded token request."""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from requests_tokenauth import ClientCredentials, Token, TokenAuth
from requests_tokenauth.testing import AuthServer, FakeClock

#: Every secret the responses carry starts with this, so a leak is easy to find.
MARK = "SeCrEt"

secrets = st.builds(
    lambda tail: MARK + tail,
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="&="),
        min_size=6,
        max_size=40,
    ),
)
weird_text = st.text(max_size=40)
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, 1, 10**400, -1, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["0", "3600", "soon", "1e400", "\u00b2", ""]),
    st.booleans(),
    st.none(),
)
access_tokens = st.one_of(
    secrets,
    st.builds(
        lambda s, bad: s + bad, secrets, st.sampled_from([" ", "\t", "\x00", "\u00e9", "\n"])
    ),
    st.builds(lambda s: " " + s, secrets),
    st.integers(),
    st.none(),
    st.lists(secrets, max_size=2),
)
token_types = st.one_of(
    st.sampled_from(["Bearer", "bearer", "DPoP", "mac", "N_A", "Bearer\r\nX: 1", "B\u00e9", ""]),
    weird_text,
    st.none(),
    st.integers(),
)
scopes = st.one_of(st.none(), st.just("read write"), st.lists(st.text(max_size=5)), weird_text)
error_codes = st.one_of(
    st.sampled_from(
        ["invalid_grant", "invalid_client", "temporarily_unavailable", "server_error", ""]
    ),
    weird_text,
    st.integers(),
)
padding_sizes = st.sampled_from([0, 10, 5000, (1 << 20) + 10])


@st.composite
def fields(draw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["access_token"] = draw(access_tokens)
    if draw(st.booleans()):
        out["token_type"] = draw(token_types)
    for name in ("expires_in", "expires_at", "refresh_in"):
        if draw(st.booleans()):
            out[name] = draw(numbers)
    if draw(st.booleans()):
        out[draw(st.sampled_from(["refresh_token", "Refresh_Token", "id_token"]))] = draw(secrets)
    if draw(st.booleans()):
        out["details"] = {draw(st.sampled_from(["access_token", "ACCESS_TOKEN"])): draw(secrets)}
    if draw(st.booleans()):
        out["scope"] = draw(scopes)
    if draw(st.booleans()):
        out["error"] = draw(error_codes)
        out["error_description"] = draw(weird_text)
    padding = draw(padding_sizes)
    if padding:
        out["padding"] = "p" * padding
    return out


def _form(data: dict[str, Any]) -> bytes:
    flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    return urllib.parse.urlencode(flat).encode()


@st.composite
def bodies(draw: Any) -> tuple[bytes, str]:
    kind = draw(st.sampled_from(["valid", "valid", "json", "form", "raw", "json_other", "nested"]))
    if kind == "valid":  # a good token response with at most one field drawn at random
        data = {"access_token": draw(secrets), "token_type": "Bearer", "expires_in": 3600}
        data.update(draw(fields().map(lambda f: dict(list(f.items())[:1]))))
        if draw(st.booleans()):
            return json.dumps(data).encode(), "application/json"
        return _form(data), "application/x-www-form-urlencoded"
    if kind == "json":
        return json.dumps(draw(fields())).encode(), "application/json"
    if kind == "form":
        return _form(draw(fields())), "application/x-www-form-urlencoded"
    if kind == "json_other":
        value = draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), weird_text))
        return json.dumps(value).encode(), "application/json"
    if kind == "nested":
        depth = draw(st.sampled_from([10, 5000, 100_000]))
        return b"[" * depth + b"]" * depth, "application/json"
    return draw(st.binary(max_size=2000)), draw(st.sampled_from(["text/html", ""]))


header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)


@st.composite
def headers(draw: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if draw(st.booleans()):
        out["Retry-After"] = draw(
            st.one_of(
                header_text,
                st.sampled_from(["\u00b2", "9" * 400, "120", "Wed, 21 Oct 2015 07:28:00 GMT"]),
            )
        )
    if draw(st.booleans()):
        out["WWW-Authenticate"] = draw(
            st.one_of(header_text, st.just("Bearer " + "a" * 60000), st.just('Bearer a="' * 9000))
        )
    return out


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[tuple[AuthServer, FakeClock]]:
    clock = FakeClock()
    with AuthServer(clock=clock) as server:
        yield server, clock


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _texts_of(exc: BaseException) -> Iterator[str]:
    yield str(exc)
    yield repr(exc)
    for name in ("body", "error", "error_description", "error_uri"):
        value = getattr(exc, name, None)
        if value is not None:
            yield str(value)
    if exc.__cause__ is not None:
        yield str(exc.__cause__)


@settings(
    max_examples=120,
    deadline=timedelta(seconds=20),  # a guard against a hang, not a measurement
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    status=st.one_of(
        st.just(200),
        st.sampled_from([200, 201, 204, 400, 401, 403, 429, 500, 503]),
        st.integers(min_value=200, max_value=599),
    ),
    body=bodies(),
    extra_headers=headers(),
)
def test_any_token_response_gives_a_token_or_a_typed_error_without_secrets(
    hostile_server: tuple[AuthServer, FakeClock],
    status: int,
    body: tuple[bytes, str],
    extra_headers: dict[str, str],
) -> None:
    server, clock = hostile_server
    content, content_type = body
    response_headers = dict(extra_headers)
    if content_type:
        response_headers["Content-Type"] = content_type
    server.set_raw_token_response(status, content, response_headers)
    server.reset_counters()
    grant = ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")
    auth = TokenAuth(grant, clock=clock, refresh_ahead="inline", max_wait_seconds=0)
    lines = _Lines()
    logger = logging.getLogger("requests_tokenauth")
    logger.addHandler(lines)
    texts: list[str] = []
    try:
        try:
            token = auth.get_token()
        except requests.RequestException as exc:
            event(type(exc).__name__)
            texts.extend(_texts_of(exc))
        else:
            event("Token")
            assert isinstance(token, Token)
            # a token is usable as a header: visible ASCII after the scheme
            token.authorization.encode("ascii")
            assert status // 100 == 2
            texts.append(repr(token))
    finally:
        logger.removeHandler(lines)
    texts.extend(lines.lines)
    for text in texts:
        assert MARK not in text, text[:300]
        assert "svc-secret" not in text
    assert all("\n" not in line for line in lines.lines)
    assert server.token_requests == 1  # one bounded attempt, nothing retried in a loop

"""Token endpoints that misbehave on purpose (issue 10 items 7, 12-18; issue 15 items 6, 7,
8, 14): every answer ends in a usable token or a typed error that carries no secret, within
bounded time, size and work."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from requests_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    MalformedTokenResponseError,
    MemoryStore,
    RefreshToken,
    Token,
    TokenAuth,
    TokenEndpointError,
    TokenRefreshError,
    UnsupportedTokenTypeError,
)
from requests_tokenauth._clock import SYSTEM_CLOCK
from requests_tokenauth._errors import redact_body
from requests_tokenauth._policy import (
    DEFAULT_POLICY,
    challenge_error,
    deadlines,
    parse_retry_after,
)
from requests_tokenauth.testing import AuthServer, FakeClock

from .helpers import run_fork_scenario, session_for
from .senders import SENDERS, sending_as

SECRET_REFRESH = "rt-0123456789-secret"


def grant_for(server: AuthServer, **kwargs: Any) -> ClientCredentials:
    return ClientCredentials(
        server.token_url, client_id="svc", client_secret="svc-secret", **kwargs
    )


def auth_for(server: AuthServer, clock: FakeClock, **options: Any) -> TokenAuth:
    """These tests are about what one answer does: callers fail at once, no waiting for the
    next attempt (``max_wait_seconds=0``)."""
    return TokenAuth(grant_for(server), clock=clock, max_wait_seconds=0, **options)


def answer(server: AuthServer, status: int, body: Any, **headers: str) -> None:
    """Make every token request get exactly this answer (a dict is sent as JSON)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode("utf-8")
    server.set_raw_token_response(
        status, body, {k.replace("_", "-"): v for k, v in headers.items()}
    )


def fetch_error(server: AuthServer, clock: FakeClock, **kwargs: Any) -> TokenEndpointError:
    with pytest.raises(requests.RequestException) as caught:
        grant_for(server, **kwargs).fetch(None, clock)
    return caught.value  # type: ignore[return-value]


# -- issue 10 item 7: fork ---------------------------------------------------------------


@pytest.mark.slow
def test_a_forked_child_opens_its_own_connection_for_token_requests() -> None:
    # a fresh interpreter forks after a token request left a keep-alive socket in the
    # grant's private session: the child must not send on the parent's socket
    assert run_fork_scenario("keepalive") == 0


# -- issue 10 item 12: total deadline and size cap ----------------------------------------


@pytest.fixture(params=SENDERS)
def sender(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every token request of the test goes out with this sender: the requests transport,
    or the httpx driver's sync or async one (each bounded the same way)."""
    with sending_as(request.param):
        yield request.param


def test_a_dripping_token_response_ends_at_the_total_deadline(
    auth_server: AuthServer, fake_clock: FakeClock, sender: str
) -> None:
    # one byte per second on the shared fake clock: the ~130-byte body takes minutes, more
    # than the default deadline (35 s)
    auth_server.drip_seconds = 1.0
    auth_server.set_token_fault("drip")
    exc = fetch_error(auth_server, fake_clock)
    assert type(exc).__name__ == "RequestDeadlineError"
    assert isinstance(exc, TokenEndpointError) and exc.retryable
    assert "deadline" in str(exc) and "svc-secret" not in str(exc)


def test_dripping_headers_end_at_the_deadline_too(
    auth_server_factory: Callable[..., AuthServer], sender: str
) -> None:
    # socket timeouts count per receive: without the private session's guard, headers
    # dripped every 50 ms would hold the request for the whole ~100 bytes of them
    server = auth_server_factory(clock=SYSTEM_CLOCK)
    server.drip_seconds = 0.05
    server.set_token_fault("drip")
    grant = grant_for(server, max_request_seconds=0.3)
    with pytest.raises(TokenEndpointError) as caught:
        grant.fetch(None, SYSTEM_CLOCK)
    assert type(caught.value).__name__ == "RequestDeadlineError"
    assert caught.value.status_code is None  # given up before the status line was complete
    server.clear_token_fault()
    assert grant.fetch(None, SYSTEM_CLOCK).token_type == "Bearer"  # the session recovers


def test_the_deadline_is_a_read_only_attribute_of_the_grant(auth_server: AuthServer) -> None:
    assert grant_for(auth_server).max_request_seconds == 35.0
    grant = grant_for(auth_server, max_request_seconds=3)
    assert grant.max_request_seconds == 3.0
    with pytest.raises(AttributeError):
        grant.max_request_seconds = 100  # type: ignore[misc]
    with pytest.raises(ConfigurationError):
        grant_for(auth_server, max_request_seconds=float("inf"))


def test_a_slow_answer_within_the_deadline_is_a_token_and_a_shorter_deadline_is_honoured(
    auth_server: AuthServer, fake_clock: FakeClock, sender: str
) -> None:
    auth_server.drip_seconds = 0.1  # the whole body takes about 13 s
    auth_server.set_token_fault("drip")
    assert grant_for(auth_server).fetch(None, fake_clock).token_type == "Bearer"
    exc = fetch_error(auth_server, fake_clock, max_request_seconds=5)
    assert type(exc).__name__ == "RequestDeadlineError"


@pytest.mark.parametrize("kind", ["huge_body", "endless_body"])
def test_a_huge_or_endless_token_response_is_refused_at_the_size_cap(
    auth_server: AuthServer, fake_clock: FakeClock, kind: str, sender: str
) -> None:
    auth_server.set_token_fault(kind)
    auth = auth_for(auth_server, fake_clock, store=MemoryStore())
    with pytest.raises(TokenEndpointError) as caught:
        auth.get_token()
    assert type(caught.value).__name__ == "ResponseTooLargeError"
    assert "1048576" in str(caught.value)
    assert caught.value.body is None  # nothing of it kept
    auth_server.clear_token_fault()
    fake_clock.advance(60)  # past the backoff
    token = auth.get_token()
    assert "padding" not in token.extra


def test_an_answer_under_the_cap_is_read_whole(
    auth_server: AuthServer, fake_clock: FakeClock, sender: str
) -> None:
    auth_server.huge_body_bytes = 900_000
    auth_server.set_token_fault("huge_body", count=1)
    token = grant_for(auth_server).fetch(None, fake_clock)
    assert len(token.extra["padding"]) == 900_000


# -- issue 10 item 13: WWW-Authenticate parsing -------------------------------------------


def test_a_challenge_past_the_length_cap_is_not_read() -> None:
    header = 'Bearer realm="' + "x" * 5000 + '", error="insufficient_scope"'
    assert challenge_error(header) is None
    assert challenge_error('Bearer realm="x", error="insufficient_scope"') == "insufficient_scope"


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ('Bearer error="a\\"b", x=1', 'a"b'),
        ("Bearer error=invalid_token,scope=x", "invalid_token"),
        ('DPoP algs="ES256", error="use_dpop_nonce"', "use_dpop_nonce"),
        ('Bearer error="unterminated', "unterminated"),
        ("Bearer token68==", None),
        ("Basic realm=x, Bearer error=e", "e"),
    ],
)
def test_challenge_parameters(header: str, error: str) -> None:
    assert challenge_error(header) == error


HOSTILE_CHALLENGES = [
    "Bearer " + "a" * 4000,
    'Bearer a="' + 'b="' * 1300,
    "Bearer " + "a=" * 2000,
    "Bearer " + "a " * 2000,
    "Bearer " + 'a="\\' * 1000,
]


class CountingStr(str):
    """Counts every index and slice the parser takes."""

    reads = 0

    def __getitem__(self, key: Any) -> str:
        CountingStr.reads += 1
        return str.__getitem__(self, key)


@pytest.mark.parametrize("header", HOSTILE_CHALLENGES)
def test_challenge_parsing_reads_each_character_a_bounded_number_of_times(header: str) -> None:
    from requests_tokenauth import _policy

    CountingStr.reads = 0
    _policy._auth_params(CountingStr(header))
    assert CountingStr.reads <= 4 * len(header)


def test_a_huge_hostile_challenge_costs_nothing() -> None:
    # the old regex backtracked quadratically: "Bearer " + "a" * 60000 took ~25-34 s of
    # CPU holding the GIL, so a thread cannot guard it: a fresh interpreter with a timeout
    code = (
        "from requests_tokenauth._policy import challenge_error as c\n"
        "assert c('Bearer ' + 'a' * 120000) is None\n"
        "assert c('Bearer a=\"' + 'b=\"' * 60000) is None\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=30,  # a guard against a hang, not a measurement
        check=False,
    )
    assert done.returncode == 0


# -- issue 10 item 14: numbers that do not fit -------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"expires_in": 1e308},
        {"expires_in": 10**20},
        {"expires_in": "1e400"},
    ],
)
def test_huge_lifetimes_are_a_typed_error(
    auth_server: AuthServer, fake_clock: FakeClock, fields: dict[str, Any]
) -> None:
    answer(auth_server, 200, {"access_token": "abc", "token_type": "Bearer", **fields})
    exc = fetch_error(auth_server, fake_clock)
    assert isinstance(exc, MalformedTokenResponseError)
    assert "expires_in" in str(exc)
    auth_server.reset_counters()
    auth = auth_for(auth_server, fake_clock)
    for _ in range(3):
        with pytest.raises(MalformedTokenResponseError):
            auth.get_token()
    assert auth_server.token_requests == 1  # remembered with a backoff, not retried per call


def test_a_huge_refresh_in_hint_is_no_error() -> None:
    token = Token.from_response(
        {"access_token": "a", "expires_in": 100, "refresh_in": 10**400},
        obtained_monotonic=0.0,
        obtained_at=0.0,
    )
    assert deadlines(token, DEFAULT_POLICY, 0.0).expired_monotonic == 95.0


@pytest.mark.parametrize("field", ["expires_at", "expires_in"])
def test_a_given_token_with_a_huge_number_is_a_configuration_error(
    auth_server: AuthServer, fake_clock: FakeClock, field: str
) -> None:
    saved = {"access_token": "abc", "token_type": "Bearer", field: 10**400}
    with pytest.raises(ConfigurationError, match=field):
        auth_for(auth_server, fake_clock, token=saved)


def test_a_stored_token_with_a_huge_number_is_logged_and_replaced(
    auth_server: AuthServer, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    auth = auth_for(auth_server, fake_clock, store=store)
    store.save(auth.manager._key, {"access_token": "abc", "expires_at": 10**400})
    token = auth.get_token()
    assert token.access_token != "abc"
    assert auth_server.token_requests == 1
    assert any("unusable" in r.getMessage() for r in caplog.records)


# -- issue 10 item 15, issue 15 item 14: what a header can carry --------------------------


@pytest.mark.parametrize(
    "access_token", ["tok\u00e9n", "tok\u4e00", "a\x00b", "a\tb", " lead", "trail ", "a b"]
)
def test_an_access_token_a_header_cannot_carry_is_refused(
    auth_server: AuthServer, fake_clock: FakeClock, access_token: str
) -> None:
    answer(auth_server, 200, {"access_token": access_token, "token_type": "Bearer"})
    auth = auth_for(auth_server, fake_clock)
    session = session_for(auth)
    with pytest.raises(MalformedTokenResponseError) as caught:
        session.get(auth_server.resource_url)
    assert access_token not in str(caught.value)
    assert access_token.strip() not in (caught.value.body or "")


def test_visible_ascii_tokens_are_accepted(auth_server: AuthServer, fake_clock: FakeClock) -> None:
    answer(auth_server, 200, {"access_token": "app-1|s3cr3t:x~y/z+=", "token_type": "bearer"})
    token = grant_for(auth_server).fetch(None, fake_clock)
    assert token.authorization == "Bearer app-1|s3cr3t:x~y/z+="


@pytest.mark.parametrize(
    "saved",
    [
        {"access_token": "abc", "token_type": "Bearer\r\nX-Folded: 1"},
        {"access_token": "abc", "token_type": "Bearer x"},
        {"access_token": "abc", "token_type": "B\u00e9arer"},
        {"access_token": "ab\u00e9c", "token_type": "Bearer"},
    ],
)
def test_a_given_token_is_held_to_the_same_rules(
    auth_server: AuthServer, fake_clock: FakeClock, saved: dict[str, str]
) -> None:
    with pytest.raises(ConfigurationError):
        auth_for(auth_server, fake_clock, token=saved)


def test_a_stored_token_type_that_would_fold_the_header_is_replaced(
    auth_server: AuthServer, fake_clock: FakeClock
) -> None:
    store = MemoryStore()
    auth = auth_for(auth_server, fake_clock, store=store)
    store.save(auth.manager._key, {"access_token": "abc", "token_type": "Bearer\r\n X: 1"})
    response = session_for(auth).get(auth_server.resource_url)
    assert response.status_code == 200
    assert auth.get_token().token_type == "Bearer"


# -- issue 10 items 16 and 17: zero is a number ------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"access_token": "abc", "token_type": "Bearer", "expires_in": 0}', "application/json"),
        ("access_token=abc&token_type=Bearer&expires_in=0", "application/x-www-form-urlencoded"),
    ],
)
def test_expires_in_zero_means_already_expired(
    auth_server: AuthServer, fake_clock: FakeClock, body: str, content_type: str
) -> None:
    answer(auth_server, 200, body, Content_Type=content_type)
    token = grant_for(auth_server).fetch(None, fake_clock)
    assert token.expires_in_seconds == 0.0
    assert token.expires_at == fake_clock.time()


def test_a_token_without_lifetime_still_has_none(
    auth_server: AuthServer, fake_clock: FakeClock
) -> None:
    answer(auth_server, 200, {"access_token": "abc", "token_type": "Bearer"})
    assert grant_for(auth_server).fetch(None, fake_clock).expires_in_seconds is None


def test_refresh_in_zero_does_not_make_every_request_refresh(
    auth_server: AuthServer, fake_clock: FakeClock
) -> None:
    answer(
        auth_server,
        200,
        {"access_token": "abc", "token_type": "Bearer", "expires_in": 3600, "refresh_in": 0},
    )
    auth = auth_for(auth_server, fake_clock, refresh_ahead="inline")
    for _ in range(50):
        auth.get_token()
    assert auth_server.token_requests == 1
    fake_clock.advance(60)  # the floor: min(60 s, half the lifetime)
    auth.get_token()
    assert auth_server.token_requests == 2


def test_the_refresh_in_floor_is_half_a_short_lifetime() -> None:
    token = Token.from_response(
        {"access_token": "a", "expires_in": 40, "refresh_in": 0},
        obtained_monotonic=0.0,
        obtained_at=0.0,
    )
    assert deadlines(token, DEFAULT_POLICY, 0.0).stale_monotonic == 20.0


# -- issue 10 item 18, issue 15 item 8: redaction ---------------------------------------


def test_a_form_encoded_token_response_is_redacted_in_the_error(
    auth_server: AuthServer, fake_clock: FakeClock
) -> None:
    body = f"access_token=at-secret-1&refresh_token={SECRET_REFRESH}&token_type=mac"
    answer(auth_server, 200, body, Content_Type="application/x-www-form-urlencoded")
    exc = fetch_error(auth_server, fake_clock)
    assert isinstance(exc, UnsupportedTokenTypeError)  # "mac": terminal, names the hooks
    assert "at-secret-1" not in (exc.body or "") and SECRET_REFRESH not in (exc.body or "")
    assert "token_type=mac" in (exc.body or "")


@pytest.mark.parametrize(
    "body",
    [
        {"error": "invalid_grant", "details": {"refresh_token": SECRET_REFRESH}},
        {"error": "invalid_grant", "Access_Token": SECRET_REFRESH},
        {"error": "invalid_grant", "list": [{"REFRESH_TOKEN": SECRET_REFRESH}]},
        {"error": "invalid_grant", "error_description": f"refresh token {SECRET_REFRESH} revoked"},
    ],
)
def test_nested_cased_and_echoed_secrets_are_redacted(
    auth_server: AuthServer, fake_clock: FakeClock, body: dict[str, Any]
) -> None:
    answer(auth_server, 400, body)
    grant = RefreshToken(
        auth_server.token_url,
        client_id="app",
        client_secret="app-secret",
        refresh_token=SECRET_REFRESH,
    )
    with pytest.raises(TokenRefreshError) as caught:
        grant.fetch(None, fake_clock)
    exc = caught.value
    assert exc.error == "invalid_grant"
    for text in (str(exc), exc.body or "", exc.error_description or "", repr(exc.args)):
        assert SECRET_REFRESH not in text


def test_a_truncated_json_body_is_redacted_too() -> None:
    text = '{"token_type": "Bearer", "access_token": "at-secret-2", "refresh_tok'
    assert "at-secret-2" not in redact_body(text)


# -- issue 15 item 6: Retry-After ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("\u00b2", None), ("\u0663", None), ("12", 12.0), (" 3 ", 3.0), ("9" * 400, None)],
)
def test_retry_after_reads_ascii_digits_only(value: str, seconds: Any) -> None:
    assert parse_retry_after(value, now=0.0) == seconds


def test_a_unicode_digit_retry_after_is_a_typed_error_with_backoff(
    auth_server: AuthServer, fake_clock: FakeClock
) -> None:
    auth_server.set_token_fault("503", retry_after="\u00b2")
    auth = auth_for(auth_server, fake_clock)
    for _ in range(3):
        with pytest.raises(TokenEndpointError):
            auth.get_token()
    assert auth_server.token_requests == 1  # the backoff holds the next attempt


# -- issue 15 item 7: log injection -------------------------------------------------------


def test_an_error_code_with_a_line_break_cannot_forge_a_log_line(
    auth_server: AuthServer, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "invalid_grant\nWARNING requests_tokenauth forged line"
    answer(
        auth_server,
        400,
        {"error": forged, "error_description": "bad\r\nX: y", "error_uri": "http://x/\n"},
    )
    events: list[Any] = []
    auth = auth_for(auth_server, fake_clock, on_event=events.append)
    with caplog.at_level(logging.DEBUG), pytest.raises(TokenRefreshError) as caught:
        auth.get_token()
    exc = caught.value
    for text in (str(exc), exc.error, exc.error_description, exc.error_uri):
        assert text is not None and "\n" not in text and "\r" not in text
    assert exc.error == "invalid_grant%0AWARNING requests_tokenauth forged line"
    assert all("\n" not in r.getMessage() for r in caplog.records if "forged" in r.getMessage())
    assert all("\n" not in repr(e) for e in events)

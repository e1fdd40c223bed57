"""Pure decisions: deadlines, backoff, Retry-After, and whether a 401 deserves a retry."""

from __future__ import annotations

import math

import pytest

from requests_tokenauth import RefreshPolicy, Token, TokenState
from requests_tokenauth._policy import (
    Rejection,
    after_unauthorized,
    backoff_seconds,
    challenge_error,
    deadlines,
    parse_retry_after,
    should_retry_unauthorized,
)

NO_JITTER = RefreshPolicy(refresh_jitter_fraction=0.0)


def token(lifetime: float | None, **extra: object) -> Token:
    data: dict = {"access_token": "a", **extra}
    if lifetime is not None:
        data["expires_in"] = lifetime
    return Token.from_response(data, obtained_monotonic=0.0, obtained_at=0.0)


@pytest.mark.parametrize(
    ("lifetime", "stale", "expired"),
    [
        (3600, 3600 - 5 - 60, 3600 - 5),  # margin capped at a minute
        (100, 100 - 5 - 25, 100 - 5),  # a quarter of the lifetime
        (59, 59 - 5 - 14.75, 59 - 5),  # a 59 s token is not "always stale" (authlib#716)
        (10, 10 - 1 - 2.5, 10 - 1),  # skew at most a tenth of the lifetime
        (0, 0, 0),
    ],
)
def test_deadlines_from_lifetime(lifetime: float, stale: float, expired: float) -> None:
    d = deadlines(token(lifetime), NO_JITTER, draw=0.0)
    assert d.stale_monotonic == pytest.approx(stale)
    assert d.expired_monotonic == pytest.approx(expired)


def test_margin_never_exceeds_half_the_lifetime() -> None:
    policy = RefreshPolicy(
        refresh_fraction=0.5, refresh_margin_max_seconds=1e9, refresh_jitter_fraction=0
    )
    d = deadlines(token(60), policy, draw=0.0)
    assert d.stale_monotonic >= (60 - 5) - 30
    with pytest.raises(ValueError, match="refresh_fraction"):
        RefreshPolicy(refresh_fraction=0.6)


def test_jitter_shortens_the_margin_by_the_draw() -> None:
    policy = RefreshPolicy(refresh_jitter_fraction=0.2)
    early = deadlines(token(3600), policy, draw=0.0).stale_monotonic
    late = deadlines(token(3600), policy, draw=0.5).stale_monotonic
    assert early == pytest.approx(3595 - 60)
    assert late == pytest.approx(3595 - 60 * 0.9)


def test_server_refresh_in_hint_moves_refresh_earlier() -> None:
    d = deadlines(token(3600, refresh_in=1800), NO_JITTER, draw=0.0)
    assert d.stale_monotonic == 1800
    assert d.expired_monotonic == 3595


def test_no_lifetime_never_goes_stale() -> None:
    d = deadlines(token(None), NO_JITTER, draw=0.0)
    assert d.stale_monotonic == math.inf
    assert d.classify(1e12) is TokenState.FRESH


def test_classify() -> None:
    d = deadlines(token(100), NO_JITTER, draw=0.0)  # stale at 70, expired at 95
    assert [d.classify(t) for t in (0, 69.9, 70, 94.9, 95, 1000)] == [
        TokenState.FRESH,
        TokenState.FRESH,
        TokenState.STALE,
        TokenState.STALE,
        TokenState.EXPIRED,
        TokenState.EXPIRED,
    ]


@pytest.mark.parametrize(
    ("failures", "draw", "retry_after", "expected"),
    [
        (0, 0.5, None, 0.0),
        (1, 1.0, None, 1.0),
        (2, 1.0, None, 2.0),
        (3, 0.5, None, 2.0),
        (10, 1.0, None, 60.0),  # capped
        (1, 0.0, 30.0, 30.0),  # Retry-After wins over a shorter step
        (7, 1.0, 5.0, 60.0),
    ],
)
def test_backoff_full_jitter_capped(
    failures: int, draw: float, retry_after: float | None, expected: float
) -> None:
    assert backoff_seconds(failures, RefreshPolicy(), draw, retry_after) == expected


def test_deadlines_keep_the_nominal_expiry_past_the_skew() -> None:
    d = deadlines(token(100), NO_JITTER, draw=0.0)  # expired (skewed) at 95, nominal 100
    assert (d.expired_monotonic, d.nominal_expiry_monotonic) == (95, 100)
    assert [d.left_seconds(t) for t in (90, 95, 99.5, 100, 200)] == [10, 5, 0.5, 0, 0]
    assert deadlines(token(None), NO_JITTER, draw=0.0).nominal_expiry_monotonic == math.inf


def test_backoff_with_a_valid_token_never_runs_past_its_expiry() -> None:
    policy = RefreshPolicy()
    assert backoff_seconds(8, policy, 1.0, token_left_seconds=math.inf) == 60.0
    assert backoff_seconds(8, policy, 1.0, token_left_seconds=3.0) == 3.0
    assert backoff_seconds(2, policy, 0.5, token_left_seconds=3.0) == 1.0
    assert backoff_seconds(8, policy, 1.0, 30.0, token_left_seconds=3.0) == 30.0  # Retry-After


@pytest.mark.parametrize("failures", [1, 2, 8, 1000])
def test_without_a_valid_token_transient_failures_are_probed_every_half_second(
    failures: int,
) -> None:
    policy = RefreshPolicy()
    waits = [backoff_seconds(failures, policy, d, token_left_seconds=0.0) for d in (0, 0.5, 1)]
    assert waits == pytest.approx([0.4, 0.45, 0.5])  # recovery seen within 0.5 s, <= 2.5/s
    assert backoff_seconds(failures, policy, 0.0, 7.0, token_left_seconds=0.0) == 7.0


def test_without_a_valid_token_terminal_failures_back_off_to_the_lower_cap() -> None:
    policy = RefreshPolicy()
    terminal = {"token_left_seconds": 0.0, "retryable": False}
    assert backoff_seconds(1, policy, 1.0, **terminal) == 1.0
    assert backoff_seconds(8, policy, 1.0, **terminal) == 2.0
    assert backoff_seconds(8, policy, 0.5, **terminal) == 1.0


def test_probe_interval_must_be_positive() -> None:
    assert RefreshPolicy(probe_interval_seconds=0.2).probe_interval_seconds == 0.2
    with pytest.raises(ValueError, match="probe_interval_seconds"):
        RefreshPolicy(probe_interval_seconds=0)


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("120", now=0) == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert parse_retry_after(None, now=0) is None
    assert parse_retry_after("soon", now=0) is None


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ('Bearer realm="x", error="invalid_token", error_description="expired"', "invalid_token"),
        ('Bearer error="insufficient_scope", scope="admin"', "insufficient_scope"),
        ("Bearer error=invalid_token", "invalid_token"),
        ('Bearer realm="x"', None),
        (None, None),
    ],
)
def test_challenge_error(header: str | None, error: str | None) -> None:
    assert challenge_error(header) == error


@pytest.mark.parametrize(
    ("kwargs", "retry"),
    [
        ({}, True),
        ({"status_code": 403}, False),
        ({"already_retried": True}, False),
        ({"sent_token": False}, False),
        ({"body_replayable": False}, False),
        ({"www_authenticate": 'Bearer error="insufficient_scope"'}, False),
        ({"www_authenticate": 'Bearer error="invalid_token"'}, True),
    ],
)
def test_should_retry_unauthorized(kwargs: dict, retry: bool) -> None:
    args = {
        "status_code": 401,
        "www_authenticate": 'Bearer realm="x"',
        "already_retried": False,
        "sent_token": True,
        "body_replayable": True,
    }
    assert should_retry_unauthorized(**{**args, **kwargs}) is retry


@pytest.mark.parametrize(
    ("kwargs", "verdict"),
    [
        ({}, Rejection.RETRY),
        ({"status_code": 403}, Rejection.IGNORE),
        ({"status_code": 403, "refresh_status_codes": {401, 403}}, Rejection.RETRY),
        ({"status_code": 401, "refresh_status_codes": {403}}, Rejection.IGNORE),
        ({"body_replayable": False}, Rejection.REPLACE),
        ({"body_replayable": False, "already_retried": True}, Rejection.IGNORE),
        ({"body_replayable": False, "sent_token": False}, Rejection.IGNORE),
        ({"www_authenticate": 'Bearer error="insufficient_scope"'}, Rejection.IGNORE),
        (
            {
                "status_code": 403,
                "refresh_status_codes": {401, 403},
                "www_authenticate": 'Bearer error="insufficient_scope"',
            },
            Rejection.IGNORE,
        ),
    ],
)
def test_after_unauthorized(kwargs: dict, verdict: Rejection) -> None:
    args = {
        "status_code": 401,
        "www_authenticate": 'Bearer error="invalid_token"',
        "already_retried": False,
        "sent_token": True,
        "body_replayable": True,
    }
    assert after_unauthorized(**{**args, **kwargs}) is verdict

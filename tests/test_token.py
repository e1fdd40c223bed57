"""Token: parsing a response, loading saved dicts, the dict form, and a repr without secrets."""

from __future__ import annotations

import pytest

from requests_tokenauth import Token
from requests_tokenauth._token import TokenFormatError

SENT_MONO = 500.0
SENT_AT = 1_800_000_000.0


def from_response(data: dict, **kw) -> Token:
    return Token.from_response(data, obtained_monotonic=SENT_MONO, obtained_at=SENT_AT, **kw)


def test_lifetime_counts_from_when_the_request_was_sent() -> None:
    token = from_response({"access_token": "a", "token_type": "bearer", "expires_in": 60})
    assert token.expires_monotonic == SENT_MONO + 60
    assert token.expires_at == SENT_AT + 60
    assert token.token_type == "Bearer"
    assert token.authorization == "Bearer a"


def test_missing_lifetime_means_no_expiry() -> None:
    token = from_response({"access_token": "a"})
    assert token.expires_monotonic is None and token.expires_at is None
    assert token.token_type == "Bearer"


def test_refresh_token_kept_when_a_refresh_response_omits_it() -> None:
    token = from_response({"access_token": "a", "expires_in": 5}, previous_refresh_token="old")
    assert token.refresh_token == "old"
    rotated = from_response(
        {"access_token": "a", "refresh_token": "new"}, previous_refresh_token="old"
    )
    assert rotated.refresh_token == "new"


def test_scope_from_response_or_the_request() -> None:
    assert from_response({"access_token": "a", "scope": "read write"}).scope == ("read", "write")
    assert from_response({"access_token": "a"}, requested_scope=("read",)).scope == ("read",)
    assert from_response({"access_token": "a", "scope": ["x"]}).scope == ("x",)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "access_token"),
        ({"access_token": ""}, "access_token"),
        ({"access_token": 12}, "access_token"),
        ({"access_token": "a\r\nX-Evil: 1"}, "line break"),
        ({"access_token": "a", "expires_in": -5}, "negative"),
        ({"access_token": "a", "expires_in": "soon"}, "expires_in"),
        ({"access_token": "a", "expires_in": True}, "expires_in"),
        ({"access_token": "a", "expires_in": float("nan")}, "expires_in"),
        ({"access_token": "a", "token_type": 3}, "token_type"),
        ({"access_token": "a", "refresh_token": 3}, "refresh_token"),
        ({"access_token": "a", "scope": 3}, "scope"),
    ],
)
def test_unusable_responses_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(TokenFormatError, match=field):
        from_response(data)


def test_numeric_string_lifetime_is_accepted() -> None:
    assert from_response({"access_token": "a", "expires_in": "30"}).expires_in_seconds == 30.0


def test_extra_fields_are_kept_read_only() -> None:
    token = from_response({"access_token": "a", "id_token": "j", "audience": "api"})
    assert token.extra["audience"] == "api"
    with pytest.raises(TypeError):
        token.extra["audience"] = "other"  # type: ignore[index]
    with pytest.raises(AttributeError):
        token.access_token = "b"  # type: ignore[misc]


def test_repr_hides_every_secret() -> None:
    token = from_response(
        {"access_token": "SECRET-AT", "refresh_token": "SECRET-RT", "expires_in": 60}
    )
    text = repr(token) + str(token)
    assert "SECRET" not in text
    assert token.fingerprint in text
    assert "<redacted>" in text


def test_requests_oauthlib_dict_with_expires_at_loads_with_its_remaining_life() -> None:
    now, now_mono = SENT_AT + 100, SENT_MONO + 100
    saved = {
        "access_token": "a",
        "token_type": "Bearer",
        "expires_in": 3600,
        "expires_at": SENT_AT + 3600,  # issued at SENT_AT, 100 s ago
        "refresh_token": "r",
        "scope": ["read"],
    }
    token = Token.from_dict(saved, now_monotonic=now_mono, now=now)
    assert token.expires_monotonic == pytest.approx(now_mono + 3500)
    assert token.expires_in_seconds == 3600
    assert token.refresh_token == "r"
    assert token.scope == ("read",)


def test_authlib_dict_with_only_expires_at_loads() -> None:
    saved = {"access_token": "a", "token_type": "bearer", "expires_at": SENT_AT + 50}
    token = Token.from_dict(saved, now_monotonic=SENT_MONO, now=SENT_AT)
    assert token.expires_monotonic == pytest.approx(SENT_MONO + 50)


def test_dict_with_only_expires_in_counts_from_now() -> None:
    token = Token.from_dict({"access_token": "a", "expires_in": 10}, now_monotonic=7.0, now=9.0)
    assert token.expires_monotonic == 17.0


def test_to_dict_round_trips_through_from_dict() -> None:
    token = from_response(
        {"access_token": "a", "expires_in": 60, "refresh_token": "r", "scope": "read", "aud": "x"}
    )
    saved = token.to_dict()
    assert saved == {
        "access_token": "a",
        "token_type": "Bearer",
        "expires_in": 60.0,
        "expires_at": SENT_AT + 60,
        "refresh_token": "r",
        "scope": "read",
        "aud": "x",
    }
    again = Token.from_dict(saved, now_monotonic=SENT_MONO + 10, now=SENT_AT + 10)
    assert again.expires_monotonic == pytest.approx(token.expires_monotonic)
    assert again.to_dict() == saved


def test_token_pickles() -> None:
    import pickle

    token = from_response({"access_token": "a", "expires_in": 5, "aud": "x"})
    copy = pickle.loads(pickle.dumps(token))
    assert copy.to_dict() == token.to_dict()
    assert copy.extra["aud"] == "x"

"""Token: an immutable snapshot of one token response."""

from __future__ import annotations

import hashlib
import math
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

#: Fields the dict form owns; everything else a response carried is kept in ``extra``.
_KNOWN_FIELDS = frozenset(
    {"access_token", "token_type", "refresh_token", "scope", "expires_in", "expires_at"}
)


#: Lifetimes and expiry instants above this many seconds are refused: they could not be
#: turned into a date, a Redis TTL in milliseconds or an int64 (year 5138 is far enough).
MAX_SECONDS = 1e11

#: Visible ASCII (RFC 5234 ``VCHAR``): what an access token may hold. Anything else (a space,
#: a tab, NUL, a non-ASCII letter) would break or fold the header, or raise a
#: ``UnicodeEncodeError`` holding the token on every request. This is wider than RFC 6750's
#: ``b64token`` because real servers issue tokens such as ``app-id|secret``.
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")

#: RFC 9110 section 5.6.2 ``token``: what an authentication scheme (``token_type``) may be.
_HTTP_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class FrozenSlots:
    """Pickling for frozen dataclasses that declare ``__slots__`` by hand (3.9 has no
    ``slots=True``): the default slot restore would trip the frozen ``__setattr__``."""

    __slots__ = ()

    def __getstate__(self) -> dict[str, Any]:
        names: tuple[str, ...] = self.__slots__
        return {name: getattr(self, name) for name in names}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)


class TokenFormatError(ValueError):
    """A token response or saved token dict is not usable (the message names the field)."""


@dataclass(frozen=True, eq=False)
class Token(FrozenSlots):
    """One access token, as the token endpoint issued it. Immutable, so thread-safe.

    Lifetimes count from ``obtained_monotonic``, captured before the token request went out.
    Compare tokens with ``is``: two snapshots are the same token only if they are the same
    object, which is what the 401 guard relies on.

    :ivar access_token: the secret sent to resources; never shown by ``repr``.
    :ivar token_type: ``"Bearer"`` or ``"DPoP"`` (normalised), or another type the server
        issued.
    :ivar refresh_token: the refresh token, if any; never shown by ``repr``.
    :ivar scope: the granted scope, or ``None`` when unknown.
    :ivar obtained_monotonic: monotonic instant the lifetime counts from.
    :ivar expires_in_seconds: the lifetime, or ``None`` when the server gave none.
    :ivar expires_at: wall-clock expiry in epoch seconds (what stores persist), or ``None``.
    :ivar extra: every other field of the response, read-only.
    """

    __slots__ = (
        "access_token",
        "token_type",
        "refresh_token",
        "scope",
        "obtained_monotonic",
        "expires_in_seconds",
        "expires_at",
        "extra",
    )

    access_token: str
    token_type: str
    refresh_token: Optional[str]
    scope: Optional[tuple[str, ...]]
    obtained_monotonic: float
    expires_in_seconds: Optional[float]
    expires_at: Optional[float]
    extra: Mapping[str, Any]

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["extra"] = dict(self.extra)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__({**state, "extra": types.MappingProxyType(dict(state["extra"]))})

    @property
    def expires_monotonic(self) -> Optional[float]:
        """Monotonic instant the token expires, or ``None`` if the server gave no lifetime."""
        if self.expires_in_seconds is None:
            return None
        return self.obtained_monotonic + self.expires_in_seconds

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value, e.g. ``"Bearer <access token>"``."""
        return f"{self.token_type} {self.access_token}"

    @property
    def fingerprint(self) -> str:
        """A short, non-reversible label of the access token, safe to log."""
        return hashlib.sha256(self.access_token.encode("utf-8")).hexdigest()[:12]

    def __repr__(self) -> str:
        return (
            f"Token(token_type={self.token_type!r}, fingerprint={self.fingerprint!r}, "
            f"expires_at={self.expires_at!r}, scope={self.scope!r}, "
            f"refresh_token={'<redacted>' if self.refresh_token else None})"
        )

    @classmethod
    def from_response(
        cls,
        data: Mapping[str, Any],
        *,
        obtained_monotonic: float,
        obtained_at: float,
        requested_scope: Optional[tuple[str, ...]] = None,
        previous_refresh_token: Optional[str] = None,
    ) -> Token:
        """Build a token from a parsed token response (RFC 6749 §5.1).

        :param obtained_monotonic: monotonic instant the token request was sent.
        :param obtained_at: wall-clock instant the token request was sent.
        :param requested_scope: the scope asked for, used when the response names none.
        :param previous_refresh_token: kept when a refresh response omits a new one.
        :raises TokenFormatError: a field is missing or of the wrong kind, an access token
            holds anything but visible ASCII, a ``token_type`` is not an HTTP scheme name,
            or a lifetime or expiry is not a finite number of at most ``MAX_SECONDS`` (1e11).
        """
        expires_in = _lifetime(data.get("expires_in"))
        return cls(
            access_token=_access_token(data.get("access_token")),
            token_type=_token_type(data.get("token_type")),
            refresh_token=_optional_str(data.get("refresh_token"), "refresh_token")
            or previous_refresh_token,
            scope=_scope(data.get("scope")) or requested_scope,
            obtained_monotonic=obtained_monotonic,
            expires_in_seconds=expires_in,
            expires_at=None if expires_in is None else obtained_at + expires_in,
            extra=_extra(data),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, now_monotonic: float, now: float) -> Token:
        """Load a saved token dict, as requests-oauthlib, Authlib or :meth:`to_dict` wrote it.

        ``expires_at`` (epoch seconds) wins over ``expires_in``; a dict with only
        ``expires_in`` is taken to have been issued just now.

        :raises TokenFormatError: a field is missing or of the wrong kind, an access token
            holds anything but visible ASCII, a ``token_type`` is not an HTTP scheme name,
            or a lifetime or expiry is not a finite number of at most ``MAX_SECONDS`` (1e11).
        """
        expires_at = _epoch(data.get("expires_at"))
        if expires_at is None:
            return cls.from_response(data, obtained_monotonic=now_monotonic, obtained_at=now)
        lifetime = _lifetime(data.get("expires_in"))
        if lifetime is None:
            lifetime = max(0.0, expires_at - now)
        obtained_at = expires_at - lifetime
        return cls(
            access_token=_access_token(data.get("access_token")),
            token_type=_token_type(data.get("token_type")),
            refresh_token=_optional_str(data.get("refresh_token"), "refresh_token"),
            scope=_scope(data.get("scope")),
            obtained_monotonic=now_monotonic - (now - obtained_at),
            expires_in_seconds=lifetime,
            expires_at=expires_at,
            extra=_extra(data),
        )

    def to_dict(self) -> dict[str, Any]:
        """The token as the dict requests-oauthlib and Authlib persist (a new dict each call).

        Holds secrets: store it as carefully as a password.
        """
        out: dict[str, Any] = dict(self.extra)
        out["access_token"] = self.access_token
        out["token_type"] = self.token_type
        if self.expires_in_seconds is not None:
            out["expires_in"] = self.expires_in_seconds
            out["expires_at"] = self.expires_at
        if self.refresh_token is not None:
            out["refresh_token"] = self.refresh_token
        if self.scope is not None:
            out["scope"] = " ".join(self.scope)
        return out


def _access_token(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TokenFormatError("the token response has no access_token")
    if any(c in value for c in "\r\n"):
        raise TokenFormatError("the access_token contains a line break")
    if not _VISIBLE_ASCII.fullmatch(value):
        raise TokenFormatError(
            "the access_token has characters a header cannot carry (only visible ASCII)"
        )
    return value


def _token_type(value: object) -> str:
    if value is None:
        return "Bearer"  # RFC 6749 makes it required; servers that omit it mean Bearer
    if not isinstance(value, str) or not value:
        raise TokenFormatError("token_type must be a non-empty string")
    if len(value) > 64 or not _HTTP_TOKEN.fullmatch(value):
        raise TokenFormatError("token_type is not an HTTP authentication scheme name")
    # the scheme is case-insensitive (RFC 6750 section 4.2, RFC 9449 section 5)
    return {"bearer": "Bearer", "dpop": "DPoP"}.get(value.lower(), value)


def _optional_str(value: object, name: str) -> Optional[str]:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TokenFormatError(f"{name} must be a string")
    return value


def _number(value: object, name: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TokenFormatError(f"{name} must be a number")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise TokenFormatError(f"{name} must be a number") from None
    if not isinstance(value, (int, float)):
        raise TokenFormatError(f"{name} must be a finite number")
    try:
        seconds = float(value)  # an int past 1e308 raises OverflowError
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds) or abs(seconds) > MAX_SECONDS:
        raise TokenFormatError(f"{name} must be a finite number of at most {MAX_SECONDS:.0e}")
    return seconds


def _lifetime(value: object) -> Optional[float]:
    seconds = _number(value, "expires_in")
    if seconds is not None and seconds < 0:
        raise TokenFormatError("expires_in must not be negative")
    return seconds


def _epoch(value: object) -> Optional[float]:
    return _number(value, "expires_at")


def _scope(value: object) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise TokenFormatError("scope must be a string or a list of strings")


def _extra(data: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType({k: v for k, v in data.items() if k not in _KNOWN_FIELDS})

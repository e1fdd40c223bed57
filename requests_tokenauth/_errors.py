"""The exception tree. Every error is a :class:`requests.exceptions.RequestException`.

Messages never carry a token or a secret: a token endpoint's body is kept (truncated, with
token fields redacted at any depth, in any case, JSON or form) on
:attr:`TokenRefreshError.body` for diagnosis, never in ``str()``. What the endpoint says in
its own words (``error``, ``error_description``, ``error_uri``) is kept to RFC 6749 §5.2's
characters, so it cannot forge a log line.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable
from typing import Optional

import requests

#: How much of a token endpoint's body an error keeps, in characters.
DEFAULT_BODY_LIMIT = 512

#: How much of an endpoint's ``error``, ``error_description`` or ``error_uri`` an error keeps.
DEFAULT_FIELD_LIMIT = 256

#: Field names whose values are secrets, compared case-insensitively at any depth.
_SECRET_FIELDS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "issued_token",
        "client_secret",
        "client_assertion",
        "assertion",
        "device_code",
        "code_verifier",
        "subject_token",
        "actor_token",
        "password",
        "token",
    }
)

_REDACTED = "<redacted>"

#: Request fields whose values an endpoint must not see echoed in an error we keep.
_SENT_SECRET_FIELDS = _SECRET_FIELDS | {"code"}

#: A secret field in text that did not parse (cut short, or neither JSON nor a form):
#: ``"name": "value`` or ``name=value``, the name in any case.
_SECRET_NAMES = "|".join(sorted(_SECRET_FIELDS, key=len, reverse=True))
_SECRET_IN_TEXT = re.compile(
    rf"""(?i)(["']?\b(?:{_SECRET_NAMES})["']?\s*[:=]\s*["']?)([^"'&,}}\s]*)"""
)

#: RFC 6749 section 5.2: ``error``, ``error_description`` and ``error_uri`` hold only
#: %x20-21 / %x23-5B / %x5D-7E. Anything else (a line break that would forge a log line, a
#: quote, a non-ASCII letter) is percent-encoded, which leaves a safe value unchanged.
_ERROR_FIELD_CHARS = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\')


class TokenAuthError(requests.exceptions.RequestException):
    """Base of every error raised by requests-tokenauth.

    :ivar next_attempt_in_seconds: set when this failure was remembered: how long until the
        next attempt may go out.
    :ivar waited_seconds: set when the caller waited for a token (``max_wait_seconds``)
        before getting this error: how long it waited.
    """

    next_attempt_in_seconds: Optional[float] = None
    waited_seconds: Optional[float] = None


class ConfigurationError(TokenAuthError, ValueError):
    """An argument is wrong, e.g. a plain ``http://`` token URL without opt-in."""


class OriginNotAllowedError(ConfigurationError):
    """A request would have carried the token somewhere it must not go: an origin outside
    ``TokenAuth(origins=...)`` with ``strict_origins=True``, or plain http to a host that is
    not this machine without ``allow_insecure_http=True``. Raised before anything is sent."""


class TokenStoreError(TokenAuthError):
    """A token store could not load, save or lock."""


class TokenRefreshError(TokenAuthError):
    """Obtaining a token failed.

    :ivar error: the RFC 6749 §5.2 ``error`` code, when the endpoint sent one (like the
        next two: characters RFC 6749 does not allow there percent-encoded, at most 256).
    :ivar error_description: the endpoint's ``error_description``, if any.
    :ivar error_uri: the endpoint's ``error_uri``, if any.
    :ivar status_code: the HTTP status of the token response, or ``None`` with no response.
    :ivar retryable: whether trying again later can help.
    :ivar retry_after_seconds: the wait the server asked for (``Retry-After``), if any.
    :ivar body: the start of the response body, token fields redacted, for diagnosis.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        error: Optional[str] = None,
        error_description: Optional[str] = None,
        error_uri: Optional[str] = None,
        status_code: Optional[int] = None,
        retry_after_seconds: Optional[float] = None,
        body: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        # an endpoint's own words: printable, one line, bounded (they reach logs and events)
        self.error = safe_field(error)
        self.error_description = safe_field(error_description)
        self.error_uri = safe_field(error_uri)
        self.status_code = status_code
        self.retry_after_seconds = retry_after_seconds
        self.body = body


class InvalidGrantError(TokenRefreshError):
    """Terminal: the endpoint refused the grant or the client (``invalid_grant``,
    ``invalid_client``, ``unauthorized_client``, ``invalid_scope``, ...). Retrying the same
    request cannot help; the credentials or the authorisation must change."""


class TokenEndpointError(TokenRefreshError):
    """Transient: the endpoint could not be reached, failed (5xx, 429,
    ``temporarily_unavailable``), or answered something that is not a usable token."""

    retryable = True


class MalformedTokenResponseError(TokenEndpointError):
    """The endpoint answered 2xx with something that is not a usable token response."""


class RequestDeadlineError(TokenEndpointError):
    """The endpoint did not answer in full within the token request's total deadline
    (``max_request_seconds`` of the grant): a server that drips its answer, or stalls."""


class ResponseTooLargeError(TokenEndpointError):
    """The endpoint's answer is longer than the size cap (``max_response_bytes`` of the
    grant); nothing of it was kept."""
class UnsupportedTokenTypeError(InvalidGrantError):
    """Terminal: the endpoint answered 2xx with a ``token_type`` this client cannot send
    (``"N_A"``, ``"Application Access Token"``, ...). Asking again gets the same answer; a
    compliance hook (:meth:`Grant.register_compliance_hook`) can rewrite it to Bearer.
    ``error`` is ``"unsupported_token_type"``."""


class AccessDeniedError(InvalidGrantError):
    """The user (or the server's policy) refused the authorisation: ``access_denied`` from
    a device flow or an authorization redirect."""


class DeviceCodeExpiredError(InvalidGrantError):
    """The device code expired (``expired_token``, or its ``expires_in`` passed) before the
    user approved it; start the device flow again."""


class DPoPDowngradeError(InvalidGrantError):
    """DPoP was asked for (``TokenAuth(dpop=...)``) but the token endpoint issued a token
    that is not bound to the key (``token_type`` other than ``DPoP``). The token is not used:
    a stolen copy would work without the key. Terminal until the server binds tokens, or
    until ``allow_dpop_downgrade=True`` accepts unbound ones."""


class StateMismatchError(InvalidGrantError):
    """The authorization redirect's ``state`` is not the one this client sent (a forged or
    stale redirect, RFC 6749 §10.12); the code was not exchanged."""


def safe_field(value: object, limit: int = DEFAULT_FIELD_LIMIT) -> Optional[str]:
    """An endpoint's ``error``-like field as it may appear in a message, event or log line:
    ``None`` unless a non-empty string; every character RFC 6749 section 5.2 does not allow
    there percent-encoded; at most ``limit`` characters."""
    if not isinstance(value, str) or not value:
        return None
    value = urllib.parse.quote(value[: limit + 1], safe=_ERROR_FIELD_CHARS)
    return value if len(value) <= limit else value[:limit] + "..."


def scrub(text: str, secrets: Iterable[Optional[str]]) -> str:
    """``text`` with every occurrence of each non-empty ``secrets`` value replaced by
    ``<redacted>`` (for an ``error_description`` that echoes what was sent)."""
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, _REDACTED)
    return text


def sent_secrets(form_body: str) -> tuple[str, ...]:
    """The secret values a form-encoded request body carries (refresh token, password,
    assertion, code, ...), to :func:`scrub` from what the endpoint answers."""
    pairs = urllib.parse.parse_qsl(form_body)
    return tuple(v for k, v in pairs if k.lower() in _SENT_SECRET_FIELDS and v)


def redact_body(
    text: str, limit: int = DEFAULT_BODY_LIMIT, secrets: Iterable[Optional[str]] = ()
) -> str:
    """Return ``text`` truncated to ``limit`` characters, with secret fields (any depth of a
    JSON document, a form-encoded body, or text that parses as neither; names compared
    case-insensitively) and the given ``secrets`` values replaced by ``"<redacted>"``."""
    text = text[: limit * 64]  # a huge body is not worth parsing for a diagnosis
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, (dict, list)):
        text = json.dumps(_redact(data), sort_keys=True)
    elif "=" in text and not text.lstrip().startswith(("{", "[", "<")):
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
        if pairs:  # a value may itself be JSON or text naming a secret field
            text = urllib.parse.urlencode(
                [
                    (k, _REDACTED if k.lower() in _SECRET_FIELDS else _redact_text(v))
                    for k, v in pairs
                ]
            )
    text = _SECRET_IN_TEXT.sub(lambda m: m.group(1) + _REDACTED, text)
    text = scrub(text, secrets)
    return text if len(text) <= limit else text[:limit] + "..."


def _redact_text(text: str) -> str:
    """A form value with secrets redacted: as JSON when it parses, else by field name."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, (dict, list)):
        return json.dumps(_redact(data), sort_keys=True)
    return _SECRET_IN_TEXT.sub(lambda m: m.group(1) + _REDACTED, text)


def _redact(data: object, depth: int = 0) -> object:
    if depth > 32:  # deeper than any real error body: keep nothing of it
        return _REDACTED
    if isinstance(data, dict):
        return {
            k: _REDACTED
            if isinstance(k, str) and k.lower() in _SECRET_FIELDS
            else _redact(v, depth + 1)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_redact(v, depth + 1) for v in data]
    return data

"""Token-endpoint answers into a :class:`~requests_tokenauth.Token` or a typed error: oauthlib
parses success, RFC 6749 §5.2 error bodies are classified terminal or transient."""

from __future__ import annotations

import json
from typing import Any, Optional

import requests
from oauthlib.oauth2 import Client, OAuth2Error

from .._clock import Clock
from .._errors import (
    InvalidGrantError,
    MalformedTokenResponseError,
    TokenEndpointError,
    TokenRefreshError,
    UnsupportedTokenTypeError,
    redact_body,
)
from .._policy import parse_retry_after
from .._token import Token, TokenFormatError

#: OAuth error codes that say "try again later" rather than "this grant is dead".
TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error", "use_dpop_nonce"})


def parse_token_response(
    response: requests.Response,
    *,
    where: str,
    clock: Clock,
    sent_monotonic: float,
    sent_at: float,
    requested_scope: Optional[tuple[str, ...]],
    previous_refresh_token: Optional[str],
    dpop: bool,
) -> Token:
    """The token a token endpoint issued, or its typed error.

    :param where: names the endpoint and grant in messages.
    :param sent_monotonic: when the request was sent (the lifetime counts from there).
    :param sent_at: the same instant on the wall clock.
    :param dpop: whether a ``DPoP`` token type is acceptable.
    :raises InvalidGrantError: terminal refusal (400/401 with a non-transient code).
    :raises TokenEndpointError: transient failure, or (``MalformedTokenResponseError``) a 2xx
        that is not a usable token.
    """
    status = response.status_code
    if not 200 <= status < 300:
        raise_for_error(response, where, clock)
    text = response.text
    where = f"{where} answered {status}"
    try:
        data = _oauthlib_parse(text, requested_scope)
    except OAuth2Error as exc:  # an error object or no access_token in a 2xx body
        if exc.error == "missing_token":
            raise MalformedTokenResponseError(
                f"{where} without an access_token", status_code=status, body=redact_body(text)
            ) from None
        code = _str_or_none(exc.error)
        cls = TokenEndpointError if code in TRANSIENT_ERRORS else InvalidGrantError
        raise cls(
            f"{where}: {code}",
            error=code,
            error_description=_str_or_none(exc.description),
            error_uri=_str_or_none(exc.uri),
            status_code=status,
            retry_after_seconds=parse_retry_after(
                response.headers.get("Retry-After"), clock.time()
            ),
            body=redact_body(text),
        ) from None
    except ValueError as exc:  # oauthlib's own checks, e.g. "expires_in must be an int"
        raise MalformedTokenResponseError(
            f"{where} with an unusable token: {exc}", status_code=status, body=redact_body(text)
        ) from None
    except Exception as exc:  # oauthlib chokes on some shapes (a list, a dict scope, ...)
        raise MalformedTokenResponseError(
            f"{where} with something that is not a token response ({type(exc).__name__})",
            status_code=status,
            body=redact_body(text),
        ) from None
    try:
        token = Token.from_response(
            data,
            obtained_monotonic=sent_monotonic,
            obtained_at=sent_at,
            requested_scope=requested_scope,
            previous_refresh_token=previous_refresh_token,
        )
    except TokenFormatError as exc:
        raise MalformedTokenResponseError(
            f"{where} with an unusable token: {exc}", status_code=status, body=redact_body(text)
        ) from None
    if token.token_type != "Bearer" and (token.token_type != "DPoP" or not dpop):
        raise UnsupportedTokenTypeError(
            f"{where} with token_type {token.token_type!r}; only Bearer is supported "
            "(and DPoP, with TokenAuth(dpop=...)). If this provider's tokens are bearer "
            "tokens under another name, a compliance hook can fix the response: "
            "grant.register_compliance_hook('access_token_response', fix), or "
            "requests-oauthlib's fix for it, e.g. ebay_compliance_fix(grant)",
            error="unsupported_token_type",
            status_code=status,
            body=redact_body(text),
        )
    return token


def raise_for_error(response: requests.Response, where: str, clock: Clock) -> None:
    """Raise the typed error for a non-2xx answer of an endpoint that speaks RFC 6749 §5.2
    errors: terminal (:class:`InvalidGrantError`) for 400/401 with a non-transient code,
    transient (:class:`TokenEndpointError`) otherwise."""
    status, text = response.status_code, response.text
    fields = _error_fields(text)
    code = fields.get("error")
    terminal = status in (400, 401) and code not in TRANSIENT_ERRORS
    cls: type[TokenRefreshError] = InvalidGrantError if terminal else TokenEndpointError
    raise cls(
        f"{where} answered {status}" + (f": {code}" if code else ""),
        status_code=status,
        retry_after_seconds=parse_retry_after(response.headers.get("Retry-After"), clock.time()),
        body=redact_body(text),
        **fields,
    )


def _oauthlib_parse(text: str, scope: Optional[tuple[str, ...]]) -> dict[str, Any]:
    """Parse with oauthlib; a changed scope (which oauthlib raises as a bare ``Warning``)
    is RFC 6749 §3.3 behaviour, not an error: the token carries the scope granted."""
    client = Client("")
    try:
        return dict(client.parse_request_body_response(text, scope=list(scope or ()) or None))
    except Warning as changed:
        token = getattr(changed, "token", None)
        if token is None:
            raise
        return dict(token)


def _str_or_none(value: object) -> Optional[str]:
    return value if isinstance(value, str) and value else None


def _error_fields(text: str) -> dict[str, Optional[str]]:
    """RFC 6749 §5.2 fields of an error body, when it is a JSON object with string fields."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    names = ("error", "error_description", "error_uri")
    return {k: v for k, v in data.items() if k in names and isinstance(v, str)}

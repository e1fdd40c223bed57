"""Token-endpoint answers into a :class:`~requests_tokenauth.Token` or a typed error: oauthlib
parses success, RFC 6749 §5.2 error bodies are classified terminal or transient."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable
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
    safe_field,
    scrub,
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
    sent_secrets: Iterable[Optional[str]] = (),
) -> Token:
    """The token a token endpoint issued, or its typed error.

    :param where: names the endpoint and grant in messages.
    :param sent_monotonic: when the request was sent (the lifetime counts from there).
    :param sent_at: the same instant on the wall clock.
    :param dpop: whether a ``DPoP`` token type is acceptable.
    :param sent_secrets: secrets the request carried, kept out of the error's fields even
        when the endpoint echoes them.
    :raises InvalidGrantError: terminal refusal (400/401 with a non-transient code).
    :raises TokenEndpointError: transient failure, or (``MalformedTokenResponseError``) a 2xx
        that is not a usable token.
    """
    status = response.status_code
    secrets = tuple(sent_secrets)
    if not 200 <= status < 300:
        raise_for_error(response, where, clock, secrets)
    text = response.text
    body = redact_body(text, secrets=secrets)
    where = f"{where} answered {status}"
    try:
        data = _oauthlib_parse(text, requested_scope)
    except OAuth2Error as exc:  # an error object or no access_token in a 2xx body
        if exc.error == "missing_token":
            raise MalformedTokenResponseError(
                f"{where} without an access_token", status_code=status, body=body
            ) from None
        code = safe_field(exc.error)
        cls = TokenEndpointError if code in TRANSIENT_ERRORS else InvalidGrantError
        raise cls(
            f"{where}: {code}",
            error=code,
            error_description=_scrubbed(exc.description, secrets),
            error_uri=_scrubbed(exc.uri, secrets),
            status_code=status,
            retry_after_seconds=parse_retry_after(
                response.headers.get("Retry-After"), clock.time()
            ),
            body=body,
        ) from None
    except ValueError as exc:  # oauthlib's own check: "expires_in must be an int"
        field = "expires_in" if "expires_in" in str(exc) else "token"
        raise MalformedTokenResponseError(
            f"{where} with an unusable {field}", status_code=status, body=body
        ) from None
    except Exception as exc:  # oauthlib chokes on some shapes (a list, a dict scope, ...)
        # its messages may quote a field's value: name the kind of failure only
        raise MalformedTokenResponseError(
            f"{where} with something that is not a token response ({type(exc).__name__})",
            status_code=status,
            body=body,
        ) from None
    try:
        token = Token.from_response(
            data,
            obtained_monotonic=sent_monotonic,
            obtained_at=sent_at,
            requested_scope=requested_scope,
            previous_refresh_token=previous_refresh_token,
        )
    except TokenFormatError as exc:  # its messages name the field, never the value
        raise MalformedTokenResponseError(
            f"{where} with an unusable token: {exc}", status_code=status, body=body
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
            body=body,
        )
    return token


def raise_for_error(
    response: requests.Response,
    where: str,
    clock: Clock,
    sent_secrets: Iterable[Optional[str]] = (),
) -> None:
    """Raise the typed error for a non-2xx answer of an endpoint that speaks RFC 6749 §5.2
    errors: terminal (:class:`InvalidGrantError`) for 400/401 with a non-transient code,
    transient (:class:`TokenEndpointError`) otherwise. The endpoint's fields are made safe
    for a log line (:func:`safe_field`) and ``sent_secrets`` are scrubbed from them."""
    status, text = response.status_code, response.text
    secrets = tuple(sent_secrets)
    fields = _error_fields(text)
    code = safe_field(fields.get("error"))
    terminal = status in (400, 401) and code not in TRANSIENT_ERRORS
    cls: type[TokenRefreshError] = InvalidGrantError if terminal else TokenEndpointError
    raise cls(
        f"{where} answered {status}" + (f": {code}" if code else ""),
        error=code,
        error_description=_scrubbed(fields.get("error_description"), secrets),
        error_uri=_scrubbed(fields.get("error_uri"), secrets),
        status_code=status,
        retry_after_seconds=parse_retry_after(response.headers.get("Retry-After"), clock.time()),
        body=redact_body(text, secrets=secrets),
    )


def _oauthlib_parse(text: str, scope: Optional[tuple[str, ...]]) -> dict[str, Any]:
    """Parse with oauthlib; a changed scope (which oauthlib raises as a bare ``Warning``)
    is RFC 6749 §3.3 behaviour, not an error: the token carries the scope granted.

    ``expires_in`` is taken as the server sent it: oauthlib drops a falsy one, and
    ``expires_in: 0`` means "already expired", not "no lifetime"."""
    client = Client("")
    try:
        data = dict(client.parse_request_body_response(text, scope=list(scope or ()) or None))
    except Warning as changed:
        token = getattr(changed, "token", None)
        if token is None:
            raise
        data = dict(token)
    raw = _raw_fields(text)
    if "expires_in" in raw:
        data["expires_in"] = raw["expires_in"]
    return data


def _raw_fields(text: str) -> dict[str, Any]:
    """The top-level fields of a JSON object body, or of a form-encoded one (which
    oauthlib accepts too); empty for anything else."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return dict(urllib.parse.parse_qsl(text))
    return data if isinstance(data, dict) else {}


def _scrubbed(value: object, secrets: tuple[Optional[str], ...]) -> Optional[str]:
    return safe_field(scrub(value, secrets)) if isinstance(value, str) else None


def _error_fields(text: str) -> dict[str, Any]:
    """RFC 6749 §5.2 fields of an error body, when it is a JSON object."""
    fields = _raw_fields(text) if text.lstrip().startswith("{") else {}
    names = ("error", "error_description", "error_uri")
    return {k: v for k, v in fields.items() if k in names and isinstance(v, str)}

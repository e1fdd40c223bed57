"""The exception tree. Every error is a :class:`requests.exceptions.RequestException`.

Messages never carry a token or a secret: a token endpoint's body is kept (truncated, with
token fields redacted) on :attr:`TokenRefreshError.body` for diagnosis, never in ``str()``.
"""

from __future__ import annotations

import json
from typing import Optional

import requests

#: How much of a token endpoint's body an error keeps, in characters.
DEFAULT_BODY_LIMIT = 512

_SECRET_FIELDS = frozenset(
    {"access_token", "refresh_token", "id_token", "client_secret", "assertion", "device_code"}
)


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

    :ivar error: the RFC 6749 §5.2 ``error`` code, when the endpoint sent one.
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
        self.error = error
        self.error_description = error_description
        self.error_uri = error_uri
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


class AccessDeniedError(InvalidGrantError):
    """The user (or the server's policy) refused the authorisation: ``access_denied`` from
    a device flow or an authorization redirect."""


class DeviceCodeExpiredError(InvalidGrantError):
    """The device code expired (``expired_token``, or its ``expires_in`` passed) before the
    user approved it; start the device flow again."""


class StateMismatchError(InvalidGrantError):
    """The authorization redirect's ``state`` is not the one this client sent (a forged or
    stale redirect, RFC 6749 §10.12); the code was not exchanged."""


def redact_body(text: str, limit: int = DEFAULT_BODY_LIMIT) -> str:
    """Return ``text`` truncated to ``limit`` characters, with token fields of a JSON
    object replaced by ``"<redacted>"``."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        text = json.dumps(
            {k: "<redacted>" if k in _SECRET_FIELDS else v for k, v in data.items()},
            sort_keys=True,
        )
    return text if len(text) <= limit else text[:limit] + "..."

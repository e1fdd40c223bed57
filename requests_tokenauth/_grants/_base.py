"""The base of every grant: client authentication, URL checks, the one token exchange over a
private :class:`requests.Session`, and parsing (by oauthlib) into a :class:`Token` or a typed
error."""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Optional, Union

import requests
from oauthlib.oauth2 import Client, OAuth2Error

from .._clock import Clock
from .._errors import (
    ConfigurationError,
    InvalidGrantError,
    MalformedTokenResponseError,
    TokenEndpointError,
    TokenRefreshError,
    redact_body,
)
from .._policy import parse_retry_after
from .._token import Token, TokenFormatError

log = logging.getLogger("requests_tokenauth")

#: Token requests give up after this many seconds (connect, read): a dead endpoint must not
#: hold every caller's thread.
DEFAULT_TIMEOUT_SECONDS: tuple[float, float] = (5.0, 30.0)

#: The client-authentication methods (RFC 7591 ``token_endpoint_auth_method``) supported here.
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")

#: OAuth error codes that say "try again later" rather than "this grant is dead".
_TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})

Timeout = Union[float, tuple[float, float]]


def is_loopback(host: Optional[str]) -> bool:
    """Whether ``host`` names this machine (127.0.0.0/8, ::1 or ``localhost``)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str, *, allow_insecure_http: bool) -> str:
    """Refuse anything but ``https`` (or plain ``http`` to loopback, or with explicit opt-in).

    :raises ConfigurationError: with a message saying how to opt in.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        if allow_insecure_http or is_loopback(parts.hostname):
            return url
        raise ConfigurationError(
            f"{what} {url!r} is plain http: tokens would travel unencrypted. Use https, or "
            "pass allow_insecure_http=True if this network is trusted."
        )
    raise ConfigurationError(f"{what} {url!r} is not an absolute http(s) URL")


class _ClientAuth(requests.auth.AuthBase):
    """Client authentication for the token request. Also stops requests from applying
    ``~/.netrc`` or a user session's own ``auth`` to the token request."""

    def __init__(self, header: Optional[str]) -> None:
        self._header = header

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers.pop("Authorization", None)
        if self._header is not None:
            r.headers["Authorization"] = self._header
        return r

    def __repr__(self) -> str:
        return "_ClientAuth(<redacted>)"


def basic_credentials(client_id: str, client_secret: str) -> str:
    """``Authorization`` value for ``client_secret_basic``: id and secret are each
    form-urlencoded before base64 (RFC 6749 §2.3.1), so ``:``, ``%`` and non-ASCII survive."""
    pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")


class Grant:
    """Base of every grant: client authentication, the token exchange and its errors.

    A grant is safe to share between threads only under one :class:`TokenManager` (which
    serialises :meth:`fetch`); it keeps no token itself.

    :param token_url: the token endpoint; ``https``, or ``http`` to a loopback host.
    :param client_id: the OAuth client id.
    :param client_secret: the client secret, for confidential clients.
    :param scope: scopes to request, as a list or a space-separated string.
    :param auth_method: how the client authenticates: ``client_secret_basic`` (default),
        ``client_secret_post`` or ``none`` (RFC 7591 names).
    :param extra: more token-request parameters, e.g. ``{"audience": ...}``; sent with every
        token request of this grant, refreshes included.
    :param session: a :class:`requests.Session` for token requests (proxies, TLS, mTLS).
        Its ``auth`` is never applied to token requests. Default: a private one.
    :param timeout: seconds (or ``(connect, read)``) before a token request gives up.
    :param allow_insecure_http: accept a plain ``http`` token URL to a non-loopback host.
    """

    #: The ``grant_type`` this class sends (for logs and store keys).
    grant_type: ClassVar[str] = ""
    #: Whether the grant can run again with no person present (used when a refresh fails).
    unattended: ClassVar[bool] = True

    def __init__(
        self,
        token_url: str,
        *,
        client_id: str,
        client_secret: Optional[str] = None,
        scope: Union[str, Iterable[str], None] = None,
        auth_method: str = "client_secret_basic",
        extra: Optional[Mapping[str, str]] = None,
        session: Optional[requests.Session] = None,
        timeout: Timeout = DEFAULT_TIMEOUT_SECONDS,
        allow_insecure_http: bool = False,
    ) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise ConfigurationError("client_id must be a non-empty string")
        if auth_method not in AUTH_METHODS:
            raise ConfigurationError(
                f"auth_method {auth_method!r} is not one of {', '.join(AUTH_METHODS)}"
            )
        if auth_method != "none" and client_secret is None:
            raise ConfigurationError(
                f"auth_method {auth_method!r} needs a client_secret; use auth_method='none' "
                "for a public client"
            )
        self.token_url = check_url(token_url, "token URL", allow_insecure_http=allow_insecure_http)
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope: Optional[tuple[str, ...]] = (
            tuple(scope.split())
            if isinstance(scope, str)
            else None
            if scope is None
            else tuple(scope)
        )
        self.auth_method = auth_method
        self.extra: dict[str, str] = dict(extra or {})
        self.timeout = timeout
        self._session = session
        self._own_session: Optional[requests.Session] = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.token_url!r}, client_id={self.client_id!r}, "
            f"scope={self.scope!r}, auth_method={self.auth_method!r})"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_own_session"] = None  # a fresh connection pool in the new process
        return state

    def store_identity(self) -> Optional[str]:
        """What else selects this grant's token, for store keys (e.g. a username or a JWT
        subject); never a secret. ``None`` when the client alone does."""
        return None

    # -- what subclasses provide ----------------------------------------------------------

    def _grant_body(self, client_params: dict[str, Any]) -> str:
        """The urlencoded body of this grant's own token request, built by oauthlib with
        ``client_params`` (client authentication in the body) passed through."""
        raise NotImplementedError

    # -- the exchange ---------------------------------------------------------------------

    def fetch(self, current: Optional[Token], clock: Clock) -> Token:
        """Obtain a new token: with ``current``'s refresh token when it has one, otherwise
        by running the grant again. One refresh rejected with ``invalid_grant`` falls back
        to the grant itself when it runs unattended.

        :raises TokenRefreshError: the typed failure (:class:`InvalidGrantError` is terminal).
        """
        if current is not None and current.refresh_token:
            body = self._refresh_body(current.refresh_token)
            try:
                return self._exchange(body, clock, "refresh_token", current.refresh_token)
            except InvalidGrantError as exc:
                if not self.unattended or exc.error != "invalid_grant":
                    raise
                log.info("refresh token rejected; running the %s grant again", self.grant_type)
        return self._exchange(self._grant_body(self._client_params()), clock, self.grant_type, None)

    def _refresh_body(self, refresh_token: str) -> str:
        body: str = Client(self.client_id).prepare_refresh_body(
            refresh_token=refresh_token, **self.extra, **self._client_params()
        )
        return body

    def _client_params(self) -> dict[str, Any]:
        """oauthlib parameters for client authentication in the body (RFC 6749 §2.3.1)."""
        if self.auth_method == "client_secret_post":
            return {
                "include_client_id": True,
                "client_id": self.client_id,
                "client_secret": self._client_secret,
            }
        if self.auth_method == "none":
            return {"include_client_id": True, "client_id": self.client_id}
        return {"include_client_id": False}

    def _authorization(self) -> Optional[str]:
        if self.auth_method == "client_secret_basic" and self._client_secret is not None:
            return basic_credentials(self.client_id, self._client_secret)
        return None

    def _http(self) -> requests.Session:
        if self._session is not None:
            return self._session
        if self._own_session is None:
            self._own_session = requests.Session()
        return self._own_session

    def _exchange(
        self, body: str, clock: Clock, grant_type: str, previous_refresh: Optional[str]
    ) -> Token:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
            "Accept": "application/json",
        }
        sent_monotonic, sent_at = clock.monotonic(), clock.time()
        try:
            response = self._http().post(
                self.token_url,
                data=body.encode("utf-8"),
                headers=headers,
                auth=_ClientAuth(self._authorization()),
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            raise TokenEndpointError(
                f"token request to {self.token_url} failed: {type(exc).__name__}"
            ) from exc
        with response:
            return self._parse(
                response, clock, sent_monotonic, sent_at, grant_type, previous_refresh
            )

    def _parse(
        self,
        response: requests.Response,
        clock: Clock,
        sent_monotonic: float,
        sent_at: float,
        grant_type: str,
        previous_refresh: Optional[str],
    ) -> Token:
        status = response.status_code
        text = response.text
        where = f"token endpoint {self.token_url} ({grant_type} grant) answered {status}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"), clock.time())
        if not 200 <= status < 300:
            fields = _error_fields(text)
            code = fields.get("error")
            terminal = status in (400, 401) and code not in _TRANSIENT_ERRORS
            cls: type[TokenRefreshError] = InvalidGrantError if terminal else TokenEndpointError
            raise cls(
                where + (f": {code}" if code else ""),
                status_code=status,
                retry_after_seconds=retry_after,
                body=redact_body(text),
                **fields,
            )
        try:
            data = _oauthlib_parse(text, self.scope)
        except OAuth2Error as exc:  # an error object or no access_token in a 2xx body
            if exc.error == "missing_token":
                raise MalformedTokenResponseError(
                    f"{where} without an access_token", status_code=status, body=redact_body(text)
                ) from None
            code = _str_or_none(exc.error)
            cls = TokenEndpointError if code in _TRANSIENT_ERRORS else InvalidGrantError
            raise cls(
                f"{where}: {code}",
                error=code,
                error_description=_str_or_none(exc.description),
                error_uri=_str_or_none(exc.uri),
                status_code=status,
                retry_after_seconds=retry_after,
                body=redact_body(text),
            ) from None
        except ValueError as exc:  # oauthlib's own checks, e.g. "expires_in must be an int"
            raise MalformedTokenResponseError(
                f"{where} with an unusable token: {exc}",
                status_code=status,
                body=redact_body(text),
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
                requested_scope=self.scope,
                previous_refresh_token=previous_refresh,
            )
        except TokenFormatError as exc:
            raise MalformedTokenResponseError(
                f"{where} with an unusable token: {exc}", status_code=status, body=redact_body(text)
            ) from None
        if token.token_type != "Bearer":
            raise MalformedTokenResponseError(
                f"{where} with token_type {token.token_type!r}; only Bearer is supported",
                status_code=status,
                body=redact_body(text),
            )
        return token


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

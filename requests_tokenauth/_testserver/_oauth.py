"""The oauthlib request validator of the test server: oauthlib's view of the registrations
and tokens an :class:`~requests_tokenauth.testing.AuthServer` holds (read through
:class:`._state.ServerState`), for the classic grants; :mod:`._extra_oauth` extends it."""

from __future__ import annotations

import base64
import hmac
from typing import Any, Optional
from urllib.parse import unquote_plus

from oauthlib.oauth2 import RequestValidator

from ._state import Client, Grant, ServerState


def basic_credentials(request: Any) -> Optional[tuple[str, str]]:
    """Client id and secret from an ``Authorization: Basic`` header (RFC 6749 section 2.3.1).

    :param request: an oauthlib request.
    :returns: ``None`` without such a header; ``("", "")`` (which matches no client) when
        the header is malformed.
    """
    scheme, _, value = (request.headers.get("Authorization") or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError are both ValueErrors
        return ("", "")
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return ("", "")
    return unquote_plus(client_id), unquote_plus(secret)


def request_param(request: Any, name: str) -> Optional[str]:
    """A text parameter of an oauthlib request, or ``None`` when absent (or not text)."""
    value = getattr(request, name, None)
    return value if isinstance(value, str) else None


class Validator(RequestValidator):  # type: ignore[misc]  # oauthlib ships no types
    """oauthlib's view of the registrations and tokens an :class:`AuthServer` holds."""

    def __init__(self, server: ServerState) -> None:
        super().__init__()
        self._server = server

    def _client(self, client_id: object) -> Optional[Client]:
        with self._server._lock:
            return self._server._clients.get(client_id) if isinstance(client_id, str) else None

    def client_authentication_required(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        if basic_credentials(request) is not None or request.client_secret is not None:
            return True
        client = self._client(request.client_id)
        return client is None or client.client_secret is not None

    def authenticate_client(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        basic = basic_credentials(request)
        if basic is None:
            client_id, secret = request.client_id, request.client_secret
        elif request.client_secret is not None or request.client_id not in (None, basic[0]):
            return False  # two authentication methods at once, or two different ids
        else:
            client_id, secret = basic
        client = self._client(client_id)
        if client is None:
            return False
        given, expected = (secret or "").encode(), (client.client_secret or "").encode()
        if not hmac.compare_digest(given, expected):
            return False
        request.client = client
        return True

    def authenticate_client_id(self, client_id: str, request: Any, *a: Any, **k: Any) -> bool:
        client = self._client(client_id)
        if client is None or client.client_secret is not None:
            return False
        request.client = client
        return True

    def validate_client_id(self, client_id: str, request: Any, *a: Any, **k: Any) -> bool:
        return self._client(client_id) is not None

    def validate_grant_type(
        self, client_id: str, grant_type: str, client: Client, request: Any, *a: Any, **k: Any
    ) -> bool:
        if grant_type == "client_credentials" and client.client_secret is None:
            return False  # only confidential clients may use it (RFC 6749 section 4.4)
        return grant_type in client.grant_types

    def get_default_scopes(self, client_id: str, request: Any, *a: Any, **k: Any) -> list[str]:
        client = self._client(client_id)
        return list(client.scopes) if client else []

    def validate_scopes(
        self, client_id: str, scopes: list[str], client: Client, request: Any, *a: Any, **k: Any
    ) -> bool:
        return all(scope in client.scopes for scope in scopes)

    def validate_user(
        self, username: str, password: str, client: Client, request: Any, *a: Any, **k: Any
    ) -> bool:
        with self._server._lock:
            expected = self._server._users.get(username)
        if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
            return False
        request.user = username
        return True

    def validate_refresh_token(
        self, refresh_token: str, client: Client, request: Any, *a: Any, **k: Any
    ) -> bool:
        with self._server._lock:
            grant = self._server._refresh.get(refresh_token)
        if grant is None or grant.client_id != client.client_id:
            return False
        request.user = grant.user
        return True

    def get_original_scopes(self, refresh_token: str, request: Any, *a: Any, **k: Any) -> list[str]:
        with self._server._lock:
            return list(self._server._refresh[refresh_token].scopes)

    def rotate_refresh_token(self, request: Any) -> bool:
        return self._server.rotate_refresh_tokens

    def save_bearer_token(self, token: dict[str, Any], request: Any, *a: Any, **k: Any) -> None:
        client: Client = request.client
        if "refresh_token" not in client.grant_types:
            token.pop("refresh_token", None)
        server, scopes = self._server, tuple(token.get("scope", "").split())
        with server._lock:
            expires_at = server.clock.monotonic() + token["expires_in"]
            server._access[token["access_token"]] = Grant(
                client.client_id, scopes, request.user, expires_at
            )
            new = token.get("refresh_token")
            old = request.refresh_token if request.grant_type == "refresh_token" else None
            if new is not None and new != old:
                # A rotated refresh token keeps the scope it had, even if this request
                # narrowed the access token's scope (RFC 6749 section 6).
                base = server._refresh.pop(old) if old else None
                kept = base.scopes if base else scopes
                server._refresh[new] = Grant(client.client_id, kept, request.user)

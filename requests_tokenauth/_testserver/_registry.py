"""Registrations and tokens of the test server: the clients, users and tokens an
:class:`~requests_tokenauth.testing.AuthServer` knows, the methods tests use to change them
directly, and the bearer check of its protected resource."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any, Optional
from urllib.parse import unquote

from .._clock import Clock
from ._state import GRANT_TYPES, Client, Grant, new_token, remember_secret

_REALM = 'Bearer realm="testing"'


class Registry:
    """Mixed into :class:`~requests_tokenauth.testing.AuthServer`: who may ask for tokens,
    and what each issued token stands for. Guarded by the server's ``_lock``."""

    # knobs of AuthServer (documented there), read on each use
    clock: Clock
    token_lifetime_seconds: int
    insufficient_scope_status: int
    always_401: bool
    invalid_token_status: int
    _lock: threading.Lock

    def _init_registry(self) -> None:
        self._clients: dict[str, Client] = {}
        self._users: dict[str, str] = {}
        self._access: dict[str, Grant] = {}
        self._refresh: dict[str, Grant] = {}

    def add_client(
        self,
        client_id: str,
        client_secret: Optional[str] = None,
        *,
        grant_types: tuple[str, ...] = ("client_credentials", "password", "refresh_token"),
        scopes: tuple[str, ...] = ("read", "write"),
    ) -> None:
        """Register (or replace) a client.

        :param client_id: the client id; any non-empty text.
        :param client_secret: the secret; ``None`` makes a public client, which sends only
            its ``client_id`` (and cannot use ``client_credentials``).
        :param grant_types: the grants it may use, from :data:`GRANT_TYPES`. Refresh tokens
            are issued only to clients allowed ``refresh_token``.
        :param scopes: the scopes it may ask for; all of them when it names none.
        """
        unknown = set(grant_types) - GRANT_TYPES
        if not client_id or unknown:
            raise ValueError(f"bad client id {client_id!r} or grant types {sorted(unknown)}")
        remember_secret(client_secret)
        with self._lock:
            self._clients[client_id] = Client(
                client_id, client_secret, tuple(grant_types), tuple(scopes)
            )

    def add_user(self, username: str, password: str) -> None:
        """Register (or replace) a resource owner for the ``password`` grant.

        :param username: the user name.
        :param password: the password.
        """
        remember_secret(password)
        with self._lock:
            self._users[username] = password

    def issue_token(
        self,
        client_id: str = "svc",
        *,
        scopes: tuple[str, ...] = ("read",),
        lifetime_seconds: Optional[int] = None,
        refresh: bool = False,
        user: Optional[str] = None,
    ) -> dict[str, Any]:
        """Mint a token directly, without HTTP and without counting a token request.

        :param client_id: the registered client the token belongs to.
        :param scopes: its scopes (not checked against the client's).
        :param lifetime_seconds: its lifetime; ``token_lifetime_seconds`` when ``None``.
        :param refresh: also mint a refresh token (usable by ``client_id``).
        :param user: the resource owner, if any.
        :returns: a token response: ``access_token``, ``token_type``, ``expires_in``,
            ``scope`` and, with ``refresh``, ``refresh_token``.
        """
        lifetime = self.token_lifetime_seconds if lifetime_seconds is None else lifetime_seconds
        token: dict[str, Any] = {
            "access_token": new_token(),
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": " ".join(scopes),
        }
        with self._lock:
            if client_id not in self._clients:
                raise ValueError(f"unknown client {client_id!r}")
            grant = Grant(client_id, tuple(scopes), user)
            self._access[token["access_token"]] = replace(
                grant, expires_at=self.clock.monotonic() + lifetime
            )
            if refresh:
                token["refresh_token"] = new_token()
                self._refresh[token["refresh_token"]] = grant
        return token

    def revoke(self, access_token: str) -> bool:
        """Make one access token invalid.

        :param access_token: the token.
        :returns: whether the server knew it.
        """
        with self._lock:
            grant = self._access.get(access_token)
            if grant is not None:
                self._access[access_token] = replace(grant, revoked=True)
            return grant is not None

    def revoke_all(self) -> None:
        """Make every access token issued so far invalid; refresh tokens stay valid."""
        with self._lock:
            for token, grant in self._access.items():
                self._access[token] = replace(grant, revoked=True)

    # -- called by the request handler (through the DPoP checker) -------------------

    def _check_bearer(
        self, authorization: Optional[str], path: str
    ) -> tuple[Optional[Grant], int, str]:
        """Judge a resource request: ``(grant or None, status, WWW-Authenticate value)``."""

        def invalid(description: str) -> tuple[None, int, str]:
            if self.invalid_token_status != 401:  # the 403 mode: no challenge at all
                return None, self.invalid_token_status, ""
            detail = f'error="invalid_token", error_description="{description}"'
            return None, 401, f"{_REALM}, {detail}"

        if self.always_401:
            return invalid("this server rejects every token (always_401)")
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, 401, _REALM
        with self._lock:
            grant = self._access.get(token.strip())
        if grant is None:
            return invalid("unknown access token")
        if grant.revoked:
            return invalid("the access token was revoked")
        if self.clock.monotonic() >= grant.expires_at:
            return invalid("the access token expired")
        parts = path.split("/")
        if len(parts) > 3 and parts[2] == "scope" and unquote(parts[3]) not in grant.scopes:
            needed = unquote(parts[3])
            challenge = f'Bearer error="insufficient_scope", scope="{needed}"'
            return None, self.insufficient_scope_status, challenge
        return grant, 200, ""

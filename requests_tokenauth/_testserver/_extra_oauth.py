"""The test server's full oauthlib validator: :class:`._oauth.Validator` plus JWT client
authentication, authorization codes with PKCE, revocation, and the JWT check the JWT bearer
grant relies on. JWTs (client assertions and bearer assertions) are verified for real with
PyJWT, against the server's own keys (:mod:`._keys`), its clock, the audience, and a replay
cache of ``jti`` values. The extension grants themselves are :mod:`._extra_grant` and the
``_grant_*`` modules.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional
from urllib.parse import urlsplit

from .._grants._urls import is_loopback
from ._keys import private_key
from ._oauth import Validator, request_param
from ._state import CodeEntry, Grant, remember_secret

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: Assertions may live at most this long (exp - now), and iat may be this far ahead (skew).
MAX_ASSERTION_SECONDS = 3600
SKEW_SECONDS = 60


class ExtraValidator(Validator):
    """:class:`Validator` plus JWT client authentication, authorization codes with PKCE,
    revocation, and the checks of the extra grants."""

    # -- client authentication -------------------------------------------------------------

    def client_authentication_required(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        if request_param(request, "client_assertion_type") is not None:
            return True
        return bool(super().client_authentication_required(request, *args, **kwargs))

    def authenticate_client(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        kind = request_param(request, "client_assertion_type")
        if kind is None:
            return bool(super().authenticate_client(request, *args, **kwargs))
        if kind != CLIENT_ASSERTION_TYPE or request.headers.get("Authorization"):
            return False
        try:
            claims = self.verify_jwt(
                request_param(request, "client_assertion") or "",
                client_key=True,
                endpoint=urlsplit(request.uri).path,
            )
        except ValueError:
            return False
        client = self._client(claims["sub"])
        if client is None or claims["iss"] != claims["sub"]:
            return False
        if request.client_id not in (None, client.client_id):
            return False
        request.client_id, request.client = client.client_id, client
        return True

    def verify_jwt(
        self, token: str, *, client_key: bool, endpoint: Optional[str] = None
    ) -> dict[str, Any]:
        """Verify a client assertion (``client_key``) or a JWT bearer assertion: signature
        (the client's secret for HS256, the server's keys otherwise), ``aud`` (the issuer
        or an endpoint of this server; for a client assertion under
        ``strict_assertion_audience``, the URL of ``endpoint``, the path it was sent to),
        ``exp``/``iat`` on the server's clock, a ``jti`` not seen before.

        :raises ValueError: it does not verify.
        """
        try:
            import jwt
        except ImportError:
            raise ValueError("PyJWT is not installed") from None

        server = self._server
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if algorithm in ("RS256", "ES256"):
                key: Any = private_key(algorithm).public_key()
            elif algorithm == "HS256" and client_key:
                unverified = jwt.decode(token, options={"verify_signature": False})
                client = self._client(unverified.get("sub"))
                if client is None or not client.client_secret:
                    raise ValueError("unknown client")
                key = client.client_secret
            else:
                raise ValueError(f"algorithm {algorithm!r} not accepted")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=server._audiences(endpoint if client_key else None),
                options={
                    "verify_exp": False,  # checked below, on the server's clock
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["iss", "sub", "aud", "exp", "iat", "jti"],
                },
            )
        except jwt.exceptions.PyJWTError as exc:
            raise ValueError(type(exc).__name__) from None
        now = server.clock.time()
        exp, iat = claims["exp"], claims["iat"]
        if not isinstance(exp, (int, float)) or not isinstance(iat, (int, float)):
            raise ValueError("bad exp or iat")
        if not now < exp <= now + MAX_ASSERTION_SECONDS or iat > now + SKEW_SECONDS:
            raise ValueError("expired, too long-lived or from the future")
        with server._lock:
            state = server._extra
            state.seen_jti = {j: e for j, e in state.seen_jti.items() if e > now}
            if claims["jti"] in state.seen_jti:
                raise ValueError("jti replayed")
            state.seen_jti[str(claims["jti"])] = float(exp)
        return claims

    # -- authorization codes (RFC 6749 §4.1, PKCE RFC 7636) ---------------------------------

    def validate_client_id(self, client_id: str, request: Any, *a: Any, **k: Any) -> bool:
        client = self._client(client_id)
        if client is not None and getattr(request, "client", None) is None:
            request.client = client  # the authorization request's scope check needs it
        return client is not None

    def validate_redirect_uri(
        self, client_id: str, redirect_uri: str, request: Any, *a: Any, **k: Any
    ) -> bool:
        parts = urlsplit(redirect_uri)
        # RFC 8252 §7.3: loopback redirects for native apps, any port
        return parts.scheme == "http" and is_loopback(parts.hostname) and not parts.fragment

    def get_default_redirect_uri(self, client_id: str, request: Any, *a: Any, **k: Any) -> None:
        return None  # the client must name its redirect URI

    def validate_response_type(
        self, client_id: str, response_type: str, client: Any, request: Any, *a: Any, **k: Any
    ) -> bool:
        registered = self._client(client_id)
        return (
            response_type == "code"
            and registered is not None
            and ("authorization_code" in registered.grant_types)
        )

    def is_pkce_required(self, client_id: str, request: Any) -> bool:
        return True

    def save_authorization_code(
        self, client_id: str, code: dict[str, Any], request: Any, *a: Any, **k: Any
    ) -> None:
        remember_secret(code["code"])
        server = self._server
        with server._lock:
            server._extra.codes[code["code"]] = CodeEntry(
                client_id,
                request.redirect_uri,
                tuple(request.scopes or ()),
                request.user,
                request.code_challenge,
                request.code_challenge_method,
                server.clock.monotonic() + server.code_lifetime_seconds,
            )

    def _code(self, code: str) -> Optional[CodeEntry]:
        with self._server._lock:
            return self._server._extra.codes.get(code)

    def validate_code(
        self, client_id: str, code: str, client: Any, request: Any, *a: Any, **k: Any
    ) -> bool:
        entry = self._code(code)
        if entry is None or entry.client_id != client_id:
            return False
        if self._server.clock.monotonic() >= entry.expires_monotonic:
            return False
        request.user, request.scopes = entry.user, list(entry.scopes)
        return True

    def confirm_redirect_uri(
        self,
        client_id: str,
        code: str,
        redirect_uri: str,
        client: Any,
        request: Any,
        *a: Any,
        **k: Any,
    ) -> bool:
        entry = self._code(code)
        return entry is not None and redirect_uri == entry.redirect_uri

    def get_code_challenge(self, code: str, request: Any) -> Optional[str]:
        entry = self._code(code)
        return entry.challenge if entry else None

    def get_code_challenge_method(self, code: str, request: Any) -> Optional[str]:
        entry = self._code(code)
        return entry.challenge_method if entry else None

    def invalidate_authorization_code(
        self, client_id: str, code: str, request: Any, *a: Any, **k: Any
    ) -> None:
        with self._server._lock:
            self._server._extra.codes.pop(code, None)

    # -- revocation (RFC 7009) --------------------------------------------------------------

    def revoke_token(
        self, token: str, token_type_hint: Optional[str], request: Any, *a: Any, **k: Any
    ) -> None:
        server = self._server
        client_id = request.client.client_id if request.client else request.client_id
        with server._lock:
            grant = server._refresh.get(token)
            if grant is not None and grant.client_id == client_id:
                del server._refresh[token]
                # RFC 7009 §2.1: revoking a refresh token also revokes its access tokens
                for value, access in server._access.items():
                    if (access.client_id, access.user) == (grant.client_id, grant.user):
                        server._access[value] = _revoked(access)
                return
            live = server._access.get(token)
            if live is not None and live.client_id == client_id:
                server._access[token] = _revoked(live)


def _revoked(grant: Grant) -> Grant:
    return replace(grant, revoked=True)

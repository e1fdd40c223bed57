"""The test server's grants beyond oauthlib's provider side, and JWT client authentication.

oauthlib implements the authorization code grant (with PKCE), revocation and the classic
grants; the JWT bearer grant (RFC 7523 §2.1), token exchange (RFC 8693) and the device
grant (RFC 8628) are implemented here as oauthlib grant types, so they run through the same
token endpoint, client authentication and token storage. JWTs (client assertions and
bearer assertions) are verified for real with PyJWT, against the server's own keys, its
clock, the audience, and a replay cache of ``jti`` values.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Optional
from urllib.parse import urlsplit

from oauthlib.oauth2 import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
    UnauthorizedClientError,
)
from oauthlib.oauth2.rfc6749.grant_types.base import GrantTypeBase

from .._grants._urls import is_loopback
from ._oauth import Grant, Validator, remember_secret

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"

#: Assertions may live at most this long (exp - now), and iat may be this far ahead (skew).
MAX_ASSERTION_SECONDS = 3600
SKEW_SECONDS = 60

_keys_lock = threading.Lock()
_keys: dict[str, Any] = {}  # algorithm -> private key, shared by the servers of a process


def private_key(algorithm: str) -> Any:
    """The process-wide test key pair for ``RS256`` or ``ES256`` (made on first use)."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
    except ImportError:
        raise RuntimeError(
            'the test server\'s keys need cryptography: pip install "requests-tokenauth[jwt]"'
        ) from None

    with _keys_lock:
        if algorithm not in _keys:
            if algorithm == "RS256":
                _keys[algorithm] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            elif algorithm == "ES256":
                _keys[algorithm] = ec.generate_private_key(ec.SECP256R1())
            else:
                raise ValueError(f"the test server has no {algorithm} key")
        return _keys[algorithm]


def private_key_pem(algorithm: str) -> str:
    """:func:`private_key` as unencrypted PKCS#8 PEM (remembered as a secret)."""
    from cryptography.hazmat.primitives import serialization

    pem: str = (
        private_key(algorithm)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode("ascii")
    )
    remember_secret(pem)
    return pem


@dataclass
class DeviceEntry:
    """One device authorization in progress."""

    client_id: str
    scopes: tuple[str, ...]
    user_code: str
    expires_monotonic: float
    interval_seconds: float
    status: str = "pending"  # "pending", "approved", "denied" or "used"
    user: Optional[str] = None
    last_poll_monotonic: Optional[float] = None


@dataclass
class CodeEntry:
    """One authorization code, until it is exchanged."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    user: str
    challenge: Optional[str]
    challenge_method: Optional[str]
    expires_monotonic: float


@dataclass
class ExtraState:
    """The test server's state for the grants of this module (guarded by the server lock)."""

    devices: dict[str, DeviceEntry] = field(default_factory=dict)  # by device code
    codes: dict[str, CodeEntry] = field(default_factory=dict)
    scripted_polls: list[str] = field(default_factory=list)
    seen_jti: dict[str, float] = field(default_factory=dict)  # jti -> exp (wall clock)
    last_exchange: dict[str, Any] = field(default_factory=dict)  # audience, resource, actor


class ExtraValidator(Validator):
    """:class:`Validator` plus JWT client authentication, authorization codes with PKCE,
    revocation, and the checks of the extra grants."""

    # -- client authentication -------------------------------------------------------------

    def client_authentication_required(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        if _param(request, "client_assertion_type") is not None:
            return True
        return bool(super().client_authentication_required(request, *args, **kwargs))

    def authenticate_client(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        kind = _param(request, "client_assertion_type")
        if kind is None:
            return bool(super().authenticate_client(request, *args, **kwargs))
        if kind != CLIENT_ASSERTION_TYPE or request.headers.get("Authorization"):
            return False
        try:
            claims = self.verify_jwt(
                _param(request, "client_assertion") or "",
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


def _param(request: Any, name: str) -> Optional[str]:
    value = getattr(request, name, None)
    return value if isinstance(value, str) else None


class _ExtraGrant(GrantTypeBase):  # type: ignore[misc]  # oauthlib ships no types
    """A token-endpoint grant type the oauthlib provider lacks; subclasses check the grant
    itself in :meth:`validate_grant` (setting ``request.user`` and ``request.scopes``)."""

    grant_type = ""

    def create_token_response(
        self, request: Any, token_handler: Any
    ) -> tuple[dict[str, str], str, int]:
        headers = self._get_default_headers()
        try:
            self._authenticate(request)
            self.validate_grant(request)
        except OAuth2Error as exc:
            headers.update(exc.headers)
            return headers, exc.json, exc.status_code
        token = token_handler.create_token(request, refresh_token=True)
        self.extend_token(token, request)
        self.request_validator.save_token(token, request)
        return headers, json.dumps(token), 200

    def _authenticate(self, request: Any) -> None:
        validator = self.request_validator
        if validator.client_authentication_required(request):
            if not validator.authenticate_client(request):
                raise InvalidClientError(request=request)
        elif not validator.authenticate_client_id(request.client_id, request):
            raise InvalidClientError(request=request)
        request.client_id = request.client.client_id  # with Basic, the body had none
        if not validator.validate_grant_type(
            request.client_id, self.grant_type, request.client, request
        ):
            raise UnauthorizedClientError(request=request)

    def validate_grant(self, request: Any) -> None:
        raise NotImplementedError

    def extend_token(self, token: dict[str, Any], request: Any) -> None:
        """Add grant-specific response fields."""

    def _scopes(self, request: Any, default: tuple[str, ...]) -> None:
        client = request.client
        asked = tuple((request.scope or "").split()) or default or client.scopes
        if not all(s in client.scopes for s in asked):
            from oauthlib.oauth2 import InvalidScopeError

            raise InvalidScopeError(request=request)
        request.scopes = list(asked)


class JWTBearerGrant(_ExtraGrant):
    """RFC 7523 §2.1: the assertion is the grant; ``sub`` becomes the token's user."""

    grant_type = JWT_BEARER

    def validate_grant(self, request: Any) -> None:
        assertion = _param(request, "assertion")
        if not assertion:
            raise InvalidRequestError("missing assertion", request=request)
        try:
            claims = self.request_validator.verify_jwt(assertion, client_key=False)
        except ValueError as exc:
            raise InvalidGrantError(f"assertion rejected: {exc}", request=request) from None
        request.user = str(claims["sub"])
        self._scopes(request, ())


class TokenExchangeGrant(_ExtraGrant):
    """RFC 8693: a live access token of this server (and optionally an actor token) in,
    a new access token for the same user out, with ``issued_token_type``."""

    grant_type = TOKEN_EXCHANGE

    def validate_grant(self, request: Any) -> None:
        server = self.request_validator._server
        subject = self._live(request, "subject_token", "subject_token_type")
        if subject is None:
            raise InvalidRequestError("missing subject_token", request=request)
        actor = self._live(request, "actor_token", "actor_token_type")
        request.user = subject.user or subject.client_id
        if actor is not None:
            request.user = f"{request.user} (via {actor.user or actor.client_id})"
        with server._lock:
            server._extra.last_exchange = {
                "audience": _param(request, "audience"),
                "resource": _param(request, "resource"),
                "actor": actor is not None,
            }
        self._scopes(request, subject.scopes)

    def _live(self, request: Any, name: str, type_name: str) -> Optional[Grant]:
        token = _param(request, name)
        if token is None:
            return None
        if _param(request, type_name) != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError(f"unsupported {type_name}", request=request)
        server = self.request_validator._server
        with server._lock:
            grant: Optional[Grant] = server._access.get(token)
        if grant is None or grant.revoked or server.clock.monotonic() >= grant.expires_at:
            raise InvalidGrantError(f"{name} is not a live token", request=request)
        return grant

    def extend_token(self, token: dict[str, Any], request: Any) -> None:
        token["issued_token_type"] = ACCESS_TOKEN_TYPE


class DeviceCodeGrant(_ExtraGrant):
    """RFC 8628 §3.4-3.5: pending, slow_down (polling faster than the interval, which then
    grows by 5 s), expired_token, access_denied, or the token once approved."""

    grant_type = DEVICE_CODE

    def validate_grant(self, request: Any) -> None:
        server = self.request_validator._server
        code = _param(request, "device_code")
        now = server.clock.monotonic()
        with server._lock:
            entry = server._extra.devices.get(code or "")
            if entry is None or entry.client_id != request.client_id or entry.status == "used":
                raise InvalidGrantError("unknown device_code", request=request)
            scripted = server._extra.scripted_polls.pop(0) if server._extra.scripted_polls else ""
            too_soon = (
                entry.last_poll_monotonic is not None
                and now - entry.last_poll_monotonic < entry.interval_seconds
            )
            entry.last_poll_monotonic = now
            if scripted == "slow_down" or (too_soon and not scripted):
                entry.interval_seconds += 5
                error = "slow_down"
            elif scripted:
                error = scripted
            elif now >= entry.expires_monotonic:
                error = "expired_token"
            elif entry.status == "denied":
                error = "access_denied"
            elif entry.status == "pending":
                error = "authorization_pending"
            else:
                error = ""
                entry.status = "used"
                request.user, request.scopes = entry.user, list(entry.scopes)
        if error:
            raise _DeviceError(error, request)


class _DeviceError(OAuth2Error):  # type: ignore[misc]
    status_code = 400

    def __init__(self, error: str, request: Any) -> None:
        self.error = error
        super().__init__(request=request)


def extra_token_grants(validator: ExtraValidator) -> dict[str, Any]:
    """The token endpoint's grant handlers beyond client credentials, password, refresh."""
    from oauthlib.oauth2 import AuthorizationCodeGrant

    return {
        "authorization_code": AuthorizationCodeGrant(validator),
        JWT_BEARER: JWTBearerGrant(validator),
        TOKEN_EXCHANGE: TokenExchangeGrant(validator),
        DEVICE_CODE: DeviceCodeGrant(validator),
    }

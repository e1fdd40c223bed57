"""The test server's endpoints beyond the token endpoint and the resource: authorization
(auto-approved, no browser), device authorization, revocation, and the two metadata
documents; plus the knobs and helpers :class:`~requests_tokenauth.testing.AuthServer` gets
from :class:`ExtraEndpoints`. The request handler calls in through
:meth:`ExtraEndpoints._serve_extra_route`."""

from __future__ import annotations

import secrets
import threading
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlencode, urlsplit

from oauthlib.common import Request
from oauthlib.oauth2 import (
    AuthorizationCodeGrant,
    AuthorizationEndpoint,
    FatalClientError,
    OAuth2Error,
    RevocationEndpoint,
)

from .._clock import Clock
from ._extra_oauth import ExtraValidator
from ._handler import Handler
from ._keys import private_key_pem
from ._state import (
    DEVICE_CODE,
    GRANT_TYPES,
    JWT_BEARER,
    TOKEN_EXCHANGE,
    DeviceEntry,
    ExtraState,
    new_token,
)

#: Client-authentication methods the token, device and revocation endpoints accept.
AUTH_METHODS_SUPPORTED = (
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "none",
)

#: The two metadata documents (RFC 8414 and OpenID Connect Discovery), by well-known name.
METADATA_DOCUMENTS = ("oauth-authorization-server", "openid-configuration")

_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # RFC 8628 §6.1: no vowels, no look-alikes


class ExtraEndpoints:
    """Mixed into :class:`AuthServer`: what the grants beyond client credentials and
    password need on the server side. Knobs are plain attributes, changeable at any time:

    ``authorize_user``
        who approves at ``/authorize`` (default ``"alice"``); ``None`` denies
        (the redirect carries ``error=access_denied``).
    ``metadata_issuer``
        the ``issuer`` the metadata documents claim (default: :attr:`url`); set it to
        something else to test that clients refuse mismatched metadata.
    ``metadata_documents``
        which of ``"oauth-authorization-server"`` and ``"openid-configuration"`` are served.
    ``device_code_lifetime_seconds``, ``device_interval_seconds``, ``code_lifetime_seconds``
        lifetimes and the device polling interval.
    ``strict_assertion_audience``
        when true (the default), a client assertion's ``aud`` must be the URL of the
        endpoint it is sent to, so one seen at ``/revoke`` is refused at ``/token``; when
        false, the issuer or any endpoint of this server is accepted anywhere.
    """

    _extra: ExtraState
    authorize_user: Optional[str]
    metadata_issuer: Optional[str]
    metadata_documents: set[str]
    device_code_lifetime_seconds: float
    device_interval_seconds: float
    code_lifetime_seconds: float
    strict_assertion_audience: bool
    # shared with the rest of AuthServer, which sets them up
    _lock: threading.Lock
    clock: Clock

    if TYPE_CHECKING:

        @property
        def url(self) -> str: ...

        def add_client(
            self,
            client_id: str,
            client_secret: Optional[str] = None,
            *,
            grant_types: tuple[str, ...] = ...,
            scopes: tuple[str, ...] = ...,
        ) -> None: ...

    def _init_extra(self, validator: ExtraValidator, bearer: Any) -> None:
        self._extra = ExtraState()
        self.authorize_user = "alice"
        self.metadata_issuer = None
        self.metadata_documents = set(METADATA_DOCUMENTS)
        self.device_code_lifetime_seconds = 600.0
        self.device_interval_seconds = 5.0
        self.code_lifetime_seconds = 60.0
        self.strict_assertion_audience = True
        self._extra_counts: dict[str, int] = {"metadata": 0, "revocation": 0, "device": 0}
        self._validator = validator
        self._authorization = AuthorizationEndpoint(
            "code", bearer, {"code": AuthorizationCodeGrant(validator)}
        )
        self._revocation = RevocationEndpoint(validator)
        self.add_client("web", "web-secret", grant_types=("authorization_code", "refresh_token"))
        self.add_client("device", None, grant_types=(DEVICE_CODE, "refresh_token"))
        self.add_client("robot", None, grant_types=(JWT_BEARER,))
        self.add_client("gateway", "gateway-secret", grant_types=(TOKEN_EXCHANGE,))

    # -- addresses -----------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The issuer identifier: :attr:`url` (what ``from_issuer`` is given)."""
        return self.url

    def _audiences(self, endpoint: Optional[str] = None) -> list[str]:
        """What a JWT's ``aud`` may name: the issuer or one of this server's endpoints; for
        a client assertion sent to ``endpoint`` (a path) under ``strict_assertion_audience``,
        only that endpoint's URL."""
        url = self.issuer
        if endpoint is not None and self.strict_assertion_audience:
            return [url + endpoint]
        return [url, url + "/token", url + "/revoke", url + "/device_authorization"]

    # -- keys and device approval --------------------------------------------------

    @staticmethod
    def private_key_pem(algorithm: str = "RS256") -> str:
        """A private key (PEM) this server trusts, for ``RS256`` or ``ES256``: any client
        may sign ``private_key_jwt`` assertions with it, and JWT bearer assertions signed
        with it are accepted (any ``iss``; ``sub`` becomes the token's user). Needs the
        ``jwt`` extra."""
        return private_key_pem(algorithm)

    def approve_device(self, user_code: str, user: str = "alice") -> None:
        """Approve a pending device authorization as ``user`` (what the person does on
        the verification page).

        :raises KeyError: no pending authorization has this user code.
        """
        self._device_decide(user_code, "approved", user)

    def deny_device(self, user_code: str) -> None:
        """Deny a pending device authorization: its next poll answers ``access_denied``."""
        self._device_decide(user_code, "denied", None)

    def set_device_responses(self, *errors: str) -> None:
        """Make the next device-code polls answer these RFC 8628 §3.5 errors in order
        (``authorization_pending``, ``slow_down``, ``expired_token``, ``access_denied``),
        whatever their state; later polls behave normally. (A poll sooner than the
        interval always gets ``slow_down``, and the interval grows by 5 s.)"""
        with self._lock:
            self._extra.scripted_polls = list(errors)

    def _device_decide(self, user_code: str, status: str, user: Optional[str]) -> None:
        with self._lock:
            for entry in self._extra.devices.values():
                if entry.user_code == user_code and entry.status == "pending":
                    entry.status, entry.user = status, user
                    return
        raise KeyError(user_code)

    # -- counters ------------------------------------------------------------------

    @property
    def metadata_requests(self) -> int:
        """Requests for either metadata document."""
        return self._count("metadata")

    @property
    def revocation_requests(self) -> int:
        """Requests to ``/revoke``."""
        return self._count("revocation")

    @property
    def device_authorization_requests(self) -> int:
        """Requests to ``/device_authorization``."""
        return self._count("device")

    @property
    def last_token_exchange(self) -> dict[str, Any]:
        """``audience``, ``resource`` and whether an actor token came, of the last
        successful token exchange."""
        with self._lock:
            return dict(self._extra.last_exchange)

    def _count(self, name: str, add: int = 0) -> int:
        with self._lock:
            self._extra_counts[name] += add
            return self._extra_counts[name]

    # -- the endpoints -------------------------------------------------------------

    def _metadata(self) -> dict[str, Any]:
        url = self.issuer
        return {
            "issuer": self.metadata_issuer or url,
            "authorization_endpoint": url + "/authorize",
            "token_endpoint": url + "/token",
            "device_authorization_endpoint": url + "/device_authorization",
            "revocation_endpoint": url + "/revoke",
            "grant_types_supported": sorted(GRANT_TYPES),
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["read", "write"],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS_SUPPORTED),
            "token_endpoint_auth_signing_alg_values_supported": ["HS256", "RS256", "ES256"],
            "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS_SUPPORTED),
        }

    def _authorize(self, target: str) -> tuple[int, dict[str, str], bytes]:
        uri = "https://127.0.0.1" + target  # see AuthServer._token_response
        try:
            scopes, credentials = self._authorization.validate_authorization_request(uri)
        except FatalClientError as exc:  # bad client or redirect URI: never redirect
            return exc.status_code, {"Content-Type": "application/json"}, exc.json.encode()
        except OAuth2Error as exc:
            return 302, {"Location": exc.in_uri(exc.redirect_uri)}, b""
        if self.authorize_user is None:
            query = {"error": "access_denied", "state": credentials.get("state") or ""}
            return 302, {"Location": f"{credentials['redirect_uri']}?{urlencode(query)}"}, b""
        headers, body, status = self._authorization.create_authorization_response(
            uri, scopes=scopes, credentials={"user": self.authorize_user}
        )
        return status, dict(headers), (body or "").encode()

    def _device_authorization(self, body: str, headers: dict[str, str]) -> tuple[int, Any]:
        validator = self._validator
        request = Request("https://127.0.0.1/device_authorization", "POST", body, headers)
        if validator.client_authentication_required(request):
            ok = validator.authenticate_client(request)
        else:
            ok = validator.authenticate_client_id(request.client_id, request)
        if not ok:
            return 401, {"error": "invalid_client"}
        client = request.client
        if DEVICE_CODE not in client.grant_types:
            return 400, {"error": "unauthorized_client"}
        scopes = tuple((request.scope or "").split()) or client.scopes
        if not all(s in client.scopes for s in scopes):
            return 400, {"error": "invalid_scope"}
        device_code = new_token()
        user_code = "-".join(
            "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(4)) for _ in range(2)
        )
        with self._lock:
            self._extra.devices[device_code] = DeviceEntry(
                client.client_id,
                scopes,
                user_code,
                self.clock.monotonic() + self.device_code_lifetime_seconds,
                self.device_interval_seconds,
            )
        verification = self.issuer + "/device"
        return 200, {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verification,
            "verification_uri_complete": f"{verification}?{urlencode({'user_code': user_code})}",
            "expires_in": self.device_code_lifetime_seconds,
            "interval": self.device_interval_seconds,
        }

    def _revoke(self, body: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
        out_headers, text, status = self._revocation.create_revocation_response(
            "https://127.0.0.1/revoke", "POST", body, headers
        )
        return status, dict(out_headers or {}), text or ""

    # -- what the request handler calls ---------------------------------------------

    def _serve_extra_route(self, handler: Handler, path: str, body: bytes) -> bool:
        """Serve ``path`` if it is one of the endpoints of :class:`ExtraEndpoints`."""
        method = handler.command
        if path.startswith("/.well-known/") and method in ("GET", "HEAD"):
            self._count("metadata", 1)
            name = path[len("/.well-known/") :]
            if name in self.metadata_documents:
                handler._send_json(200, self._metadata())
            else:
                handler._send_json(404, {"error": "not_found"})
            return True
        if path == "/authorize" and method == "GET":
            status, headers, payload = self._authorize(handler.path)
            content_type = headers.pop("Content-Type", "text/plain")
            handler._send(status, payload, content_type, headers)
            return True
        form = body.decode("utf-8", "replace")
        headers = dict(handler.headers)
        if path == "/device_authorization" and method == "POST":
            self._count("device", 1)
            status, payload = self._device_authorization(form, headers)
            handler._send_json(status, payload, {"Cache-Control": "no-store"})
            return True
        if path == "/revoke" and method == "POST":
            self._count("revocation", 1)
            status, out_headers, text = self._revoke(form, headers)
            content_type = out_headers.pop("Content-Type", "application/json")
            handler._send(status, text.encode(), content_type, out_headers)
            return True
        if path == "/device" and method == "GET":
            query = urlsplit(handler.path).query
            handler._send(200, f"device verification page ({query})".encode(), "text/plain")
            return True
        return False

"""The base of every grant: options, discovery, the renewal rule (refresh, or run the grant
again) and revocation. How its requests are built, sent over a private
:class:`requests.Session` and parsed is :class:`._token_request.TokenRequests`, its base."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional, TypeVar, cast

import requests
from oauthlib.oauth2 import Client

from .._clock import Clock
from .._errors import ConfigurationError, InvalidGrantError
from .._options import AuthMethod, Scope, Timeout, TokenTypeHint
from .._token import Token
from ._client_auth import ClientAssertion
from ._compliance import ComplianceHooks
from ._jwt import Key
from ._response import raise_for_error
from ._token_request import TokenRequests
from ._transport import (
    DEFAULT_MAX_REQUEST_SECONDS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT_SECONDS,
    Transport,
)
from ._urls import check_url

if TYPE_CHECKING:
    from typing_extensions import Concatenate, ParamSpec  # typing has them from 3.10 on

    from .._dpop import DPoPProofs

    #: The keyword parameters of a grant's constructor, which ``from_issuer`` takes too.
    P = ParamSpec("P")

log = logging.getLogger("requests_tokenauth")

#: The client-authentication methods (RFC 7591 ``token_endpoint_auth_method``) supported here.
AUTH_METHODS = (
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "none",
    "tls_client_auth",
)

#: Methods that send the client secret itself or sign with it.
_SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post", "client_secret_jwt"})

G = TypeVar("G", bound="Grant")


class Grant(TokenRequests):
    """Base of every grant: client authentication, the token exchange and its errors.

    A grant is safe to share between threads only under one :class:`TokenManager` (which
    serialises :meth:`fetch`); it keeps no token itself.

    :param token_url: the token endpoint; ``https``, or ``http`` to a loopback host.
    :param client_id: the OAuth client id.
    :param client_secret: the client secret, for confidential clients.
    :param scope: scopes to request, as a list or a space-separated string.
    :param auth_method: how the client authenticates (RFC 7591 names):
        ``client_secret_basic`` (default; id and secret form-urlencoded, RFC 6749 §2.3.1),
        ``client_secret_post``, ``client_secret_jwt`` (an HMAC-signed assertion, RFC 7523
        §2.2), ``private_key_jwt`` (an assertion signed with ``client_key``), ``none`` (a
        public client: ``client_id`` in the body) or ``tls_client_auth`` (RFC 8705: the TLS
        client certificate of ``session.cert``, ``client_id`` in the body). The JWT methods
        need the ``jwt`` extra and sign a fresh assertion (new ``jti``, 60 s ``exp``, ``aud``
        the endpoint called: token, revocation or device authorization) for every request;
        the key and algorithm are checked, and a probe signed, at construction.
    :param client_key: the private key for ``private_key_jwt`` (PEM, or a ``cryptography``
        key object); never logged or shown.
    :param client_key_id: the ``kid`` header of client assertions, if the server needs it.
    :param client_assertion_algorithm: the JWS algorithm of client assertions (default:
        HS256 for ``client_secret_jwt``; from the key type for ``private_key_jwt``).
    :param revocation_url: the RFC 7009 revocation endpoint, for :meth:`revoke`.
    :param extra: more token-request parameters, e.g. ``{"audience": ...}``; sent with every
        token request of this grant, refreshes included.
    :param session: a :class:`requests.Session` for token requests (proxies, TLS, mTLS).
        Its ``auth`` is never applied to token requests. Default: a private one.
    :param timeout: seconds (or ``(connect, read)``) before a token request gives up
        waiting to connect, or for the next bytes of the answer.
    :param max_request_seconds: the total deadline of one token request: every attempt,
        the whole answer read (default 35 s). A server that drips its answer gets a
        :class:`RequestDeadlineError`. Read it back as :attr:`max_request_seconds`.
    :param max_response_bytes: answers longer than this are refused with a
        :class:`ResponseTooLargeError` (default 1 MiB).
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
        scope: Scope = None,
        auth_method: AuthMethod = "client_secret_basic",
        extra: Optional[Mapping[str, str]] = None,
        session: Optional[requests.Session] = None,
        timeout: Timeout = DEFAULT_TIMEOUT_SECONDS,
        max_request_seconds: float = DEFAULT_MAX_REQUEST_SECONDS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        allow_insecure_http: bool = False,
        client_key: Optional[Key] = None,
        client_key_id: Optional[str] = None,
        client_assertion_algorithm: Optional[str] = None,
        revocation_url: Optional[str] = None,
    ) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise ConfigurationError("client_id must be a non-empty string")
        if auth_method not in AUTH_METHODS:
            raise ConfigurationError(
                f"auth_method {auth_method!r} is not one of {', '.join(AUTH_METHODS)}"
            )
        if auth_method in _SECRET_METHODS and client_secret is None:
            raise ConfigurationError(
                f"auth_method {auth_method!r} needs a client_secret; use auth_method='none' "
                "for a public client"
            )
        self._assertion: Optional[ClientAssertion] = None
        if auth_method == "client_secret_jwt":
            assert client_secret is not None
            self._assertion = ClientAssertion(
                client_id,
                client_secret,
                hmac=True,
                algorithm=client_assertion_algorithm,
                key_id=client_key_id,
            )
        elif auth_method == "private_key_jwt":
            if client_key is None:
                raise ConfigurationError("auth_method 'private_key_jwt' needs a client_key")
            self._assertion = ClientAssertion(
                client_id,
                client_key,
                hmac=False,
                algorithm=client_assertion_algorithm,
                key_id=client_key_id,
            )
        elif auth_method == "tls_client_auth" and (session is None or not session.cert):
            raise ConfigurationError(
                "auth_method 'tls_client_auth' needs session= a requests.Session whose .cert "
                "is the client certificate (RFC 8705)"
            )
        self.token_url = check_url(token_url, "token URL", allow_insecure_http=allow_insecure_http)
        self.revocation_url = (
            None
            if revocation_url is None
            else check_url(
                revocation_url, "revocation URL", allow_insecure_http=allow_insecure_http
            )
        )
        self.allow_insecure_http = allow_insecure_http
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
        self._transport = Transport(session, timeout, max_request_seconds, max_response_bytes)

    @property
    def timeout(self) -> Timeout:
        """Seconds (or ``(connect, read)``) to wait for a connection or the next bytes."""
        return self._transport.timeout

    @property
    def max_request_seconds(self) -> float:
        """The total deadline of one token request, in seconds (read-only): how long a
        lock or lease held around :meth:`fetch` must last, plus the time to save."""
        return self._transport.max_request_seconds

    @property
    def max_response_bytes(self) -> int:
        """The size cap of one answer of the authorization server, in bytes (read-only)."""
        return self._transport.max_response_bytes

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.token_url!r}, client_id={self.client_id!r}, "
            f"scope={self.scope!r}, auth_method={self.auth_method!r})"
        )

    #: Set by :class:`TokenAuth` ``(dpop=...)``: token requests then carry DPoP proofs.
    _dpop: Optional[DPoPProofs] = None

    def use_dpop(self, proofs: DPoPProofs) -> None:
        """Send a DPoP proof with every token request (called by ``TokenAuth(dpop=...)``).

        :raises ConfigurationError: this grant already proves possession of another key.
        """
        if self._dpop is not None and self._dpop.key is not proofs.key:
            raise ConfigurationError("this grant already sends DPoP proofs for another key")
        self._dpop = proofs

    #: requests-oauthlib-style fixes for providers that leave the RFC; see
    #: :meth:`register_compliance_hook`. Created on first use.
    _compliance: Optional[ComplianceHooks] = None

    @property
    def compliance_hooks(self) -> ComplianceHooks:
        """The compliance hooks registered on this grant."""
        if self._compliance is None:
            self._compliance = ComplianceHooks()
        return self._compliance

    def register_compliance_hook(self, hook_type: str, hook: Callable[..., Any]) -> None:
        """Register a fix for a provider that leaves RFC 6749, exactly as on
        requests-oauthlib's ``OAuth2Session``, so its fixes work unchanged:
        ``ebay_compliance_fix(grant)``. Hook types: ``access_token_request``,
        ``refresh_token_request`` (``(url, headers, body) -> (url, headers, body)``),
        ``access_token_response``, ``refresh_token_response`` (``Response -> Response``,
        before parsing) and ``protected_request`` (``(url, headers, body) -> (url, headers,
        body)``, on each resource request, before it is stamped).

        :raises ConfigurationError: an unknown hook type.
        """
        self.compliance_hooks.register(hook_type, hook)

    @classmethod
    def from_issuer(
        cls: Callable[Concatenate[str, P], G], issuer: str, /, *args: P.args, **kwargs: P.kwargs
    ) -> G:
        """This grant, configured from the issuer's metadata (RFC 8414
        ``/.well-known/oauth-authorization-server``, else OpenID Connect
        ``/.well-known/openid-configuration``), fetched once per process and cached (with
        ``session=``, fetched with that session every time and never cached); at most
        256 KiB per document and 30 s in all.

        The document's ``issuer`` must equal ``issuer`` exactly. Its token endpoint (and the
        device, authorization and revocation endpoints, where this grant uses them) fill in
        the URLs; without ``auth_method=``, the first method the server lists as supported
        that the given credentials allow is used (``client_secret_basic`` when it lists none).

        :param issuer: the issuer identifier, e.g. ``"https://idp.example.com"``
            (positional, so :class:`JWTBearer`'s own ``issuer=`` can be passed too).
        :param kwargs: this grant's constructor parameters but the token URL (``client_id=``,
            ``session=``, ...); type checkers check them against the constructor's.
        :raises ConfigurationError: no metadata, a mismatched ``issuer``, or no usable
            endpoint or client-authentication method.
        """
        if args:  # every parameter after the token URL is keyword-only
            raise TypeError("from_issuer() takes the issuer, then keyword arguments only")
        grant_class = cast("type[Grant]", cls)  # `cls` is typed for what it accepts
        return cast(G, grant_class._from_issuer(issuer, dict(kwargs)))

    @classmethod
    def _from_issuer(cls, issuer: str, kwargs: dict[str, Any]) -> Grant:
        from ._discovery import discover, pick_auth_method

        metadata = discover(
            issuer,
            session=kwargs.get("session"),
            timeout=kwargs.get("timeout", DEFAULT_TIMEOUT_SECONDS),
            allow_insecure_http=bool(kwargs.get("allow_insecure_http", False)),
        )
        kwargs.setdefault("revocation_url", metadata.get("revocation_endpoint"))
        if "auth_method" not in kwargs:
            kwargs["auth_method"] = pick_auth_method(metadata, kwargs)
        cls._use_metadata(metadata, kwargs)
        token_url = metadata.get("token_endpoint")
        if not isinstance(token_url, str):
            raise ConfigurationError(f"the metadata of {issuer} names no token_endpoint")
        return cls(token_url, **kwargs)

    @classmethod
    def _use_metadata(cls, metadata: Mapping[str, Any], kwargs: dict[str, Any]) -> None:
        """Fill in ``kwargs`` from server metadata beyond the token and revocation
        endpoints (the device or authorization endpoint)."""

    def store_identity(self) -> Optional[str]:
        """What else selects this grant's token, for store keys: whose token it is (a
        username, a JWT subject, a digest of the user's refresh or subject token); never a
        secret. ``None`` when the client alone does.

        :raises ConfigurationError: the tokens belong to a user this grant cannot name;
            a store then needs an explicit ``store_key=``.
        """
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
        return self._run_grant(clock)

    def _run_grant(self, clock: Clock) -> Token:
        """Run this grant itself (no refresh token); grants that sign, poll or need a
        person override it."""
        return self._exchange(self._grant_body(self._client_params()), clock, self.grant_type, None)

    def _refresh_body(self, refresh_token: str) -> str:
        body: str = Client(self.client_id).prepare_refresh_body(
            refresh_token=refresh_token, **self.extra, **self._client_params()
        )
        return body

    def revoke(self, token: str, token_type_hint: TokenTypeHint, clock: Clock) -> None:
        """Revoke ``token`` at :attr:`revocation_url` (RFC 7009); an unknown or already
        revoked token counts as revoked (§2.2).

        :param token: the refresh or access token.
        :param token_type_hint: ``"refresh_token"`` or ``"access_token"``.
        :raises ConfigurationError: no revocation URL is known.
        :raises TokenRefreshError: the server refused (typed as for token requests).
        """
        if self.revocation_url is None:
            raise ConfigurationError(
                "no revocation endpoint: pass revocation_url= or use from_issuer()"
            )
        fields = [("token", token), ("token_type_hint", token_type_hint)]
        response = self._post_form(self.revocation_url, fields, clock, "revocation request")
        with response:
            if response.status_code != 200:
                raise_for_error(response, f"revocation endpoint {self.revocation_url}", clock)

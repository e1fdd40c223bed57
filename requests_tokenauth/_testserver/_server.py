"""The test server itself: :class:`AuthServer` (documented in :mod:`requests_tokenauth.testing`),
the facade on top of :mod:`requests_tokenauth._testserver`. It owns the socket and the threads
(lifecycle), assembles oauthlib's token endpoint from the validator and the grants, and gets
the rest from its mixins: :class:`._registry.Registry`, :class:`._traffic.TrafficControl`,
:class:`._hostile.HostileKnobs` and :class:`._extra_routes.ExtraEndpoints`."""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Optional

from oauthlib.oauth2 import (
    AuthorizationCodeGrant,
    BearerToken,
    ClientCredentialsGrant,
    OAuth2Error,
    RefreshTokenGrant,
    ResourceOwnerPasswordCredentialsGrant,
    TokenEndpoint,
)

from .._clock import SYSTEM_CLOCK, Clock
from ._dpop import DPoPVerifier
from ._extra_oauth import ExtraValidator
from ._extra_routes import ExtraEndpoints
from ._grant_device_code import DeviceCodeGrant
from ._grant_jwt_bearer import JWTBearerGrant
from ._grant_token_exchange import TokenExchangeGrant
from ._handler import Handler, HandlerServer
from ._hostile import HostileKnobs
from ._registry import Registry
from ._state import DEVICE_CODE, JWT_BEARER, TOKEN_EXCHANGE, ServerState, new_token
from ._traffic import TrafficControl


def extra_token_grants(validator: ExtraValidator) -> dict[str, Any]:
    """The token endpoint's grant handlers beyond client credentials, password, refresh."""
    return {
        "authorization_code": AuthorizationCodeGrant(validator),
        JWT_BEARER: JWTBearerGrant(validator),
        TOKEN_EXCHANGE: TokenExchangeGrant(validator),
        DEVICE_CODE: DeviceCodeGrant(validator),
    }


class AuthServer(ExtraEndpoints, HostileKnobs, TrafficControl, Registry, ThreadingHTTPServer):
    """An OAuth 2.0 authorization server plus protected resource on ``127.0.0.1``.

    The socket is bound on construction; :meth:`start` (or ``with``) starts serving and
    :meth:`close` (or leaving the ``with`` block) stops serving, closes the listening socket
    and every open connection, and releases any held or delayed token request.

    Plain attributes that may be changed at any time, from any thread: ``clock``,
    ``token_lifetime_seconds`` (``expires_in`` of tokens issued afterwards),
    ``rotate_refresh_tokens``, ``insufficient_scope_status``, ``token_latency_seconds``
    (real delay before each token response), ``slow_seconds`` (delay of the ``"slow"``
    fault), ``always_401`` (the resource rejects every token as ``invalid_token``) and
    ``invalid_token_status`` (401, or 403 for the 403 mode: an unknown, expired or revoked
    token gets 403 with no challenge), ``unauthorized_cookie`` (a ``Set-Cookie`` value sent
    with every resource 401), ``token_type`` (what successful token responses name their
    token type), ``require_dpop_nonce`` (DPoP proofs must carry :attr:`dpop`'s current nonce;
    without it, the token endpoint answers 400 and the resource 401 ``use_dpop_nonce`` with a
    ``DPoP-Nonce`` header) and ``bind_dpop_tokens`` (default true; false answers a token
    request that carries a valid proof with a plain ``Bearer`` token, as a server without
    DPoP support would).

    DPoP (RFC 9449): a token request with a valid ``DPoP`` proof gets a ``DPoP`` token
    bound to the proof's key; the resource then wants ``Authorization: DPoP <token>`` and
    a fresh proof of that key for each request (method, URL, ``ath``, unused ``jti``,
    ``iat`` within a minute of ``clock.time()``). :attr:`dpop` counts what it refused.

    :param clock: where token expiry is read, with ``clock.monotonic()``.
    :param token_lifetime_seconds: ``expires_in`` of issued access tokens.
    :param rotate_refresh_tokens: when true, each refresh issues a new refresh token and the
        old one stops working for good; when false, the refresh token stays valid.
    :param insufficient_scope_status: the status for ``/resource/scope/<name>`` without
        scope ``<name>``.
    :param token_latency_seconds: real delay before answering each token request.
    :param slow_seconds: how long the ``"slow"`` fault delays a token response.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        token_lifetime_seconds: int = 3600,
        rotate_refresh_tokens: bool = False,
        insufficient_scope_status: int = 403,
        token_latency_seconds: float = 0.0,
        slow_seconds: float = 5.0,
    ) -> None:
        self.clock = clock
        self.token_lifetime_seconds = token_lifetime_seconds
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.insufficient_scope_status = insufficient_scope_status
        self.token_latency_seconds = token_latency_seconds
        self.slow_seconds = slow_seconds
        self.always_401 = False
        self.require_dpop_nonce = False
        self.bind_dpop_tokens = True
        #: The status for an unknown, expired or revoked token: 401 with a Bearer challenge
        #: (RFC 6750), or 403 with no challenge, as django-oauth-toolkit's classic views and
        #: Vault answer (the 403 mode).
        self.invalid_token_status = 401
        #: A ``Set-Cookie`` value sent with every resource 401 (a load balancer's sticky
        #: session cookie, for instance); ``None``: no cookie.
        self.unauthorized_cookie: Optional[str] = None
        #: The ``token_type`` written into every successful token response, for providers
        #: that name bearer tokens oddly (``"Application Access Token"``, ``"N_A"``); the
        #: resource still wants ``Bearer``. ``None``: ``"Bearer"``.
        self.token_type: Optional[str] = None
        #: The DPoP proof checker: ``nonce``, ``rotate_nonce()``, ``rejections``, ``accepted``.
        self.dpop = DPoPVerifier(self)
        self._lock = threading.Lock()
        self._issue_lock = threading.Lock()  # makes each oauthlib token exchange atomic
        self._closing = threading.Event()
        self._connections: dict[Any, threading.Thread] = {}
        self._serve_thread: Optional[threading.Thread] = None
        self._init_registry()
        self._init_traffic()

        validator = ExtraValidator(self)
        bearer = BearerToken(
            validator, new_token, lambda request: self.token_lifetime_seconds, new_token
        )
        self._endpoint = TokenEndpoint(
            "client_credentials",
            bearer,
            {
                "client_credentials": ClientCredentialsGrant(validator),
                "password": ResourceOwnerPasswordCredentialsGrant(validator),
                "refresh_token": RefreshTokenGrant(validator),
                **extra_token_grants(validator),
            },
        )
        self._endpoint.catch_errors = True
        self.add_client("svc", "svc-secret", grant_types=("client_credentials",))
        self.add_client("app", "app-secret", grant_types=("password", "refresh_token"))
        self.add_user("alice", "wonderland")
        self._init_extra(validator, bearer)
        self._init_hostile()
        super().__init__(("127.0.0.1", 0), Handler)

    # -- lifecycle -----------------------------------------------------------------

    def server_bind(self) -> None:
        """Bind without the reverse DNS lookup :class:`http.server.HTTPServer` does."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def start(self) -> AuthServer:
        """Start serving on a daemon thread (idempotent).

        :returns: this server.
        :raises RuntimeError: if the server was closed.
        """
        if self._closing.is_set():
            raise RuntimeError("this AuthServer is closed")
        if self._serve_thread is None:
            self._serve_thread = threading.Thread(
                target=self.serve_forever, args=(0.05,), name=f"AuthServer {self.url}", daemon=True
            )
            self._serve_thread.start()
        return self

    def close(self) -> None:
        """Stop serving, release held requests and close every socket (idempotent)."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._released.set()
        if self._serve_thread is not None:
            self.shutdown()
            self._serve_thread.join()
        self.server_close()
        with self._lock:
            connections = dict(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in connections.values():
            thread.join(timeout=5.0)

    def __enter__(self) -> AuthServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Handle one connection on its own daemon thread, remembered for :meth:`close`."""
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self._lock:
            self._connections[request] = thread
            self._accepted += 1
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        """Forget and close a finished connection."""
        with self._lock:
            self._connections.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: clients hanging up mid-request are routine in these tests."""

    # -- addresses -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server_port}"

    @property
    def token_url(self) -> str:
        """The token endpoint, ``<url>/token``."""
        return self.url + "/token"

    @property
    def resource_url(self) -> str:
        """The protected resource, ``<url>/resource``."""
        return self.url + "/resource"

    # -- called by the request handler ---------------------------------------------

    def _token_response(
        self, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[dict[str, str], str, int]:
        # oauthlib is handed an https URI: this server is loopback-only, and the provider
        # side should never have a reason to insist on OAUTHLIB_INSECURE_TRANSPORT.
        uri = "https://127.0.0.1" + target
        try:
            with self._issue_lock:
                out: tuple[dict[str, str], str, int] = self._endpoint.create_token_response(
                    uri, "POST", body.decode("utf-8", "replace"), headers
                )
        except OAuth2Error as exc:  # raised (not returned) for a query string on POST
            out = ({"Content-Type": "application/json", **exc.headers}, exc.json, exc.status_code)
        if out[2] != 200:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                self._count_token_error(str(json.loads(out[1])["error"]))
        return out


if TYPE_CHECKING:  # mypy proves here that AuthServer offers what the layers below ask of it

    def _satisfies_protocols(server: AuthServer) -> tuple[HandlerServer, ServerState]:
        return server, server

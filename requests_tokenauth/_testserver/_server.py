"""The test server itself: :class:`AuthServer` (documented in :mod:`requests_tokenauth.testing`)."""

from __future__ import annotations

import collections
import contextlib
import json
import socket
import socketserver
import threading
from dataclasses import replace
from http.server import ThreadingHTTPServer
from typing import Any, Optional, Union
from urllib.parse import unquote

from oauthlib.oauth2 import (
    BearerToken,
    ClientCredentialsGrant,
    OAuth2Error,
    RefreshTokenGrant,
    ResourceOwnerPasswordCredentialsGrant,
    TokenEndpoint,
)

from .._clock import SYSTEM_CLOCK, Clock
from ._dpop import DPoPVerifier
from ._extra_oauth import ExtraValidator, extra_token_grants
from ._extra_routes import ExtraEndpoints
from ._handler import TOKEN_FAULTS, Handler
from ._hostile import HostileKnobs
from ._oauth import (
    GRANT_TYPES,
    Client,
    Fault,
    Grant,
    SeenRequest,
    new_token,
    remember_secret,
)

_SEEN_LIMIT = 10_000
_REALM = 'Bearer realm="testing"'


class AuthServer(ExtraEndpoints, HostileKnobs, ThreadingHTTPServer):
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
        self._resource_fault: Optional[list[int]] = None  # [status, remaining]
        self._lock = threading.Lock()
        self._arrivals = threading.Condition(self._lock)
        self._issue_lock = threading.Lock()  # makes each oauthlib token exchange atomic
        self._released = threading.Event()
        self._released.set()
        self._closing = threading.Event()
        self._clients: dict[str, Client] = {}
        self._users: dict[str, str] = {}
        self._access: dict[str, Grant] = {}
        self._refresh: dict[str, Grant] = {}
        self._seen: collections.deque[SeenRequest] = collections.deque(maxlen=_SEEN_LIMIT)
        self._fault: Optional[Fault] = None
        self._connections: dict[Any, threading.Thread] = {}
        self._accepted = 0
        self._serve_thread: Optional[threading.Thread] = None
        self._token_requests = self._resource_requests = self._resource_401s = 0
        self._by_grant: collections.Counter[str] = collections.Counter()
        self._errors: collections.Counter[str] = collections.Counter()

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

    # -- registrations and tokens --------------------------------------------------

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

    # -- gating and faults ---------------------------------------------------------

    def hold_token_endpoint(self) -> None:
        """Make token requests wait, once counted, until :meth:`release_token_endpoint`."""
        self._released.clear()

    def release_token_endpoint(self) -> None:
        """Let held and future token requests proceed."""
        self._released.set()

    def wait_for_token_requests(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least ``n`` token requests have arrived since the last reset.

        :param n: how many.
        :param timeout: the most seconds to wait.
        :returns: whether that many arrived in time.
        """
        with self._arrivals:
            return self._arrivals.wait_for(lambda: self._token_requests >= n, timeout)

    def set_token_fault(
        self,
        kind: str,
        *,
        count: Optional[int] = None,
        retry_after: Optional[Union[float, str]] = None,
    ) -> None:
        """Make the next ``count`` token requests misbehave (all of them when ``None``).

        Faulted requests are still counted. ``"500"``, ``"503"``, ``"429"``: that status
        with a plain-text body (``Retry-After: <retry_after>`` on 503 and 429 when given);
        ``"slow"``: wait ``slow_seconds`` (less if the server closes) and answer normally;
        ``"drop"``: close the connection without a response; ``"non_json"``: 200 with an
        HTML body; ``"no_access_token"``, ``"wrong_token_type"`` (``"mac"``),
        ``"negative_expires_in"`` (-5), ``"string_expires_in"`` (``"soon"``): a successful
        response (the token is really issued) rewritten that way; ``"invalid_grant"``
        (400) and ``"invalid_client"`` (401): that OAuth error, counted in
        :attr:`token_errors`; ``"drip"``, ``"huge_body"``, ``"endless_body"``: the token
        response sent slowly, padded or without end (see :class:`HostileKnobs`);
        ``"raw"``: what :meth:`set_raw_token_response` scripted.

        :param kind: one of :data:`TOKEN_FAULTS`.
        :param count: how many requests it affects; ``None`` until cleared.
        :param retry_after: the ``Retry-After`` value (seconds or an HTTP date).
        """
        if kind not in TOKEN_FAULTS or (count is not None and count < 1):
            raise ValueError(f"bad fault {kind!r} (count={count!r})")
        with self._lock:
            self._fault = Fault(kind, count, retry_after)

    def fail_resource(self, status: int, count: int = 1) -> None:
        """Make the next ``count`` resource requests answer ``status`` (e.g. 503) before
        any token check; they are counted in :attr:`resource_requests`.

        :param status: an HTTP error status, 400 to 599.
        :param count: how many requests it affects.
        """
        if not 400 <= status <= 599 or count < 1:
            raise ValueError(f"bad resource fault {status!r} (count={count!r})")
        with self._lock:
            self._resource_fault = [status, count]

    def _take_resource_fault(self) -> Optional[int]:
        with self._lock:
            fault = self._resource_fault
            if fault is None:
                return None
            fault[1] -= 1
            if fault[1] <= 0:
                self._resource_fault = None
            return fault[0]

    def clear_token_fault(self) -> None:
        """Let token requests behave again."""
        with self._lock:
            self._fault = None

    # -- observations --------------------------------------------------------------

    @property
    def seen(self) -> list[SeenRequest]:
        """The last 10,000 requests received, oldest first (a copy)."""
        with self._lock:
            return list(self._seen)

    def clear_seen(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._seen.clear()

    @property
    def token_requests(self) -> int:
        """``POST /token`` requests that arrived, counted on arrival, faulted ones too."""
        with self._lock:
            return self._token_requests

    @property
    def token_requests_by_grant(self) -> dict[str, int]:
        """:attr:`token_requests` by ``grant_type`` (``""`` when there was none)."""
        with self._lock:
            return dict(self._by_grant)

    @property
    def token_errors(self) -> dict[str, int]:
        """OAuth error responses of the token endpoint, by error code."""
        with self._lock:
            return dict(self._errors)

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far (keep-alive reuse shows as fewer)."""
        with self._lock:
            return self._accepted

    @property
    def resource_requests(self) -> int:
        """Requests to the protected resource."""
        with self._lock:
            return self._resource_requests

    @property
    def resource_401s(self) -> int:
        """Protected-resource responses with status 401."""
        with self._lock:
            return self._resource_401s

    def reset_counters(self) -> None:
        """Zero every counter (not :attr:`seen`)."""
        with self._lock:
            self._token_requests = self._resource_requests = self._resource_401s = 0
            self._by_grant.clear()
            self._errors.clear()

    # -- called by the request handler ---------------------------------------------

    def _record(self, seen: SeenRequest) -> None:
        with self._lock:
            self._seen.append(seen)

    def _token_arrived(self, grant_type: str) -> Optional[Fault]:
        with self._lock:
            self._token_requests += 1
            self._by_grant[grant_type] += 1
            self._arrivals.notify_all()
            fault = self._fault
            if fault is not None and fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._fault = None
            return fault

    def _count_token_error(self, error: str) -> None:
        with self._lock:
            self._errors[error] += 1

    def _count_resource(self, status: int) -> None:
        with self._lock:
            self._resource_requests += 1
            self._resource_401s += status == 401

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

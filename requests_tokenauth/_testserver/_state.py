"""The test server's state: the records it keeps (clients, grants behind tokens, faults,
requests seen, device and authorization-code entries), the secrets it handed out, and
:class:`ServerState`, the protocol through which the layers above the HTTP plumbing (the
oauthlib validators, the extension grants, the DPoP checker) read and change an
:class:`~requests_tokenauth.testing.AuthServer`.

The bottom of :mod:`requests_tokenauth._testserver`: it imports nothing else of it.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Union

from .._clock import Clock

#: The grant types the token endpoint implements.
GRANT_TYPES = frozenset(
    {
        "client_credentials",
        "password",
        "refresh_token",
        # with ._extra_oauth's validator: oauthlib's code grant, ._grant_*
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "urn:ietf:params:oauth:grant-type:device_code",
    }
)


@dataclass(frozen=True)
class SeenRequest:
    """One request as the server received it.

    :param method: the HTTP method.
    :param path: the request target, query string included.
    :param authorization: the ``Authorization`` header, or ``None`` when there was none.
    :param body_length: the length of the (de-chunked) request body.
    """

    method: str
    path: str
    authorization: Optional[str]
    body_length: int


@dataclass(frozen=True)
class Client:
    client_id: str
    client_secret: Optional[str]
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class Grant:
    """What an access or refresh token stands for."""

    client_id: str
    scopes: tuple[str, ...]
    user: Optional[str]
    expires_at: float = float("inf")
    revoked: bool = False


@dataclass
class Fault:
    kind: str
    remaining: Optional[int]
    retry_after: Optional[Union[float, str]]


_SECRETS_LIMIT = 100_000
_secrets_lock = threading.Lock()
_known_secrets: set[str] = set()


def remember_secret(value: Optional[str]) -> None:
    """Note a secret this process's test servers handed out, so tests can prove that no log
    line, repr or message ever shows one (bounded; the oldest are not tracked past it)."""
    if value:
        with _secrets_lock:
            if len(_known_secrets) < _SECRETS_LIMIT:
                _known_secrets.add(value)


def known_secrets() -> frozenset[str]:
    """Every token, client secret and password the test servers of this process issued."""
    with _secrets_lock:
        return frozenset(_known_secrets)


def new_token(request: object = None) -> str:
    """A fresh random opaque token (the signature suits oauthlib's token generators)."""
    token = secrets.token_urlsafe(32)
    remember_secret(token)
    return token


JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


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


class ServerState(Protocol):
    """What the validators, the extension grants and the DPoP checker use of an
    :class:`~requests_tokenauth.testing.AuthServer` (which satisfies it). The dicts and
    :class:`ExtraState` are guarded by ``_lock``; the rest are knobs read on each use."""

    @property
    def _lock(self) -> threading.Lock: ...

    @property
    def _clients(self) -> dict[str, Client]: ...

    @property
    def _users(self) -> dict[str, str]: ...

    @property
    def _access(self) -> dict[str, Grant]: ...

    @property
    def _refresh(self) -> dict[str, Grant]: ...

    @property
    def _extra(self) -> ExtraState: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def rotate_refresh_tokens(self) -> bool: ...

    @property
    def code_lifetime_seconds(self) -> float: ...

    @property
    def require_dpop_nonce(self) -> bool: ...

    def _audiences(self, endpoint: Optional[str] = None) -> list[str]: ...

    def _check_bearer(
        self, authorization: Optional[str], path: str
    ) -> tuple[Optional[Grant], int, str]: ...

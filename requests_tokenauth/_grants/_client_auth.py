"""Client authentication at the token endpoint: HTTP Basic (RFC 6749 §2.3.1) and JWT client
assertions (RFC 7523 §2.2, OpenID Connect Core §9): ``client_secret_jwt`` signs with the
client secret (HMAC), ``private_key_jwt`` with the client's private key. Every request
gets a fresh assertion: a new ``jti``, a short ``exp``, and as ``aud`` the endpoint it goes to."""

from __future__ import annotations

import base64
import secrets
import urllib.parse
from typing import Optional

import requests

from .._clock import Clock
from .._errors import ConfigurationError
from ._jwt import HMAC_ALGORITHMS, Key, algorithm_for, check_signing_key, jwt_module, sign

#: ``client_assertion_type`` of a JWT client assertion (RFC 7523 §2.2).
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: A client assertion is good for this long: long enough for one request's round trip,
#: short enough that a captured one is soon worthless (servers also refuse a reused ``jti``).
DEFAULT_ASSERTION_LIFETIME_SECONDS = 60


class ClientAssertion:
    """Signs client assertions for one client. Thread-safe (holds no per-request state).

    :param client_id: the client; both ``iss`` and ``sub`` of the assertion.
    :param key: the HMAC secret (``client_secret_jwt``) or private key (``private_key_jwt``).
    :param algorithm: the JWS algorithm; inferred from the key when ``None``.
    :param key_id: the ``kid`` header, when the server holds several of the client's keys.
    """

    def __init__(
        self,
        client_id: str,
        key: Key,
        *,
        hmac: bool,
        algorithm: Optional[str] = None,
        key_id: Optional[str] = None,
    ) -> None:
        jwt_module()  # fail now, with the extra to install, rather than at the first request
        if hmac:
            algorithm = algorithm or "HS256"
            if algorithm not in HMAC_ALGORITHMS:
                raise ConfigurationError(
                    f"client_secret_jwt signs with {'/'.join(HMAC_ALGORITHMS)}, not {algorithm}"
                )
        else:
            inferred = algorithm_for(key)  # also checks that the key can be read
            algorithm = algorithm or inferred
            if algorithm.startswith("HS"):
                raise ConfigurationError("private_key_jwt needs an asymmetric algorithm")
        check_signing_key(key, algorithm, hmac=hmac)  # "none", an RSA key for ES256, ...
        self.client_id = client_id
        self.algorithm = algorithm
        self.key_id = key_id
        self._key = key

    def __repr__(self) -> str:
        return f"ClientAssertion({self.client_id!r}, algorithm={self.algorithm!r}, <key>)"

    def fields(self, audience: str, clock: Clock) -> list[tuple[str, str]]:
        """The body fields that authenticate one request to ``audience``: the URL of the
        endpoint the request goes to (token, revocation, device authorization), so that an
        assertion seen by one endpoint is refused by the others (RFC 7523 §3, point 3)."""
        now = int(clock.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "exp": now + DEFAULT_ASSERTION_LIFETIME_SECONDS,
        }
        assertion = sign(claims, self._key, self.algorithm, self.key_id)
        return [("client_assertion_type", CLIENT_ASSERTION_TYPE), ("client_assertion", assertion)]


class ClientAuth(requests.auth.AuthBase):
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
        return "ClientAuth(<redacted>)"


def basic_credentials(client_id: str, client_secret: str) -> str:
    """``Authorization`` value for ``client_secret_basic``: id and secret are each
    form-urlencoded before base64 (RFC 6749 §2.3.1), so ``:``, ``%`` and non-ASCII survive."""
    pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")

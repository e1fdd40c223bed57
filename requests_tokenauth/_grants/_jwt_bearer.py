"""The JWT bearer assertion grant (RFC 7523 §2.1)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, Optional

import requests
from oauthlib.oauth2 import ServiceApplicationClient
from oauthlib.oauth2.rfc6749.parameters import prepare_token_request

from .._clock import Clock
from .._errors import ConfigurationError
from .._options import AuthMethod, Scope, Timeout
from .._token import Token
from ._base import Grant
from ._jwt import Key, algorithm_for, check_signing_key, sign
from ._transport import DEFAULT_TIMEOUT_SECONDS

#: An assertion is good for this long (RFC 7523 §3 asks for a short ``exp``; Google allows
#: at most an hour).
DEFAULT_ASSERTION_LIFETIME_SECONDS = 300


class JWTBearer(Grant):
    """The JWT bearer grant (RFC 7523 §2.1): a signed assertion (issuer, subject, audience,
    lifetime) is the grant; a service account acting as itself or for a user.

    A fresh assertion (new ``jti``, ``iat`` and ``exp`` from the clock) is signed for every
    token request, so renewal needs no refresh token and no person. oauthlib's
    ``ServiceApplicationClient`` signs only RS256 and reads the system clock, so the
    assertion is signed here (PyJWT, the ``jwt`` extra) and the body is built with
    oauthlib's ``prepare_token_request`` under its ``grant_type``. Thread-safety as for
    :class:`Grant`. Takes the :class:`Grant` parameters (``client_secret`` is optional:
    client authentication is separate from the grant, RFC 7521 §4.2; without a secret
    ``auth_method`` defaults to ``none``), plus:

    :param issuer: ``iss``: who issues the assertion (often the client or service account).
    :param subject: ``sub``: whom the token is for (the service account, or a user).
    :param key: the signing key: a PEM private key or ``cryptography`` key object, or the
        shared secret for an HMAC ``algorithm``; never logged or shown.
    :param audience: ``aud``: the authorization server (default: the token URL).
    :param algorithm: the JWS algorithm (default: from the key type: RS256, ES256, ...);
        pass ``"HS256"`` to sign with a shared secret.
    :param key_id: the ``kid`` header.
    :param lifetime_seconds: how long each assertion is valid.
    :param claims: more claims for every assertion (e.g. ``{"scope": ...}`` for Google).
    """

    grant_type = ServiceApplicationClient.grant_type

    def __init__(
        self,
        token_url: str,
        *,
        issuer: str,
        subject: str,
        key: Key,
        audience: Optional[str] = None,
        algorithm: Optional[str] = None,
        key_id: Optional[str] = None,
        lifetime_seconds: int = DEFAULT_ASSERTION_LIFETIME_SECONDS,
        claims: Optional[dict[str, Any]] = None,
        client_id: str,
        client_secret: Optional[str] = None,
        scope: Scope = None,
        auth_method: Optional[AuthMethod] = None,
        extra: Optional[Mapping[str, str]] = None,
        session: Optional[requests.Session] = None,
        timeout: Timeout = DEFAULT_TIMEOUT_SECONDS,
        allow_insecure_http: bool = False,
        client_key: Optional[Key] = None,
        client_key_id: Optional[str] = None,
        client_assertion_algorithm: Optional[str] = None,
        revocation_url: Optional[str] = None,
    ) -> None:
        if not issuer or not subject or not key:
            raise ConfigurationError("JWTBearer needs an issuer, a subject and a key")
        if lifetime_seconds <= 0:
            raise ConfigurationError("lifetime_seconds must be positive")
        if auth_method is None:  # client authentication is optional for this grant
            has_secret = client_secret is not None
            auth_method = "client_secret_basic" if has_secret else "none"
        super().__init__(
            token_url,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            auth_method=auth_method,
            extra=extra,
            session=session,
            timeout=timeout,
            allow_insecure_http=allow_insecure_http,
            client_key=client_key,
            client_key_id=client_key_id,
            client_assertion_algorithm=client_assertion_algorithm,
            revocation_url=revocation_url,
        )
        self.issuer = issuer
        self.subject = subject
        self.audience = audience or self.token_url
        self.algorithm = algorithm or algorithm_for(key)
        check_signing_key(key, self.algorithm, hmac=self.algorithm.startswith("HS"))
        self.key_id = key_id
        self.lifetime_seconds = lifetime_seconds
        self.claims = dict(claims or {})
        self._key = key

    def store_identity(self) -> Optional[str]:
        return f"{self.issuer} {self.subject} {self.audience}"

    def assertion(self, clock: Clock) -> str:
        """A freshly signed assertion for one token request."""
        now = int(clock.time())
        claims = {
            **self.claims,
            "iss": self.issuer,
            "sub": self.subject,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.lifetime_seconds,
            "jti": secrets.token_urlsafe(16),
        }
        return sign(claims, self._key, self.algorithm, self.key_id)

    def _run_grant(self, clock: Clock) -> Token:
        body: str = prepare_token_request(
            self.grant_type,
            assertion=self.assertion(clock),
            scope=list(self.scope) if self.scope else None,
            **self.extra,
            **self._client_params(),
        )
        return self._exchange(body, clock, self.grant_type, None)

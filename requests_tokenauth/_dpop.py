"""DPoP (RFC 9449): a proof-of-possession key, and a fresh proof JWT for every token request
and every resource request, with the servers' nonces.

Needs ``cryptography`` (``pip install requests-tokenauth[jwt]``), imported only when a key
is made, so the rest of the library does not depend on it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import urllib.parse
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

import requests

from ._clock import Clock
from ._entry import token_from_dict
from ._errors import ConfigurationError, DPoPDowngradeError
from ._origins import origin_of
from ._policy import challenge_error
from ._token import Token, TokenFormatError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

log = logging.getLogger("requests_tokenauth")

#: The one algorithm proofs are signed with: ECDSA P-256 with SHA-256 (every DPoP server
#: supports it; RFC 9449 §4.2 forbids symmetric ones).
ALGORITHM = "ES256"

#: How many servers' nonces are remembered before the oldest are forgotten.
DEFAULT_NONCE_LIMIT = 64

_NONCE_ERROR = "use_dpop_nonce"


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token_hash(access_token: str) -> str:
    """The ``ath`` claim: base64url of the SHA-256 of the access token (RFC 9449 §4.2)."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest())


def jwk_thumbprint(jwk: Mapping[str, str]) -> str:
    """The RFC 7638 SHA-256 thumbprint of an EC public JWK (what ``cnf.jkt`` names)."""
    members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def htu(url: str) -> str:
    """The ``htu`` claim: the target URI without query, fragment or user info, the default
    port dropped (RFC 9449 §4.2, normalised as RFC 3986 §6 asks)."""
    parts = urllib.parse.urlsplit(url)
    origin = origin_of(url)
    if origin is None:
        raise ConfigurationError("a DPoP proof needs an absolute http(s) URL")
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}[scheme]
    netloc = host if port == default else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


def _ec() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "DPoP needs the cryptography package: pip install requests-tokenauth[jwt]"
        ) from None
    return ec


class DPoPKey:
    """An ES256 (P-256) key pair whose proofs bind tokens to this client (RFC 9449).

    Immutable, so thread-safe; share one between threads. The private key never leaves
    the object: ``repr`` shows only the public key's thumbprint. Pickling carries the
    private key (as requests pickles ``session.auth``): treat a pickle as a secret.

    :param private_key: a ``cryptography`` P-256 private key; see :meth:`generate` and
        :meth:`from_pem`.
    """

    __slots__ = ("_private", "_jwk", "thumbprint")

    def __init__(self, private_key: EllipticCurvePrivateKey) -> None:
        ec = _ec()
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            private_key.curve, ec.SECP256R1
        ):
            raise ConfigurationError("a DPoP key must be a P-256 (ES256) private key")
        numbers = private_key.public_key().public_numbers()
        self._private = private_key
        self._jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }
        #: The RFC 7638 thumbprint of the public key (the ``jkt`` a server binds tokens to).
        self.thumbprint = jwk_thumbprint(self._jwk)

    @classmethod
    def generate(cls) -> DPoPKey:
        """A new random key (kept in memory only)."""
        return cls(_ec().generate_private_key(_ec().SECP256R1()))

    @classmethod
    def from_pem(cls, data: bytes, password: Optional[bytes] = None) -> DPoPKey:
        """Load a P-256 private key from PEM (PKCS#8 or SEC1), e.g. one kept across restarts.

        :raises ConfigurationError: not a P-256 private key, or the password is wrong.
        """
        _ec()
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            key = load_pem_private_key(data, password)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"not a usable PEM private key ({type(exc).__name__})"
            ) from None
        return cls(key)  # type: ignore[arg-type]

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (a new dict each call)."""
        return dict(self._jwk)

    def proof(
        self,
        method: str,
        url: str,
        *,
        issued_at: float,
        access_token: Optional[str] = None,
        nonce: Optional[str] = None,
    ) -> str:
        """A new DPoP proof JWT for one request (a fresh ``jti`` every call).

        :param method: the HTTP method (``htm``).
        :param url: the request URL; ``htu`` drops its query and fragment.
        :param issued_at: wall-clock epoch seconds (``iat``).
        :param access_token: for resource requests: hashed into ``ath``.
        :param nonce: the server's latest ``DPoP-Nonce``, if it gave one.
        """
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        from cryptography.hazmat.primitives.hashes import SHA256

        header = {"typ": "dpop+jwt", "alg": ALGORITHM, "jwk": self._jwk}
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method.upper(),
            "htu": htu(url),
            "iat": int(issued_at),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        signing_input = ".".join(
            b64url(json.dumps(part, separators=(",", ":")).encode("utf-8"))
            for part in (header, claims)
        )
        der = self._private.sign(signing_input.encode("ascii"), _ec().ECDSA(SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def __repr__(self) -> str:
        return f"DPoPKey(thumbprint={self.thumbprint!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        from cryptography.hazmat.primitives import serialization

        der = self._private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return (_key_from_der, (der,))


def _key_from_der(der: bytes) -> DPoPKey:
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    return DPoPKey(load_der_private_key(der, None))  # type: ignore[arg-type]


class DPoPProofs:
    """Makes the ``DPoP`` header of each request and remembers each server's nonce.

    Thread-safe: the key is immutable and a nonce is replaced in one assignment (a proof
    made with a nonce just superseded gets one ``use_dpop_nonce`` retry).

    :param key: the proof key.
    :param clock: where ``iat`` is read (``clock.time()``).
    :param allow_downgrade: accept (with a warning) a token the server did not bind to the
        key; by default :meth:`check_bound` refuses it.
    """

    __slots__ = ("key", "_clock", "_nonces", "allow_downgrade", "_accepted_unbound")

    def __init__(self, key: DPoPKey, clock: Clock, *, allow_downgrade: bool = False) -> None:
        if not isinstance(key, DPoPKey):
            raise ConfigurationError(f"dpop must be a DPoPKey, not {type(key).__name__}")
        self.key = key
        self._clock = clock
        self._nonces: dict[Any, str] = {}
        self.allow_downgrade = allow_downgrade
        # the ``ath`` of the last unbound token accepted with a warning (not the token: a
        # pickle of the auth must not carry it), so each one is warned about once
        self._accepted_unbound: Optional[str] = None

    def check_bound(self, token: Token, where: str) -> None:
        """Refuse a token from a request that carried a proof but that the server did not
        bind to the key (``token_type`` not ``DPoP``, RFC 9449 §5): using it would silently
        turn a sender-constrained client into a bearer one.

        :param where: names the endpoint in the message.
        :raises DPoPDowngradeError: unless ``allow_downgrade`` (then a warning is logged).
        """
        if token.token_type != "DPoP":
            self._refuse_unbound(
                token, f"{where} issued a {token.token_type} token to a DPoP request", 200
            )

    def check_adopted(self, token: Token) -> None:
        """The same rule for a token this client did not request with a proof: one given as
        ``token=`` or loaded from a shared store (saved by a client without DPoP, say).

        :raises DPoPDowngradeError: ``token`` is not DPoP-bound, unless ``allow_downgrade``
            (then a warning is logged, once per token).
        """
        if token.token_type != "DPoP" and not self._was_accepted(token):
            self._refuse_unbound(
                token,
                f"a {token.token_type} token given as token= or loaded from the token store "
                "is used with a DPoP key",
                None,
            )

    def _was_accepted(self, token: Token) -> bool:
        accepted = self._accepted_unbound
        return accepted is not None and accepted == access_token_hash(token.access_token)

    def _refuse_unbound(self, token: Token, what: str, status_code: Optional[int]) -> None:
        if self.allow_downgrade:
            log.warning("%s: using it unbound (allow_dpop_downgrade)", what)
            self._accepted_unbound = access_token_hash(token.access_token)
            return
        raise DPoPDowngradeError(
            f"{what}: it is not bound to the key, so it is not used (pass "
            "allow_dpop_downgrade=True to accept it)",
            status_code=status_code,
        )

    def header(self, method: str, url: str, access_token: Optional[str] = None) -> str:
        """A fresh proof for ``method url``, with the nonce its server gave last, if any."""
        return self.key.proof(
            method,
            url,
            issued_at=self._clock.time(),
            access_token=access_token,
            nonce=self._nonces.get(origin_of(url)),
        )

    def proof_for(self, method: str, url: str, token: Token) -> Optional[str]:
        """The ``DPoP`` header for a request to ``method url`` carrying ``token``, or
        ``None`` for a token that is not DPoP-bound (accepted with ``allow_downgrade``).

        :raises DPoPDowngradeError: ``token`` is unbound and was not accepted with
            ``allow_downgrade`` (see :meth:`check_adopted`): a stored token is checked here,
            where it is used, since it is loaded wherever the manager finds it needed.
        """
        if token.token_type == "DPoP":
            return self.header(method, url, token.access_token)
        self.check_adopted(token)
        return None

    def stamp_headers(
        self, headers: MutableMapping[str, str], method: str, url: str, token: Token
    ) -> None:
        """Set (or, for an unbound token, remove) the ``DPoP`` header in ``headers`` of a
        request to ``method url`` carrying ``token``; any client's headers.

        :raises DPoPDowngradeError: as :meth:`proof_for`.
        """
        proof = self.proof_for(method, url, token)
        if proof is None:
            headers.pop("DPoP", None)
        else:
            headers["DPoP"] = proof

    def stamp(self, request: requests.PreparedRequest, token: Token) -> None:
        """Add a proof for ``token`` to ``request`` (only DPoP-bound tokens get one).

        :raises DPoPDowngradeError: as :meth:`proof_for`.
        """
        self.stamp_headers(request.headers, request.method or "GET", request.url or "", token)

    def remember_nonce_of(self, url: Optional[str], headers: Mapping[str, str]) -> bool:
        """Keep the ``DPoP-Nonce`` in ``headers`` of a response from ``url`` (any response
        may send a new one, RFC 9449 §8.2). Returns whether it carried one."""
        nonce = headers.get("DPoP-Nonce")
        if not nonce:
            return False
        origin = origin_of(url)
        if origin is None:
            return False
        if origin not in self._nonces and len(self._nonces) >= DEFAULT_NONCE_LIMIT:
            self._nonces.clear()
        self._nonces[origin] = nonce
        return True

    def remember_nonce(self, response: requests.Response) -> bool:
        """:meth:`remember_nonce_of` a requests response."""
        url = response.url or (response.request.url if response.request else None)
        return self.remember_nonce_of(url, response.headers)

    def nonce_challenged(
        self,
        status_code: int,
        url: Optional[str],
        headers: Mapping[str, str],
        json_body: Callable[[], Any],
    ) -> bool:
        """Whether a response (``status_code``, from ``url``, with ``headers`` and a body
        that ``json_body`` decodes, raising ``ValueError`` if it cannot) asks for a proof
        with its new nonce: a token endpoint's 400 ``use_dpop_nonce``, or a resource's 401
        ``WWW-Authenticate: DPoP error="use_dpop_nonce"`` (RFC 9449 §8 and §9), in both
        cases with ``DPoP-Nonce``."""
        if not self.remember_nonce_of(url, headers):
            return False
        if status_code == 401:
            return challenge_error(headers.get("WWW-Authenticate")) == _NONCE_ERROR
        if status_code == 400:
            try:
                data = json_body()
            except ValueError:
                return False
            return isinstance(data, dict) and data.get("error") == _NONCE_ERROR
        return False

    def is_nonce_challenge(self, response: requests.Response) -> bool:
        """:meth:`nonce_challenged` for a requests response."""
        url = response.url or (response.request.url if response.request else None)
        return self.nonce_challenged(response.status_code, url, response.headers, response.json)

    def __repr__(self) -> str:
        return f"DPoPProofs({self.key!r})"


class _SendsProofs(Protocol):
    def use_dpop(self, proofs: DPoPProofs) -> None: ...


def proofs_for_grant(
    grant: _SendsProofs,
    key: Optional[DPoPKey],
    clock: Clock,
    *,
    allow_downgrade: bool,
    token: Optional[Mapping[str, Any]],
) -> Optional[DPoPProofs]:
    """A driver's ``dpop=``: the proofs for ``key`` (``None`` without one), which ``grant``
    sends with every token request from now on. A ``token=`` the server did not bind is
    refused here, where it is given (a stored one is checked where it is used:
    :meth:`DPoPProofs.stamp`).

    :raises DPoPDowngradeError: an unbound ``token``, unless ``allow_downgrade``.
    :raises ConfigurationError: ``key`` is not a :class:`DPoPKey`, or ``grant`` already
        proves possession of another key.
    """
    if key is None:
        return None
    proofs = DPoPProofs(key, clock, allow_downgrade=allow_downgrade)
    grant.use_dpop(proofs)
    if token is not None:
        try:
            given = token_from_dict(token, clock)
        except TokenFormatError:
            return proofs  # the manager reports it as a ConfigurationError
        proofs.check_adopted(given)
    return proofs

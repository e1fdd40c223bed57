"""DPoP (RFC 9449) on the test server's side: proof validation, nonces, token binding.

Written independently of the client's :mod:`requests_tokenauth._dpop` (nothing is shared),
so that a mistake on one side is caught by the other. ``cryptography`` is imported only
when a proof arrives.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import json
import secrets
import threading
from collections.abc import Mapping
from email.message import Message
from typing import Any, Optional
from urllib.parse import urlsplit

from ._state import Grant, ServerState

#: How far a proof's ``iat`` may be from the server's ``clock.time()``, in seconds.
DEFAULT_IAT_WINDOW_SECONDS = 60.0

#: How many proof ``jti`` values are remembered to refuse replays.
_JTI_LIMIT = 100_000

_DEFAULT_PORTS = {"http": 80, "https": 443}


class ProofError(Exception):
    """A proof was refused. ``reason`` is a short code counted in
    :attr:`DPoPVerifier.rejections`; ``nonce`` says the fix is the server's nonce."""

    def __init__(self, reason: str, description: str, *, nonce: bool = False) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description
        self.nonce = nonce

    @property
    def error(self) -> str:
        return "use_dpop_nonce" if self.nonce else "invalid_dpop_proof"


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _normalise(url: str) -> Optional[str]:
    """``scheme://host[:port]/path``: no query, fragment or user info; default port dropped."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    host = parts.hostname.lower()
    netloc = host if port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


def _thumbprint(jwk: Mapping[str, Any]) -> str:
    required = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    text = json.dumps(required, separators=(",", ":"), sort_keys=True)
    return _b64encode(hashlib.sha256(text.encode()).digest())


def _verify_es256(jwk: Mapping[str, Any], signing_input: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    from cryptography.hazmat.primitives.hashes import SHA256

    if len(signature) != 64:
        return False
    try:
        x = int.from_bytes(_b64decode(jwk["x"]), "big")
        y = int.from_bytes(_b64decode(jwk["y"]), "big")
        key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except (ValueError, TypeError, binascii.Error):
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(SHA256()))
    except InvalidSignature:
        return False
    return True


class DPoPVerifier:
    """Checks DPoP proofs the way RFC 9449 §4.3 lists, issues nonces, binds tokens to keys.

    Thread-safe. Reads ``server.require_dpop_nonce`` and ``server.clock`` on every check.

    :ivar iat_window_seconds: how far ``iat`` may be from the server's clock.
    """

    def __init__(self, server: ServerState) -> None:
        self._server = server
        self.iat_window_seconds = DEFAULT_IAT_WINDOW_SECONDS
        self._lock = threading.Lock()
        self._nonce = secrets.token_urlsafe(16)
        self._jtis: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._bound: dict[str, str] = {}
        self._rejections: collections.Counter[str] = collections.Counter()
        self._accepted = 0

    # -- knobs and observations ----------------------------------------------------

    @property
    def nonce(self) -> str:
        """The nonce proofs must carry while ``require_dpop_nonce`` is set."""
        with self._lock:
            return self._nonce

    def rotate_nonce(self) -> str:
        """Issue a new nonce; proofs with the old one are then refused (``use_dpop_nonce``)."""
        with self._lock:
            self._nonce = secrets.token_urlsafe(16)
            return self._nonce

    @property
    def rejections(self) -> dict[str, int]:
        """Refused proofs by reason: ``missing``, ``malformed``, ``typ``, ``alg``, ``jwk``,
        ``signature``, ``htm``, ``htu``, ``iat``, ``ath``, ``nonce``, ``replay``, ``jkt``
        (a token used with another key) and ``bearer`` (a DPoP token sent as Bearer)."""
        with self._lock:
            return dict(self._rejections)

    @property
    def accepted(self) -> int:
        """Proofs accepted so far."""
        with self._lock:
            return self._accepted

    def bound_key(self, access_token: str) -> Optional[str]:
        """The ``jkt`` an access token is bound to, or ``None`` for a bearer token."""
        with self._lock:
            return self._bound.get(access_token)

    # -- checks ----------------------------------------------------------------------

    def verify(
        self, proofs: list[str], method: str, url: str, access_token: Optional[str] = None
    ) -> str:
        """Check one request's proof; returns the thumbprint of its key.

        :raises ProofError: the proof is missing, malformed, for another request, stale,
            replayed, without the current nonce (when required), or its ``ath`` is wrong.
        """
        try:
            jkt, jti = self._check(proofs, method, url, access_token)
        except ProofError as exc:
            with self._lock:
                self._rejections[exc.reason] += 1
            raise
        with self._lock:
            if jti in self._jtis:
                self._rejections["replay"] += 1
                raise ProofError("replay", "this proof was used before (jti)")
            self._jtis[jti] = None
            if len(self._jtis) > _JTI_LIMIT:
                self._jtis.popitem(last=False)
            self._accepted += 1
        return jkt

    def _check(
        self, proofs: list[str], method: str, url: str, access_token: Optional[str]
    ) -> tuple[str, str]:
        if len(proofs) != 1:
            raise ProofError("missing", "exactly one DPoP header is required")
        try:
            head_b64, claims_b64, sig_b64 = proofs[0].strip().split(".")
            header = json.loads(_b64decode(head_b64))
            claims = json.loads(_b64decode(claims_b64))
            signature = _b64decode(sig_b64)
        except (ValueError, binascii.Error):
            raise ProofError("malformed", "the DPoP proof is not a JWS") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise ProofError("malformed", "the DPoP proof is not a JWS")
        if header.get("typ") != "dpop+jwt":
            raise ProofError("typ", "typ must be dpop+jwt")
        if header.get("alg") != "ES256":
            raise ProofError("alg", "only ES256 proofs are accepted")
        jwk = header.get("jwk")
        if (
            not isinstance(jwk, dict)
            or "d" in jwk
            or jwk.get("kty") != "EC"
            or jwk.get("crv") != "P-256"
            or not all(isinstance(jwk.get(k), str) for k in ("x", "y"))
        ):
            raise ProofError("jwk", "jwk must be a public P-256 key")
        if not _verify_es256(jwk, f"{head_b64}.{claims_b64}".encode("ascii"), signature):
            raise ProofError("signature", "the DPoP proof's signature does not verify")
        jti, htm, htu, iat = (claims.get(k) for k in ("jti", "htm", "htu", "iat"))
        if not isinstance(jti, str) or not jti or not isinstance(htm, str):
            raise ProofError("malformed", "jti and htm are required")
        if htm != method:
            raise ProofError("htm", "htm does not match the request method")
        if not isinstance(htu, str) or _normalise(htu) != _normalise(url):
            raise ProofError("htu", "htu does not match the request URL")
        now = self._server.clock.time()
        if not isinstance(iat, (int, float)) or abs(now - iat) > self.iat_window_seconds:
            raise ProofError("iat", "iat is too far from the server's clock")
        if access_token is not None:
            digest = _b64encode(hashlib.sha256(access_token.encode()).digest())
            if claims.get("ath") != digest:
                raise ProofError("ath", "ath does not match the access token")
        if self._server.require_dpop_nonce and claims.get("nonce") != self.nonce:
            raise ProofError("nonce", "a DPoP nonce is required", nonce=True)
        return _thumbprint(jwk), jti

    # -- what the request handler calls ---------------------------------------------

    def check_token_request(
        self, headers: Message, url: str
    ) -> tuple[Optional[str], Optional[tuple[int, dict[str, str], dict[str, str]]]]:
        """Judge a token request: ``(jkt or None, rejection or None)``; a rejection is
        ``(status, JSON body, headers)``. Without a DPoP header it is a bearer request."""
        proofs = headers.get_all("DPoP") or []
        if not proofs:
            return None, None
        try:
            return self.verify(proofs, "POST", url), None
        except ProofError as exc:
            extra = {"Cache-Control": "no-store"}
            if exc.nonce:
                extra["DPoP-Nonce"] = self.nonce
            body = {"error": exc.error, "error_description": exc.description}
            return None, (400, body, extra)

    def bind(self, response_text: str, jkt: str) -> str:
        """Turn a successful token response into a DPoP one bound to ``jkt``."""
        token = json.loads(response_text)
        token["token_type"] = "DPoP"
        with self._lock:
            self._bound[token["access_token"]] = jkt
        return json.dumps(token)

    def check_resource(
        self, method: str, url: str, headers: Message, path: str
    ) -> tuple[Optional[Grant], int, str, dict[str, str]]:
        """Judge a resource request: ``(grant or None, status, WWW-Authenticate, headers)``.

        A ``DPoP`` token needs a valid proof of the key it is bound to; a bound token sent
        as ``Bearer`` is refused; anything else is judged as a bearer token.
        """
        scheme, _, token = (headers["Authorization"] or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token and self.bound_key(token) is not None:
            with self._lock:
                self._rejections["bearer"] += 1
            detail = 'error="invalid_token", error_description="a DPoP token needs a proof"'
            return None, 401, f'Bearer realm="testing", {detail}', {}
        if scheme.lower() != "dpop" or not token:
            grant, status, challenge = self._server._check_bearer(headers["Authorization"], path)
            return grant, status, challenge, {}
        try:
            jkt = self.verify(headers.get_all("DPoP") or [], method, url, token)
        except ProofError as exc:
            extra = {"DPoP-Nonce": self.nonce} if exc.nonce else {}
            challenge = f'DPoP algs="ES256", error="{exc.error}", error_description="{exc}"'
            return None, 401, challenge, extra
        if self.bound_key(token) != jkt:
            with self._lock:
                self._rejections["jkt"] += 1
            detail = 'error="invalid_token", error_description="not bound to this key"'
            return None, 401, f'DPoP algs="ES256", {detail}', {}
        grant, status, challenge = self._server._check_bearer(f"Bearer {token}", path)
        if challenge.startswith("Bearer "):
            challenge = "DPoP " + challenge[len("Bearer ") :]
        return grant, status, challenge, {}

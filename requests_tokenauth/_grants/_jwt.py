"""JWT signing through PyJWT, imported lazily: it is the optional ``jwt`` extra, and the
package must import (and every non-JWT grant work) without it."""

from __future__ import annotations

from typing import Any, Optional, Union

from .._errors import ConfigurationError

#: What to install for JWT client authentication and the JWT bearer grant.
JWT_EXTRA = 'pip install "requests-tokenauth[jwt]"'

#: Algorithms for HMAC keys (``client_secret_jwt``), by preference.
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")

#: Asymmetric algorithms by the key type they need (``EC:<curve>`` for ECDSA). ``none`` and
#: anything else unlisted is refused.
ASYMMETRIC_ALGORITHMS = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC:secp256r1",
    "ES384": "EC:secp384r1",
    "ES512": "EC:secp521r1",
    "EdDSA": "EdDSA",
}

Key = Union[str, bytes, Any]  # PEM text or bytes, or a ``cryptography`` private key object


def jwt_module() -> Any:
    """PyJWT, or a :class:`ConfigurationError` naming the extra to install."""
    try:
        import jwt
    except ImportError:
        raise ConfigurationError(
            f"JWT signing needs PyJWT with cryptography: {JWT_EXTRA}"
        ) from None
    return jwt


def load_private_key(key: Key) -> Any:
    """The ``cryptography`` private key of ``key`` (PEM text/bytes, or a key object).

    :raises ConfigurationError: the key cannot be read (the message never shows it).
    """
    if not isinstance(key, (str, bytes)):
        return key
    jwt_module()
    try:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:
        raise ConfigurationError(f"private keys need cryptography: {JWT_EXTRA}") from None
    data = key.encode("ascii") if isinstance(key, str) else key
    try:
        return load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"the private key is not an unencrypted PEM private key ({type(exc).__name__})"
        ) from None


def algorithm_for(key: Key) -> str:
    """The JWS algorithm that suits a private key: RS256 for RSA, ES256/384/512 for EC by
    curve, EdDSA for Ed25519/Ed448.

    :raises ConfigurationError: an unsupported key type.
    """
    private = load_private_key(key)
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(private, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(private, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if private.curve.name in by_curve:
            return by_curve[private.curve.name]
    if isinstance(private, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return "EdDSA"
    raise ConfigurationError(f"unsupported private key type {type(private).__name__}")


def _key_kind(private: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(private, rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return f"EC:{private.curve.name}"
    if isinstance(private, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return "EdDSA"
    return type(private).__name__


def check_signing_key(key: Key, algorithm: str, *, hmac: bool) -> None:
    """Refuse, at construction, a key and algorithm that cannot make a valid signature, then
    sign a probe: a bad pair must not surface only at the first token request (where it
    would fail again after every backoff).

    :param hmac: ``key`` is a shared secret (an ``HS*`` algorithm), else a private key.
    :raises ConfigurationError: ``none`` or an unknown algorithm, a key of the wrong type or
        curve for it, or PyJWT refusing to sign (the message never shows the key).
    """
    if hmac:
        if algorithm not in HMAC_ALGORITHMS:
            raise ConfigurationError(
                f"a shared secret signs with {'/'.join(HMAC_ALGORITHMS)}, not {algorithm!r}"
            )
    else:
        needed = ASYMMETRIC_ALGORITHMS.get(algorithm)
        if needed is None:
            raise ConfigurationError(
                f"algorithm {algorithm!r} is not accepted for a private key; use one of "
                f"{', '.join(ASYMMETRIC_ALGORITHMS)}"
            )
        kind = _key_kind(load_private_key(key))
        if kind != needed:
            wanted, got = needed.replace(":", " "), kind.replace(":", " ")
            raise ConfigurationError(f"{algorithm} needs an {wanted} key, not {got}")
    sign({"probe": True}, key, algorithm)


def sign(claims: dict[str, Any], key: Key, algorithm: str, key_id: Optional[str] = None) -> str:
    """A compact JWS of ``claims``.

    :raises ConfigurationError: PyJWT is missing, or cannot sign with this key and algorithm.
    """
    jwt = jwt_module()
    headers = {"kid": key_id} if key_id else None
    try:
        token: str = jwt.encode(claims, key, algorithm=algorithm, headers=headers)
    except NotImplementedError:  # PyJWT without cryptography has no RS/ES/EdDSA
        raise ConfigurationError(f"{algorithm} signing needs cryptography: {JWT_EXTRA}") from None
    except (jwt.exceptions.PyJWTError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"could not sign a JWT with {algorithm} ({type(exc).__name__})"
        ) from None
    return token

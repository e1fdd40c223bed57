"""The test server's key pairs: the process-wide ``RS256`` and ``ES256`` keys it trusts for
``private_key_jwt`` client assertions and JWT bearer assertions (needs ``cryptography``)."""

from __future__ import annotations

import threading
from typing import Any

from ._state import remember_secret

_keys_lock = threading.Lock()
_keys: dict[str, Any] = {}  # algorithm -> private key, shared by the servers of a process


def private_key(algorithm: str) -> Any:
    """The process-wide test key pair for ``RS256`` or ``ES256`` (made on first use)."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
    except ImportError:
        raise RuntimeError(
            'the test server\'s keys need cryptography: pip install "requests-tokenauth[jwt]"'
        ) from None

    with _keys_lock:
        if algorithm not in _keys:
            if algorithm == "RS256":
                _keys[algorithm] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            elif algorithm == "ES256":
                _keys[algorithm] = ec.generate_private_key(ec.SECP256R1())
            else:
                raise ValueError(f"the test server has no {algorithm} key")
        return _keys[algorithm]


def private_key_pem(algorithm: str) -> str:
    """:func:`private_key` as unencrypted PKCS#8 PEM (remembered as a secret)."""
    from cryptography.hazmat.primitives import serialization

    pem: str = (
        private_key(algorithm)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode("ascii")
    )
    remember_secret(pem)
    return pem

"""How stores encode token dicts: JSON text, with optional encryption at rest of the refresh
token (Fernet, from the ``cryptography`` package).

Stores write :func:`encode`'s text and read it back with :func:`decode`. Only the refresh
token is encrypted: it is the long-lived credential, while the rest of the dict (access
token, expiry, scope) stays readable for operators. The ``cryptography`` package is
imported only when a key is given.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Optional, Union

from .._errors import ConfigurationError, TokenStoreError

#: The field that holds the encrypted refresh token in a stored dict; ``refresh_token`` is
#: then absent, so a reader without the key never sends ciphertext as a refresh token.
ENCRYPTED_FIELD = "refresh_token_fernet"

#: What to install for :class:`RefreshTokenCipher`.
EXTRA_HINT = "pip install 'requests-tokenauth[encryption]'"

Key = Union[str, bytes]
#: One Fernet key, or several (the first encrypts, any of them decrypts: key rotation).
EncryptionKey = Union[Key, Sequence[Key]]


class RefreshTokenCipher:
    """Encrypts the ``refresh_token`` of stored token dicts with a key the user supplies.

    Thread-safe (Fernet objects keep no state between calls).

    :param key: a Fernet key (``cryptography.fernet.Fernet.generate_key()``), or a list of
        keys: the first encrypts, every one of them decrypts, so keys can be rotated.
    :raises ConfigurationError: ``cryptography`` is not installed, or a key is not a Fernet key.
    """

    def __init__(self, key: EncryptionKey) -> None:
        try:
            from cryptography.fernet import Fernet, MultiFernet
        except ImportError:
            raise ConfigurationError(
                "encryption_key needs the 'cryptography' package (the 'encryption' extra): "
                + EXTRA_HINT
            ) from None
        keys = [key] if isinstance(key, (str, bytes)) else list(key)
        if not keys:
            raise ConfigurationError("encryption_key must name at least one key")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, TypeError):
            # the message must not echo the key
            raise ConfigurationError(
                "encryption_key is not a Fernet key (32 url-safe base64-encoded bytes, "
                "as cryptography.fernet.Fernet.generate_key() makes)"
            ) from None

    def seal(self, token: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``token`` with its refresh token (if any) encrypted."""
        out = dict(token)
        refresh = out.pop("refresh_token", None)
        if isinstance(refresh, str) and refresh:
            out[ENCRYPTED_FIELD] = self._fernet.encrypt(refresh.encode("utf-8")).decode("ascii")
        return out

    def open(self, token: dict[str, Any], where: str) -> dict[str, Any]:
        """A copy of ``token`` with its refresh token decrypted. A dict saved without
        encryption loads as it is (the next save encrypts it).

        :param where: names the stored token in error messages.
        :raises TokenStoreError: the ciphertext is damaged or was made with another key.
        """
        return open_sealed(token, where, self)

    def __repr__(self) -> str:
        return "RefreshTokenCipher(<key redacted>)"


def open_sealed(
    token: dict[str, Any], where: str, cipher: Optional[RefreshTokenCipher]
) -> dict[str, Any]:
    """Decrypt ``token``'s refresh token with ``cipher``; without a cipher, a sealed dict is
    an error (sending ciphertext as a refresh token would only earn an ``invalid_grant``).

    :raises TokenStoreError: no key for a sealed token, or the wrong key, or damaged data.
    """
    sealed = token.get(ENCRYPTED_FIELD)
    if sealed is None:
        return dict(token)
    if cipher is None:
        raise TokenStoreError(
            f"{where} holds an encrypted refresh token; pass the store its encryption_key"
        )
    from cryptography.fernet import InvalidToken

    if not isinstance(sealed, str):
        raise TokenStoreError(f"{where}: {ENCRYPTED_FIELD} must be a string")
    try:
        plain = cipher._fernet.decrypt(sealed.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise TokenStoreError(
            f"{where}: the refresh token cannot be decrypted (another encryption_key, or "
            "damaged data)"
        ) from None
    out = dict(token)
    del out[ENCRYPTED_FIELD]
    out["refresh_token"] = plain
    return out


def encode(token: dict[str, Any], cipher: Optional[RefreshTokenCipher]) -> str:
    """The JSON text a store writes: sorted keys, readable by a person (``redis-cli GET``).

    :raises TokenStoreError: the dict holds something JSON cannot represent.
    """
    data = cipher.seal(token) if cipher is not None else dict(token)
    try:
        return json.dumps(data, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TokenStoreError(
            f"the token cannot be stored as JSON ({type(exc).__name__})"
        ) from None


def decode(
    text: Union[str, bytes], where: str, cipher: Optional[RefreshTokenCipher]
) -> dict[str, Any]:
    """The token dict in ``text``, as :func:`encode` wrote it.

    :param where: names the stored token in error messages (a path or a key, never content).
    :raises TokenStoreError: not UTF-8 JSON, not an object, or a refresh token that cannot be
        decrypted.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:  # its message names a position, never the content
        raise TokenStoreError(
            f"{where} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except UnicodeDecodeError:
        raise TokenStoreError(f"{where} is not UTF-8 text") from None
    if not isinstance(data, dict):
        raise TokenStoreError(f"{where} holds JSON {type(data).__name__}, not a token object")
    return open_sealed(data, where, cipher)

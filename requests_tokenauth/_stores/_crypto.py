"""How stores encode token dicts: JSON text, with optional encryption at rest (Fernet, from
the ``cryptography`` package) that also authenticates the record.

Stores write :func:`encode`'s text and read it back with :func:`decode`. With a key, the
whole token dict *and the key of the record it belongs to* are encrypted together into one
field, and every field but the refresh token is also written in clear for operators (access
token, expiry, scope). Reading checks the record's key (a ciphertext moved to another
record is refused) and that the clear fields are those that were encrypted (an edited
expiry or access token is refused); a record without that field is refused too, plaintext
or written by an older version (whose ciphertext named no record). A refused record makes
``load`` raise :class:`~requests_tokenauth.TokenStoreError`; a new token replaces it. The
``cryptography`` package is imported only when a key is given.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Optional, Union

from .._errors import ConfigurationError, TokenStoreError

#: The field that holds the encrypted record: ``{"key": ..., "token": {...}}`` as JSON, a
#: Fernet token. ``refresh_token`` is then absent in clear, so a reader without the key
#: never sends ciphertext as a refresh token.
SEALED_FIELD = "sealed_fernet"

#: The field of the first format, which encrypted the refresh token alone (not bound to its
#: record); such records are refused and replaced.
UNBOUND_FIELD = "refresh_token_fernet"

#: What to install for :class:`RefreshTokenCipher`.
EXTRA_HINT = "pip install 'requests-tokenauth[encryption]'"

Key = Union[str, bytes]
#: One Fernet key, or several (the first encrypts, any of them decrypts: key rotation).
EncryptionKey = Union[Key, Sequence[Key]]


class RefreshTokenCipher:
    """Encrypts stored token records with a key the user supplies, bound to the record's
    key, so the refresh token cannot be read and no field can be moved or edited unnoticed.

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
            self._keys = keys  # pickled instead of the Fernet objects (newer ones do not pickle)
        except (ValueError, TypeError):
            # the message must not echo the key
            raise ConfigurationError(
                "encryption_key is not a Fernet key (32 url-safe base64-encoded bytes, "
                "as cryptography.fernet.Fernet.generate_key() makes)"
            ) from None

    def __getstate__(self) -> dict[str, Any]:
        return {"keys": self._keys}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["keys"])  # type: ignore[misc]

    def seal(self, token: dict[str, Any], key: str) -> dict[str, Any]:
        """The record to store for ``token`` under ``key``: its fields but the refresh token
        in clear, and everything (with ``key``) encrypted in :data:`SEALED_FIELD`.

        :raises TypeError, ValueError: the dict holds something JSON cannot represent.
        """
        sealed = json.dumps({"key": key, "token": token}, sort_keys=True, allow_nan=False)
        out = {name: value for name, value in token.items() if name != "refresh_token"}
        out[SEALED_FIELD] = self._fernet.encrypt(sealed.encode("utf-8")).decode("ascii")
        return out

    def open(self, record: dict[str, Any], where: str, key: str) -> dict[str, Any]:
        """The token dict in ``record``, after checking that it was sealed with this key
        for ``key`` and that its clear fields were not changed.

        :param where: names the stored token in error messages.
        :raises TokenStoreError: a record that is plaintext, of the old format, for another
            key, edited, damaged, or made with another encryption key.
        """
        from cryptography.fernet import InvalidToken

        sealed = record.get(SEALED_FIELD)
        if sealed is None:
            old = UNBOUND_FIELD in record
            raise TokenStoreError(
                f"{where} "
                + (
                    "was encrypted by an older version, not bound to its key"
                    if old
                    else "is not encrypted, but this store encrypts"
                )
                + "; it is not trusted, and a new token will replace it"
            )
        if not isinstance(sealed, str):
            raise TokenStoreError(f"{where}: {SEALED_FIELD} must be a string")
        try:
            content = json.loads(self._fernet.decrypt(sealed.encode("ascii")).decode("utf-8"))
        except (InvalidToken, UnicodeError, ValueError):
            raise TokenStoreError(
                f"{where} cannot be decrypted (another encryption_key, or damaged data)"
            ) from None
        token = content.get("token") if isinstance(content, dict) else None
        if not isinstance(token, dict) or content.get("key") != key:
            raise TokenStoreError(
                f"{where} was encrypted for another key (moved from another record?); "
                "it is not trusted"
            )
        clear = {name: value for name, value in record.items() if name != SEALED_FIELD}
        if clear != {name: value for name, value in token.items() if name != "refresh_token"}:
            raise TokenStoreError(
                f"{where}: its readable fields differ from the encrypted ones (edited after "
                "it was written); it is not trusted"
            )
        return token

    def __repr__(self) -> str:
        return "RefreshTokenCipher(<key redacted>)"


def encode(token: dict[str, Any], cipher: Optional[RefreshTokenCipher], key: str) -> str:
    """The JSON text a store writes for ``token`` under ``key``: sorted keys, readable by a
    person (``redis-cli GET``), sealed with ``cipher`` when there is one.

    :raises TokenStoreError: the dict holds something JSON cannot represent.
    """
    try:
        data = cipher.seal(token, key) if cipher is not None else dict(token)
        return json.dumps(data, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TokenStoreError(
            f"the token cannot be stored as JSON ({type(exc).__name__})"
        ) from None


def decode(
    text: Union[str, bytes], where: str, cipher: Optional[RefreshTokenCipher], key: str
) -> dict[str, Any]:
    """The token dict in ``text``, as :func:`encode` wrote it for ``key``.

    :param where: names the stored token in error messages (a path or a key, never content).
    :raises TokenStoreError: not UTF-8 JSON, not an object, encrypted without a ``cipher``,
        or refused by the cipher (:meth:`RefreshTokenCipher.open`).
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
    if cipher is not None:
        return cipher.open(data, where, key)
    if SEALED_FIELD in data or UNBOUND_FIELD in data:
        raise TokenStoreError(
            f"{where} holds an encrypted token; pass the store its encryption_key"
        )
    return data

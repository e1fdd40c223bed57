"""Whose token a grant obtains, for store keys: grants that act for a user name that user
by a digest of the user's credential, or refuse to be keyed without ``store_key=``."""

from __future__ import annotations

import hashlib

from .._errors import ConfigurationError

#: Domain separation: these digests are never equal to any other hash of the same token
#: (a token fingerprint in logs, say).
_LABEL = b"requests-tokenauth store identity\x00"


def credential_digest(kind: str, credential: str) -> str:
    """A name for ``credential`` (a refresh or subject token) in a store identity: SHA-256
    over a fixed label and the value. Tokens are long random strings, so the digest tells
    two users apart without revealing either token (and the store key hashes it again)."""
    digest = hashlib.sha256(_LABEL + credential.encode("utf-8")).hexdigest()
    return f"{kind} sha256:{digest}"


def unnamed_user(grant: str, why: str) -> ConfigurationError:
    """The refusal of a grant whose tokens belong to a user it cannot name: sharing a store
    under a key without the user would hand one user's token to another."""
    return ConfigurationError(
        f"{grant} obtains tokens for a user it cannot name ({why}); with a shared store, pass "
        "store_key= naming that user, e.g. store_key=f'myapp:user:{user_id}'"
    )

"""The refresh token grant (RFC 6749 §6)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import requests

from .._errors import ConfigurationError
from .._options import AuthMethod, Scope, Timeout
from ._base import Grant
from ._identity import credential_digest, unnamed_user
from ._jwt import Key
from ._transport import DEFAULT_TIMEOUT_SECONDS


class RefreshToken(Grant):
    """The refresh token grant (RFC 6749 §6): renew a token obtained elsewhere.

    The refresh token comes from the current token (``TokenAuth(..., token=saved)``) or
    from ``refresh_token=``. Rotated refresh tokens replace the old one; a response without
    one keeps it.

    With a shared store, the default store key names the user by a digest of
    ``refresh_token=``, the token the grant was *constructed* with, so the key stays the same
    however often the token rotates (every process sharing the store starts from the same
    configured token). Without ``refresh_token=`` the grant cannot tell whose token it renews:
    a store then needs ``store_key=``. A pickle of the grant leaves ``refresh_token=`` out
    (it keeps the digest): the copy renews from the store, or from ``token=``. Takes the
    :class:`Grant` parameters, plus:

    :param refresh_token: the refresh token to start from, when no saved token is given.
    """

    grant_type = "refresh_token"
    unattended = False

    def __init__(
        self,
        token_url: str,
        *,
        refresh_token: Optional[str] = None,
        client_id: str,
        client_secret: Optional[str] = None,
        scope: Scope = None,
        auth_method: AuthMethod = "client_secret_basic",
        extra: Optional[Mapping[str, str]] = None,
        session: Optional[requests.Session] = None,
        timeout: Timeout = DEFAULT_TIMEOUT_SECONDS,
        allow_insecure_http: bool = False,
        client_key: Optional[Key] = None,
        client_key_id: Optional[str] = None,
        client_assertion_algorithm: Optional[str] = None,
        revocation_url: Optional[str] = None,
    ) -> None:
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
        self._initial_refresh_token = refresh_token
        self._identity = (
            credential_digest("refresh_token", refresh_token) if refresh_token else None
        )

    def store_identity(self) -> Optional[str]:
        if self._identity is None:
            raise unnamed_user("RefreshToken", "no refresh_token= was given")
        return self._identity

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()  # never the live dict: the original keeps its token
        state["_initial_refresh_token"] = None  # a pickle holds no token
        return state

    def _grant_body(self, client_params: dict[str, Any]) -> str:
        if not self._initial_refresh_token:
            raise ConfigurationError(
                "RefreshToken has no refresh token: pass TokenAuth(..., token=saved) with a "
                "refresh_token, or RefreshToken(..., refresh_token=...) (a pickled copy does "
                "not carry it)"
            )
        return self._refresh_body(self._initial_refresh_token)

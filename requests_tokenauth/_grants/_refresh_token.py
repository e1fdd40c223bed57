"""The refresh token grant (RFC 6749 §6)."""

from __future__ import annotations

from typing import Any, Optional

from .._errors import ConfigurationError
from ._base import Grant


class RefreshToken(Grant):
    """The refresh token grant (RFC 6749 §6): renew a token obtained elsewhere.

    The refresh token comes from the current token (``TokenAuth(..., token=saved)``) or
    from ``refresh_token=``. Rotated refresh tokens replace the old one; a response without
    one keeps it. Takes the :class:`Grant` parameters, plus:

    :param refresh_token: the refresh token to start from, when no saved token is given.
    """

    grant_type = "refresh_token"
    unattended = False

    def __init__(
        self, token_url: str, *, refresh_token: Optional[str] = None, **kwargs: Any
    ) -> None:
        super().__init__(token_url, **kwargs)
        self._initial_refresh_token = refresh_token

    def _grant_body(self, client_params: dict[str, Any]) -> str:
        if not self._initial_refresh_token:
            raise ConfigurationError(
                "RefreshToken has no refresh token: pass TokenAuth(..., token=saved) with a "
                "refresh_token, or RefreshToken(..., refresh_token=...)"
            )
        return self._refresh_body(self._initial_refresh_token)

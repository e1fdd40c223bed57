"""The resource owner password credentials grant (RFC 6749 §4.3)."""

from __future__ import annotations

from typing import Any, Optional

from oauthlib.oauth2 import LegacyApplicationClient

from .._errors import ConfigurationError
from ._base import Grant


class Password(Grant):
    """The resource owner password credentials grant (RFC 6749 §4.3): a trusted first-party
    client sends the user's name and password. (OAuth 2.1 drops it; prefer
    :class:`AuthorizationCode` or :class:`DeviceCode` where the server offers them.)

    Renews with the refresh token when the server issued one; when there is none, or the
    server rejects it with ``invalid_grant``, it signs in again with the password, once.
    Thread-safety as for :class:`Grant`. Takes the :class:`Grant` parameters, plus:

    :param username: the resource owner's user name.
    :param password: the password; never logged or shown.
    """

    grant_type = "password"

    def __init__(self, token_url: str, *, username: str, password: str, **kwargs: Any) -> None:
        if not username or not isinstance(password, str):
            raise ConfigurationError("Password needs a username and a password")
        super().__init__(token_url, **kwargs)
        self.username = username
        self._password = password

    def store_identity(self) -> Optional[str]:
        return self.username

    def _grant_body(self, client_params: dict[str, Any]) -> str:
        client = LegacyApplicationClient(self.client_id)
        body: str = client.prepare_request_body(
            username=self.username,
            password=self._password,
            scope=list(self.scope) if self.scope else None,
            **self.extra,
            **client_params,
        )
        return body

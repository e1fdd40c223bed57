"""The resource owner password credentials grant (RFC 6749 §4.3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import requests
from oauthlib.oauth2 import LegacyApplicationClient

from .._errors import ConfigurationError
from .._options import AuthMethod, Scope, Timeout
from ._base import Grant
from ._jwt import Key
from ._transport import DEFAULT_TIMEOUT_SECONDS


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

    def __init__(
        self,
        token_url: str,
        *,
        username: str,
        password: str,
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
        if not username or not isinstance(password, str):
            raise ConfigurationError("Password needs a username and a password")
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

"""Grants: one class per OAuth 2.0 grant. Each builds its token request with an oauthlib
client, makes one exchange over a private :class:`requests.Session`, and parses the answer
with oauthlib into a :class:`~requests_tokenauth.Token`. Grants know nothing of caching or
threads."""

from ._base import (
    AUTH_METHODS,
    DEFAULT_TIMEOUT_SECONDS,
    Grant,
    basic_credentials,
    check_url,
    is_loopback,
)
from ._client_credentials import ClientCredentials
from ._refresh_token import RefreshToken

__all__ = [
    "AUTH_METHODS",
    "DEFAULT_TIMEOUT_SECONDS",
    "ClientCredentials",
    "Grant",
    "RefreshToken",
    "basic_credentials",
    "check_url",
    "is_loopback",
]

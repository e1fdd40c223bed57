"""Grants: one class per OAuth 2.0 grant. Each builds its token request with an oauthlib
client, makes one exchange over a private :class:`requests.Session`, and parses the answer
with oauthlib into a :class:`~requests_tokenauth.Token`. Grants know nothing of caching or
threads."""

from ._authorization_code import AuthorizationCode, AuthorizationRequest
from ._base import AUTH_METHODS, Grant
from ._client_auth import basic_credentials
from ._client_credentials import ClientCredentials
from ._device_code import DeviceAuthorization, DeviceCode
from ._jwt_bearer import JWTBearer
from ._password import Password
from ._refresh_token import RefreshToken
from ._token_exchange import TokenExchange
from ._transport import DEFAULT_TIMEOUT_SECONDS
from ._urls import check_url, is_loopback

__all__ = [
    "AUTH_METHODS",
    "DEFAULT_TIMEOUT_SECONDS",
    "AuthorizationCode",
    "AuthorizationRequest",
    "ClientCredentials",
    "DeviceAuthorization",
    "DeviceCode",
    "Grant",
    "JWTBearer",
    "Password",
    "RefreshToken",
    "TokenExchange",
    "basic_credentials",
    "check_url",
    "is_loopback",
]

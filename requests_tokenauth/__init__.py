"""requests-tokenauth: OAuth 2.0 bearer tokens for requests, thread-safe, refreshed ahead of
expiry with one token request however many threads, and one guarded retry after a 401.

    session.auth = TokenAuth(ClientCredentials(token_url, client_id="svc", client_secret=s))
"""

from ._adapters import AuthorizedAdapter, TokenAdapter, authorize_session, wrap_adapter
from ._auth import TokenAuth
from ._clock import Clock, SystemClock
from ._dpop import DPoPKey
from ._errors import (
    AccessDeniedError,
    ConfigurationError,
    DeviceCodeExpiredError,
    DPoPDowngradeError,
    InvalidGrantError,
    MalformedTokenResponseError,
    OriginNotAllowedError,
    RequestDeadlineError,
    ResponseTooLargeError,
    StateMismatchError,
    TokenAuthError,
    TokenEndpointError,
    TokenRefreshError,
    TokenStoreError,
    UnsupportedTokenTypeError,
)
from ._events import TokenEvent
from ._grants import (
    AuthorizationCode,
    AuthorizationRequest,
    ClientCredentials,
    DeviceAuthorization,
    DeviceCode,
    Grant,
    JWTBearer,
    Password,
    RefreshToken,
    TokenExchange,
)
from ._manager import TokenManager
from ._policy import RefreshPolicy, TokenState
from ._stores import FileStore, MemoryStore, RedisStore, TokenStore
from ._token import Token

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "AuthorizationCode",
    "AuthorizationRequest",
    "AuthorizedAdapter",
    "ClientCredentials",
    "Clock",
    "ConfigurationError",
    "DPoPDowngradeError",
    "DPoPKey",
    "DeviceAuthorization",
    "DeviceCode",
    "DeviceCodeExpiredError",
    "FileStore",
    "Grant",
    "InvalidGrantError",
    "JWTBearer",
    "MalformedTokenResponseError",
    "MemoryStore",
    "OriginNotAllowedError",
    "Password",
    "RedisStore",
    "RefreshPolicy",
    "RefreshToken",
    "RequestDeadlineError",
    "ResponseTooLargeError",
    "StateMismatchError",
    "SystemClock",
    "Token",
    "TokenAdapter",
    "TokenAuth",
    "TokenAuthError",
    "TokenEndpointError",
    "TokenEvent",
    "TokenExchange",
    "TokenManager",
    "TokenRefreshError",
    "TokenState",
    "TokenStore",
    "TokenStoreError",
    "UnsupportedTokenTypeError",
    "__version__",
    "authorize_session",
    "wrap_adapter",
]

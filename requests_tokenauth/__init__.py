"""requests-tokenauth: OAuth 2.0 bearer tokens for requests, thread-safe, refreshed ahead of
expiry with one token request however many threads, and one guarded retry after a 401.

    session.auth = TokenAuth(ClientCredentials(token_url, client_id="svc", client_secret=s))
"""

from ._adapters import TokenAdapter
from ._auth import TokenAuth
from ._clock import Clock, SystemClock
from ._errors import (
    ConfigurationError,
    InvalidGrantError,
    MalformedTokenResponseError,
    TokenAuthError,
    TokenEndpointError,
    TokenRefreshError,
    TokenStoreError,
)
from ._events import TokenEvent
from ._grants import ClientCredentials, Grant, RefreshToken
from ._manager import TokenManager
from ._policy import RefreshPolicy, TokenState
from ._stores import MemoryStore, TokenStore
from ._token import Token

__version__ = "0.1.0"

__all__ = [
    "ClientCredentials",
    "Clock",
    "ConfigurationError",
    "Grant",
    "InvalidGrantError",
    "MalformedTokenResponseError",
    "MemoryStore",
    "RefreshPolicy",
    "RefreshToken",
    "SystemClock",
    "Token",
    "TokenAdapter",
    "TokenAuth",
    "TokenAuthError",
    "TokenEndpointError",
    "TokenEvent",
    "TokenManager",
    "TokenRefreshError",
    "TokenState",
    "TokenStore",
    "TokenStoreError",
    "__version__",
]

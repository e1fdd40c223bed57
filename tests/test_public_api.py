"""The public surface is deliberate: this list changes only on purpose."""

import requests

import requests_tokenauth
from requests_tokenauth import (
    ConfigurationError,
    InvalidGrantError,
    MalformedTokenResponseError,
    TokenAuthError,
    TokenEndpointError,
    TokenRefreshError,
    TokenStoreError,
)


def test_all_is_pinned() -> None:
    assert sorted(requests_tokenauth.__all__) == [
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
    for name in requests_tokenauth.__all__:
        assert hasattr(requests_tokenauth, name)


def test_errors_are_request_exceptions() -> None:
    for cls in (ConfigurationError, TokenRefreshError, TokenStoreError):
        assert issubclass(cls, TokenAuthError)
    assert issubclass(TokenAuthError, requests.exceptions.RequestException)
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(InvalidGrantError, TokenRefreshError) and not InvalidGrantError.retryable
    assert issubclass(MalformedTokenResponseError, TokenEndpointError)
    assert TokenEndpointError.retryable

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


def test_the_httpx_driver_is_a_module_of_its_own() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    import requests_tokenauth.httpx

    assert requests_tokenauth.httpx.__all__ == ["TokenAuth"]
    assert not hasattr(requests_tokenauth, "AsyncTokenAuth")
    # the package never imports httpx; without httpx, the driver names the extra
    code = (
        "import sys\n"
        "import requests_tokenauth, requests_tokenauth.testing\n"
        "assert 'httpx' not in sys.modules, 'httpx imported'\n"
        "sys.modules['httpx'] = None\n"
        "try:\n"
        "    import requests_tokenauth.httpx\n"
        "except ImportError as exc:\n"
        "    assert 'pip install requests-tokenauth[httpx]' in str(exc), exc\n"
        "else:\n"
        "    raise SystemExit('imported without httpx')\n"
    )
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=60,  # a guard against a hang, not a measurement
        check=False,
    )
    assert done.returncode == 0, done.stderr[-500:]

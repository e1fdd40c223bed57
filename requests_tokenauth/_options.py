"""The closed sets of option values, as ``Literal`` types, so that a type checker catches a
misspelled value (``refresh_ahead="inilne"``) before the constructor's own check does at
run time, and the manager's option defaults. Stdlib only: the grants, the manager and the
auth all import from here; only the error tree below."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal, Union

from ._errors import ConfigurationError

#: How a grant authenticates the client at the token endpoint (RFC 7591
#: ``token_endpoint_auth_method``); see :class:`~requests_tokenauth.Grant`.
AuthMethod = Literal[
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "none",
    "tls_client_auth",
]

#: Who renews a token inside the refresh margin: a short-lived thread (``"background"``) or
#: the caller that noticed (``"inline"``); see :class:`~requests_tokenauth.TokenAuth`.
RefreshAhead = Literal["background", "inline"]

#: Which token :meth:`~requests_tokenauth.TokenAuth.revoke` revokes (RFC 7009 §2.1).
TokenTypeHint = Literal["refresh_token", "access_token"]

#: The scope of a token request: a space-separated string or an iterable of scopes.
Scope = Union[str, Iterable[str], None]

#: Seconds before a request gives up: one number, or ``(connect, read)`` as in requests.
Timeout = Union[float, tuple[float, float]]

#: How a refresh ahead of expiry runs: on a short-lived thread, so no caller waits for it.
REFRESH_AHEAD_MODES = ("background", "inline")

#: Callers wait at most this long for another thread's token request before giving up; a
#: little more than the default token-request timeout (5 s connect + 30 s read).
DEFAULT_LOCK_TIMEOUT_SECONDS = 40.0

#: With no valid token and the token endpoint failing, a caller waits this long at most for
#: an attempt to succeed before it gets the error: long enough that a restart or failover of
#: the endpoint (a few seconds) costs callers nothing, short enough that a web server's
#: worker threads are not tied up for long in a real outage (see docs/concurrency.rst).
DEFAULT_MAX_WAIT_SECONDS = 5.0


def checked_max_wait(seconds: object) -> float:
    """``max_wait_seconds`` as a float.

    :raises ConfigurationError: not a finite number >= 0.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ConfigurationError("max_wait_seconds must be a finite number >= 0")
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ConfigurationError("max_wait_seconds must be a finite number >= 0")
    return float(seconds)

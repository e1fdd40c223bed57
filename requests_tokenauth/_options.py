"""The closed sets of option values, as ``Literal`` types, so that a type checker catches a
misspelled value (``refresh_ahead="inilne"``) before the constructor's own check does at
run time. Stdlib only: the grants, the manager and the auth all import from here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Union

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

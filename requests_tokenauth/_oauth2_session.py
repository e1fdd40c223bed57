"""What :meth:`TokenAuth.from_oauth2_session` reads from a requests-oauthlib
``OAuth2Session``: the grant, the saved token, the token saver. requests-oauthlib itself is
never imported here: the session is read through its documented attributes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import requests
from oauthlib.oauth2 import (
    BackendApplicationClient,
    LegacyApplicationClient,
    MobileApplicationClient,
)

from ._errors import ConfigurationError
from ._grants import ClientCredentials, Grant, RefreshToken
from ._grants._compliance import registered_hooks


def grant_from_oauth2_session(
    oauth2_session: Any,
    *,
    token_url: Optional[str] = None,
    client_secret: Optional[str] = None,
    auth_method: Optional[str] = None,
    allow_insecure_http: bool = False,
) -> tuple[Grant, Optional[dict[str, Any]]]:
    """The grant that renews ``oauth2_session``'s tokens, and its saved token (if any).

    - With a refresh token (a web application, or a password grant that got one): the
      refresh token grant at ``auto_refresh_url``.
    - A ``BackendApplicationClient`` without one: client credentials at ``token_url``.

    ``auto_refresh_kwargs`` are what requests-oauthlib puts in each refresh body: a
    ``client_secret`` there makes the client authenticate in the body
    (``client_secret_post``, as requests-oauthlib's refresh did); the rest is sent as
    :attr:`Grant.extra`. The session's ``verify``, ``cert``, ``proxies`` and ``trust_env``
    go to a private session for token requests, and its compliance hooks to the grant.

    :raises ConfigurationError: no way to renew (an implicit-grant client, no refresh URL
        or token URL), or a ``protected_request`` hook (see the message).
    """
    client = getattr(oauth2_session, "_client", None)
    if client is None or not hasattr(oauth2_session, "compliance_hook"):
        raise ConfigurationError("from_oauth2_session needs a requests_oauthlib.OAuth2Session")
    if isinstance(client, MobileApplicationClient):
        raise ConfigurationError(
            "an implicit-grant (MobileApplicationClient) session has no way to renew its "
            "token; use a grant that can, e.g. AuthorizationCode or DeviceCode"
        )
    token = dict(oauth2_session.token or {}) or None
    refresh_kwargs = dict(oauth2_session.auto_refresh_kwargs or {})
    in_body = refresh_kwargs.pop("client_secret", None)
    secret = client_secret if client_secret is not None else in_body
    client_id = refresh_kwargs.pop("client_id", None) or oauth2_session.client_id
    if not client_id:
        raise ConfigurationError("the OAuth2Session has no client_id")
    if auth_method is None:
        auth_method = (
            "none"
            if secret is None
            else "client_secret_post"
            if in_body is not None
            else "client_secret_basic"
        )
    common: dict[str, Any] = {
        "client_id": client_id,
        "client_secret": secret,
        "scope": oauth2_session.scope,
        "auth_method": auth_method,
        "extra": {k: str(v) for k, v in refresh_kwargs.items()},
        "session": _token_session(oauth2_session),
        "allow_insecure_http": allow_insecure_http,
    }
    grant: Grant
    refresh_url = oauth2_session.auto_refresh_url or token_url
    if (
        token is not None
        and token.get("refresh_token")
        and not isinstance(client, BackendApplicationClient)
    ):
        if not refresh_url:
            raise ConfigurationError(
                "the OAuth2Session has no auto_refresh_url: pass token_url= to renew its token"
            )
        grant = RefreshToken(refresh_url, **common)
    elif isinstance(client, BackendApplicationClient):
        url = token_url or oauth2_session.auto_refresh_url
        if not url:
            raise ConfigurationError(
                "a BackendApplicationClient session does not keep its token URL: pass "
                "token_url= (and client_secret=, which it does not keep either)"
            )
        grant = ClientCredentials(url, **common)
    else:
        kind = (
            "LegacyApplicationClient"
            if isinstance(client, LegacyApplicationClient)
            else type(client).__name__
        )
        raise ConfigurationError(
            f"this {kind} session has no refresh token to renew with; build the grant "
            "yourself (e.g. Password or AuthorizationCode) and pass token= its token"
        )
    _copy_hooks(oauth2_session.compliance_hook, grant)
    return grant, token


def _token_session(oauth2_session: requests.Session) -> requests.Session:
    """A private session for token requests with the OAuth2Session's TLS and proxies."""
    session = requests.Session()
    session.verify = oauth2_session.verify
    session.cert = oauth2_session.cert
    session.proxies = dict(oauth2_session.proxies or {})
    session.trust_env = oauth2_session.trust_env
    return session


def _copy_hooks(hooks: Mapping[str, Any], grant: Grant) -> None:
    for hook_type, hook in registered_hooks(hooks):
        if hook_type == "protected_request":
            # requests-oauthlib's own (slack, instagram) read session.access_token, which
            # would stay the first token forever: carrying them over would send stale tokens
            raise ConfigurationError(
                "the OAuth2Session has a protected_request compliance hook; such hooks read "
                "the session's own token, which TokenAuth does not update. Register a "
                "version that takes the token from the request on the grant instead: "
                "grant.register_compliance_hook('protected_request', hook)"
            )
        grant.register_compliance_hook(hook_type, hook)

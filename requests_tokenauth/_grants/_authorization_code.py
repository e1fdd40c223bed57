"""The authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636 S256)."""

from __future__ import annotations

import hmac
import secrets
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import requests
from oauthlib.common import add_params_to_uri
from oauthlib.oauth2 import WebApplicationClient

from .._clock import SYSTEM_CLOCK, Clock
from .._errors import (
    AccessDeniedError,
    ConfigurationError,
    InvalidGrantError,
    StateMismatchError,
    safe_field,
)
from .._options import AuthMethod, Scope, Timeout
from .._token import Token
from ._base import Grant
from ._identity import unnamed_user
from ._jwt import Key
from ._transport import DEFAULT_TIMEOUT_SECONDS
from ._urls import check_url

#: PKCE code verifier length (RFC 7636 §4.1 allows 43 to 128 characters).
DEFAULT_CODE_VERIFIER_LENGTH = 64


@dataclass(frozen=True)
class AuthorizationRequest:
    """One authorization in progress: the URL to send the user to, and what the redirect
    must match. Keep it (e.g. in the user's web session) until the redirect comes back;
    use it once. Immutable, so thread-safe; picklable.

    :ivar url: the authorization URL, with ``state`` and the S256 ``code_challenge``.
    :ivar state: the random ``state`` the redirect must carry back (RFC 6749 §10.12).
    :ivar redirect_uri: the redirect URI sent, which the code exchange repeats.
    :ivar code_verifier: the PKCE secret (RFC 7636); never shown by ``repr``.
    """

    url: str
    state: str
    redirect_uri: str
    code_verifier: str = field(repr=False)


class AuthorizationCode(Grant):
    """The authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636 S256): a person
    signs in at the authorization server and is redirected back with a code.

    :meth:`prepare_authorization` builds the authorization URL (``state`` and a code
    verifier, with oauthlib's ``WebApplicationClient``); :meth:`exchange` checks the
    redirect's ``state`` and trades its code for a token. Pass that token to
    ``TokenAuth(grant, token=...)``, which then renews it with the refresh token. A
    rejected refresh token is terminal (the person must sign in again): this grant does not
    run unattended. Thread-safe: several authorizations may be in progress at once, each
    carried by its own :class:`AuthorizationRequest`. With a shared store, pass
    ``store_key=`` naming the person: the grant cannot tell whose token it renews, and
    refuses a derived key. Takes the :class:`Grant` parameters
    (``auth_method="none"`` for public clients), plus:

    :param authorization_url: the authorization endpoint.
    :param redirect_uri: where the server sends the person back (registered with it).
    """

    grant_type = "authorization_code"
    unattended = False

    def __init__(
        self,
        token_url: str,
        *,
        authorization_url: str,
        redirect_uri: str,
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
        self.authorization_url = check_url(
            authorization_url, "authorization URL", allow_insecure_http=self.allow_insecure_http
        )
        if not urllib.parse.urlsplit(redirect_uri).scheme:
            raise ConfigurationError(f"redirect_uri {redirect_uri!r} is not an absolute URI")
        self.redirect_uri = redirect_uri

    def store_identity(self) -> Optional[str]:
        # the token belongs to the person who signs in, whom this grant never learns
        raise unnamed_user("AuthorizationCode", "whoever signs in owns the token")
    if TYPE_CHECKING:  # the endpoint may come from the metadata: optional here

        @classmethod
        def from_issuer(  # type: ignore[override]
            cls,
            issuer: str,
            /,
            *,
            authorization_url: Optional[str] = None,
            redirect_uri: str,
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
        ) -> AuthorizationCode: ...

    @classmethod
    def _use_metadata(cls, metadata: Mapping[str, Any], kwargs: dict[str, Any]) -> None:
        kwargs.setdefault("authorization_url", metadata.get("authorization_endpoint"))

    def prepare_authorization(
        self, *, state: Optional[str] = None, **params: str
    ) -> AuthorizationRequest:
        """A new authorization request: random ``state`` and PKCE verifier.

        :param state: the ``state`` to send (default: 32 random bytes, URL-safe).
        :param params: more authorization parameters, e.g. ``prompt="consent"``.
        """
        client = WebApplicationClient(self.client_id)
        verifier: str = client.create_code_verifier(DEFAULT_CODE_VERIFIER_LENGTH)
        challenge: str = client.create_code_challenge(verifier, "S256")
        state = state or secrets.token_urlsafe(32)
        query = [
            ("response_type", "code"),
            ("client_id", self.client_id),
            ("redirect_uri", self.redirect_uri),
            ("state", state),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ]
        if self.scope:
            query.append(("scope", " ".join(self.scope)))
        query.extend(params.items())
        url: str = add_params_to_uri(self.authorization_url, query)
        return AuthorizationRequest(url, state, self.redirect_uri, verifier)

    def exchange(
        self, request: AuthorizationRequest, redirect_url: str, *, clock: Clock = SYSTEM_CLOCK
    ) -> dict[str, Any]:
        """Trade the code in ``redirect_url`` for a token, after checking its ``state``.

        :param request: what :meth:`prepare_authorization` returned for this authorization.
        :param redirect_url: the full URL the person was redirected to.
        :param clock: the clock of the ``TokenAuth`` the token is for.
        :returns: the token dict, for ``TokenAuth(grant, token=...)``.
        :raises StateMismatchError: the redirect's ``state`` is missing or different.
        :raises AccessDeniedError: the person (or the server) declined.
        :raises InvalidGrantError: another authorization error, or the code was refused.
        """
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(redirect_url).query))
        state = query.get("state", "")
        if not hmac.compare_digest(state.encode(), request.state.encode()):
            raise StateMismatchError(
                "the redirect's state is not the one sent; not exchanging its code",
                error="mismatching_state",
            )
        error = query.get("error")
        if error:
            cls = AccessDeniedError if error == "access_denied" else InvalidGrantError
            raise cls(
                f"the authorization server answered {safe_field(error)}",  # no forged lines
                error=error,
                error_description=query.get("error_description"),
                error_uri=query.get("error_uri"),
            )
        code = query.get("code")
        if not code:
            raise InvalidGrantError("the redirect carries no code", error="invalid_request")
        client_params = self._client_params()
        client_params.pop("client_id", None)  # this client adds its own (include_client_id)
        body: str = WebApplicationClient(self.client_id).prepare_request_body(
            code=code,
            redirect_uri=request.redirect_uri,
            code_verifier=request.code_verifier,
            **self.extra,
            **client_params,
        )
        return self._exchange(body, clock, self.grant_type, None).to_dict()

    def _run_grant(self, clock: Clock) -> Token:
        raise InvalidGrantError(
            "the authorization code grant needs the person to sign in again: call "
            "prepare_authorization() and exchange(), then make a new TokenAuth",
            error="interaction_required",
        )

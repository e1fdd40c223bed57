"""The token exchange grant (RFC 8693)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

import requests
from oauthlib.oauth2.rfc6749.parameters import prepare_token_request

from .._errors import ConfigurationError
from .._options import AuthMethod, Scope, Timeout
from ._base import Grant
from ._identity import credential_digest, unnamed_user
from ._jwt import Key
from ._transport import DEFAULT_TIMEOUT_SECONDS

#: ``grant_type`` of RFC 8693 §2.1.
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"

#: The token type of an OAuth access token (RFC 8693 §3), the usual subject.
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"

TokenSource = Union[str, Callable[[], str]]


class TokenExchange(Grant):
    """The token exchange grant (RFC 8693): trade a subject token (and optionally an actor
    token) for an access token, e.g. for a downstream API (``audience=`` / ``resource=``).

    oauthlib has no client for it; the request is built with oauthlib's
    ``prepare_token_request``. It renews by exchanging again, so ``subject_token`` may be a
    callable that returns the current subject token (for instance from another
    :class:`TokenAuth`: ``lambda: upstream.get_token().access_token``). Thread-safety as
    for :class:`Grant`.

    With a shared store, the default store key names the subject (and a given actor) by a
    digest of the subject (and actor) token: each subject token gets its own exchanged
    token. A callable subject token cannot be named: a store then needs ``store_key=``. A
    pickle of the grant leaves the subject and actor tokens out (it keeps the digests), so
    the copy can read the store but not exchange again. Takes the :class:`Grant`
    parameters, plus:

    :param subject_token: the token (or a callable returning it) that represents the party
        on whose behalf the request is made; never logged or shown.
    :param subject_token_type: its RFC 8693 §3 type URI (default: an access token).
    :param actor_token: the token of the acting party, if any (delegation, §1.1).
    :param actor_token_type: its type URI (required with ``actor_token``).
    :param audience: the target service's name, sent as ``audience``.
    :param resource: the target service's URI, sent as ``resource``.
    :param requested_token_type: the type of token wanted, if not the server's default.
    """

    grant_type = TOKEN_EXCHANGE

    def __init__(
        self,
        token_url: str,
        *,
        subject_token: TokenSource,
        subject_token_type: str = ACCESS_TOKEN_TYPE,
        actor_token: Optional[TokenSource] = None,
        actor_token_type: Optional[str] = None,
        audience: Optional[str] = None,
        resource: Optional[str] = None,
        requested_token_type: Optional[str] = None,
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
        if not subject_token or not subject_token_type:
            raise ConfigurationError("TokenExchange needs a subject_token and its type")
        if (actor_token is None) != (actor_token_type is None):
            raise ConfigurationError("actor_token and actor_token_type go together (RFC 8693)")
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
        self._subject_token = subject_token
        self.subject_token_type = subject_token_type
        self._actor_token = actor_token
        self.actor_token_type = actor_token_type
        self.audience = audience
        self.resource = resource
        self.requested_token_type = requested_token_type
        # whose token: digests, computed once (a pickle keeps them, not the tokens)
        self._subject_identity = (
            None if callable(subject_token) else credential_digest("subject", subject_token)
        )
        self._actor_identity = (
            credential_digest("actor", actor_token) if isinstance(actor_token, str) else ""
        )

    def store_identity(self) -> Optional[str]:
        if self._subject_identity is None:
            raise unnamed_user("TokenExchange", "its subject_token is a callable")
        return (
            f"{self.subject_token_type} {self.audience or ''} {self.resource or ''} "
            f"{self._subject_identity} {self._actor_identity}"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()  # never the live dict: the original keeps its token
        for name in ("_subject_token", "_actor_token"):  # a pickle holds no token
            if isinstance(state[name], str):
                state[name] = _NOT_PICKLED
        return state

    def _grant_body(self, client_params: dict[str, Any]) -> str:
        params: dict[str, Any] = {
            "subject_token": _value(self._subject_token),
            "subject_token_type": self.subject_token_type,
        }
        if self._actor_token is not None:
            params.update(
                actor_token=_value(self._actor_token), actor_token_type=self.actor_token_type
            )
        for name in ("audience", "resource", "requested_token_type"):
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        body: str = prepare_token_request(
            TOKEN_EXCHANGE,
            scope=list(self.scope) if self.scope else None,
            **params,
            **self.extra,
            **client_params,
        )
        return body


#: What replaces a subject or actor token in a pickle.
_NOT_PICKLED = "\x00not pickled"


def _value(source: TokenSource) -> str:
    if isinstance(source, str) and source == _NOT_PICKLED:
        raise ConfigurationError(
            "this TokenExchange was unpickled, and a pickle does not carry its subject or "
            "actor token: make the grant again with them"
        )
    value = source() if callable(source) else source
    if not isinstance(value, str) or not value:
        raise ConfigurationError("the token source gave no token")
    return value

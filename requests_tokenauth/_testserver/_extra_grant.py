"""The base of the test server's token-endpoint grants beyond oauthlib's provider side.

oauthlib implements the authorization code grant (with PKCE) and the classic grants; the JWT
bearer grant (:mod:`._grant_jwt_bearer`), token exchange (:mod:`._grant_token_exchange`) and
the device grant (:mod:`._grant_device_code`) are :class:`ExtraGrant` subclasses, so they run
through the same token endpoint, client authentication and token storage.
"""

from __future__ import annotations

import json
from typing import Any

from oauthlib.oauth2 import InvalidClientError, OAuth2Error, UnauthorizedClientError
from oauthlib.oauth2.rfc6749.grant_types.base import GrantTypeBase


class ExtraGrant(GrantTypeBase):  # type: ignore[misc]  # oauthlib ships no types
    """A token-endpoint grant type the oauthlib provider lacks; subclasses check the grant
    itself in :meth:`validate_grant` (setting ``request.user`` and ``request.scopes``)."""

    grant_type = ""

    def create_token_response(
        self, request: Any, token_handler: Any
    ) -> tuple[dict[str, str], str, int]:
        headers = self._get_default_headers()
        try:
            self._authenticate(request)
            self.validate_grant(request)
        except OAuth2Error as exc:
            headers.update(exc.headers)
            return headers, exc.json, exc.status_code
        token = token_handler.create_token(request, refresh_token=True)
        self.extend_token(token, request)
        self.request_validator.save_token(token, request)
        return headers, json.dumps(token), 200

    def _authenticate(self, request: Any) -> None:
        validator = self.request_validator
        if validator.client_authentication_required(request):
            if not validator.authenticate_client(request):
                raise InvalidClientError(request=request)
        elif not validator.authenticate_client_id(request.client_id, request):
            raise InvalidClientError(request=request)
        request.client_id = request.client.client_id  # with Basic, the body had none
        if not validator.validate_grant_type(
            request.client_id, self.grant_type, request.client, request
        ):
            raise UnauthorizedClientError(request=request)

    def validate_grant(self, request: Any) -> None:
        raise NotImplementedError

    def extend_token(self, token: dict[str, Any], request: Any) -> None:
        """Add grant-specific response fields."""

    def _scopes(self, request: Any, default: tuple[str, ...]) -> None:
        client = request.client
        asked = tuple((request.scope or "").split()) or default or client.scopes
        if not all(s in client.scopes for s in asked):
            from oauthlib.oauth2 import InvalidScopeError

            raise InvalidScopeError(request=request)
        request.scopes = list(asked)

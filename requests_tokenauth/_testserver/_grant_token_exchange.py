"""The token exchange grant of the test server (RFC 8693)."""

from __future__ import annotations

from typing import Any, Optional

from oauthlib.oauth2 import InvalidGrantError, InvalidRequestError

from ._extra_grant import ExtraGrant
from ._oauth import request_param
from ._state import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE, Grant


class TokenExchangeGrant(ExtraGrant):
    """RFC 8693: a live access token of this server (and optionally an actor token) in,
    a new access token for the same user out, with ``issued_token_type``."""

    grant_type = TOKEN_EXCHANGE

    def validate_grant(self, request: Any) -> None:
        server = self.request_validator._server
        subject = self._live(request, "subject_token", "subject_token_type")
        if subject is None:
            raise InvalidRequestError("missing subject_token", request=request)
        actor = self._live(request, "actor_token", "actor_token_type")
        request.user = subject.user or subject.client_id
        if actor is not None:
            request.user = f"{request.user} (via {actor.user or actor.client_id})"
        with server._lock:
            server._extra.last_exchange = {
                "audience": request_param(request, "audience"),
                "resource": request_param(request, "resource"),
                "actor": actor is not None,
            }
        self._scopes(request, subject.scopes)

    def _live(self, request: Any, name: str, type_name: str) -> Optional[Grant]:
        token = request_param(request, name)
        if token is None:
            return None
        if request_param(request, type_name) != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError(f"unsupported {type_name}", request=request)
        server = self.request_validator._server
        with server._lock:
            grant: Optional[Grant] = server._access.get(token)
        if grant is None or grant.revoked or server.clock.monotonic() >= grant.expires_at:
            raise InvalidGrantError(f"{name} is not a live token", request=request)
        return grant

    def extend_token(self, token: dict[str, Any], request: Any) -> None:
        token["issued_token_type"] = ACCESS_TOKEN_TYPE

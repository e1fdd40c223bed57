"""The JWT bearer grant of the test server (RFC 7523 §2.1); the assertion is verified by
:meth:`._extra_oauth.ExtraValidator.verify_jwt`."""

from __future__ import annotations

from typing import Any

from oauthlib.oauth2 import InvalidGrantError, InvalidRequestError

from ._extra_grant import ExtraGrant
from ._oauth import request_param
from ._state import JWT_BEARER


class JWTBearerGrant(ExtraGrant):
    """RFC 7523 §2.1: the assertion is the grant; ``sub`` becomes the token's user."""

    grant_type = JWT_BEARER

    def validate_grant(self, request: Any) -> None:
        assertion = request_param(request, "assertion")
        if not assertion:
            raise InvalidRequestError("missing assertion", request=request)
        try:
            claims = self.request_validator.verify_jwt(assertion, client_key=False)
        except ValueError as exc:
            raise InvalidGrantError(f"assertion rejected: {exc}", request=request) from None
        request.user = str(claims["sub"])
        self._scopes(request, ())

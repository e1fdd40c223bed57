"""The client credentials grant (RFC 6749 §4.4)."""

from __future__ import annotations

from typing import Any

from oauthlib.oauth2 import BackendApplicationClient

from ._base import Grant


class ClientCredentials(Grant):
    """The client credentials grant (RFC 6749 §4.4): a service acting as itself.

    Renews by running the grant again (or with a refresh token, if the server issued one).
    Takes the :class:`Grant` parameters.
    """

    grant_type = "client_credentials"

    def _grant_body(self, client_params: dict[str, Any]) -> str:
        client = BackendApplicationClient(self.client_id)
        body: str = client.prepare_request_body(
            scope=list(self.scope) if self.scope else None, **self.extra, **client_params
        )
        return body

"""The requests a grant sends to the authorization server: client authentication (in the
body, as an assertion, or in the ``Authorization`` header), the one token request (build,
DPoP-nonce retry, compliance hooks, send as an :class:`._wire.OutgoingRequest` through
:class:`._transport.Transport` (or the driver's sender), parse with
:mod:`._response`) and the other client-authenticated forms (revocation, device
authorization). :class:`TokenRequests` is the base of :class:`._base.Grant`, which owns the
configuration these methods read."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import requests

from .._clock import Clock
from .._errors import sent_secrets
from .._token import Token
from ._client_auth import ClientAssertion, basic_credentials
from ._compliance import ComplianceHooks
from ._response import parse_token_response
from ._transport import Transport
from ._urls import direct_proxies
from ._wire import OutgoingRequest

if TYPE_CHECKING:
    from .._dpop import DPoPProofs

log = logging.getLogger("requests_tokenauth")

_FORM_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
    "Accept": "application/json",
}


class TokenRequests:
    """Base of :class:`~requests_tokenauth.Grant`: how its requests are built, sent and
    parsed. It reads the configuration :class:`~requests_tokenauth.Grant` sets up."""

    # set up by Grant (see its constructor and class attributes)
    grant_type: ClassVar[str]
    token_url: str
    allow_insecure_http: bool
    client_id: str
    scope: Optional[tuple[str, ...]]
    auth_method: str
    _client_secret: Optional[str]
    _assertion: Optional[ClientAssertion]
    _transport: Transport
    _dpop: Optional[DPoPProofs]
    _compliance: Optional[ComplianceHooks]

    if TYPE_CHECKING:

        @property
        def max_request_seconds(self) -> float: ...  # Grant's

    def _client_params(self) -> dict[str, Any]:
        """oauthlib parameters for client authentication in the body (RFC 6749 §2.3.1)."""
        if self.auth_method == "client_secret_post":
            return {
                "include_client_id": True,
                "client_id": self.client_id,
                "client_secret": self._client_secret,
            }
        if self.auth_method != "client_secret_basic":  # none, JWT assertions, mutual TLS
            return {"include_client_id": True, "client_id": self.client_id}
        return {"include_client_id": False}

    def _client_fields(self) -> list[tuple[str, str]]:
        """Client authentication in the body of a request oauthlib does not build
        (revocation, device authorization); the assertion is added on sending."""
        if self.auth_method == "client_secret_basic":
            return []
        fields = [("client_id", self.client_id)]
        if self.auth_method == "client_secret_post" and self._client_secret is not None:
            fields.append(("client_secret", self._client_secret))
        return fields

    def _with_assertion(self, body: str, clock: Clock, endpoint: Optional[str] = None) -> str:
        """``body`` plus a fresh client assertion, for the JWT client-authentication methods;
        its audience is ``endpoint``, the URL the request goes to (default: the token URL)."""
        if self._assertion is None:
            return body
        audience = endpoint or self.token_url
        fields = urllib.parse.urlencode(self._assertion.fields(audience, clock))
        return f"{body}&{fields}" if body else fields

    def _post_form(
        self, url: str, fields: list[tuple[str, str]], clock: Clock, what: str
    ) -> requests.Response:
        """POST a client-authenticated form that is not a token request (the answer read
        in full, as for token requests).

        :raises TokenEndpointError: no complete answer within the bounds.
        """
        body = self._with_assertion(
            urllib.parse.urlencode(fields + self._client_fields()), clock, url
        )
        deadline_monotonic = clock.monotonic() + self.max_request_seconds
        request = self._outgoing(url, _FORM_HEADERS, body, what)
        return self._transport.send(request, clock, deadline_monotonic)

    def _outgoing(
        self, url: str, headers: Mapping[str, str], body: str, what: str
    ) -> OutgoingRequest:
        """The request as a value: the client's ``Authorization`` (HTTP Basic) among its
        headers, and whether the loopback exemption keeps every proxy off it."""
        sent = dict(headers)
        authorization = self._authorization()
        if authorization is not None:
            sent["Authorization"] = authorization
        direct = direct_proxies(url, allow_insecure_http=self.allow_insecure_http) is not None
        return OutgoingRequest("POST", url, sent, body.encode("utf-8"), what, direct)

    def _authorization(self) -> Optional[str]:
        if self.auth_method == "client_secret_basic" and self._client_secret is not None:
            return basic_credentials(self.client_id, self._client_secret)
        return None

    def _exchange(
        self, body: str, clock: Clock, grant_type: str, previous_refresh: Optional[str]
    ) -> Token:
        """One token request: build, send (the answer read within the total deadline and
        the size cap), parse; requests-oauthlib-style compliance hooks around it."""
        headers = dict(_FORM_HEADERS)
        hooks = self._compliance
        url = self.token_url
        if hooks:  # requests-oauthlib-style provider fixes
            url, headers, body = hooks.before_token_request(
                grant_type, url, headers, body, allow_insecure_http=self.allow_insecure_http
            )
        dpop = self._dpop
        deadline_monotonic = clock.monotonic() + self.max_request_seconds
        # With DPoP, a 400 use_dpop_nonce earns one retry with the server's nonce (RFC 9449
        # section 8); every attempt gets a fresh proof and a fresh client assertion.
        for attempt in (1, 2):
            if dpop is not None:
                headers["DPoP"] = dpop.header("POST", url)
            sent_monotonic, sent_at = clock.monotonic(), clock.time()
            sent = self._with_assertion(body, clock, url)
            request = self._outgoing(url, headers, sent, "token request")
            response = self._transport.send(request, clock, deadline_monotonic)
            if dpop is None or not dpop.is_nonce_challenge(response) or attempt == 2:
                break
            log.debug("token endpoint asked for a DPoP nonce; retrying once with it")
        if hooks:
            response = hooks.after_token_response(grant_type, response)
        secrets = (*sent_secrets(sent), self._client_secret)
        token = self._parse(
            response, clock, sent_monotonic, sent_at, grant_type, previous_refresh, secrets
        )
        if dpop is not None:
            dpop.check_bound(token, f"token endpoint {self.token_url} ({grant_type} grant)")
        return token

    def _parse(
        self,
        response: requests.Response,
        clock: Clock,
        sent_monotonic: float,
        sent_at: float,
        grant_type: str,
        previous_refresh: Optional[str],
        secrets: tuple[Optional[str], ...] = (),
    ) -> Token:
        """The :class:`Token` in a token response, or its typed error (``secrets``: what
        the request carried, never kept in the error)."""
        return parse_token_response(
            response,
            where=f"token endpoint {self.token_url} ({grant_type} grant)",
            clock=clock,
            sent_monotonic=sent_monotonic,
            sent_at=sent_at,
            requested_scope=self.scope,
            previous_refresh_token=previous_refresh,
            dpop=self._dpop is not None,
            sent_secrets=secrets,
        )

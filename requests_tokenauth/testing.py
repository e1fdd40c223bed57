"""A real OAuth 2.0 authorization server and protected resource on loopback, for tests.

:class:`AuthServer` is a small threaded HTTP/1.1 server bound to ``127.0.0.1`` on a free
port. Its token endpoint (``POST /token``) is oauthlib's provider-side token endpoint with
the ``client_credentials``, ``password``, ``refresh_token`` and ``authorization_code`` (PKCE
required) grants, plus JWT bearer (RFC 7523), token exchange (RFC 8693) and device code
(RFC 8628) grants run through the same oauthlib machinery; its protected
resource (any method on ``/resource`` and ``/resource/<anything>``) checks bearer tokens
the way an API would. Everything it receives is recorded and counted, and it has knobs for
the awkward cases: revoked and expired tokens, token rotation, injected faults, latency, a
hostile token endpoint (an answer that drips, a huge or endless one, or any raw answer a
test scripts with :meth:`AuthServer.set_raw_token_response`) and a gate that holds token
requests until a test releases them. It needs only the library's own dependencies (no
pytest).

Usage::

    import requests
    from requests_tokenauth.testing import AuthServer, FakeClock

    clock = FakeClock()
    with AuthServer(clock=clock, token_lifetime_seconds=60) as server:
        token = requests.post(
            server.token_url,
            data={"grant_type": "client_credentials"},
            auth=("svc", "svc-secret"),
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert requests.get(server.resource_url, headers=headers).status_code == 200
        clock.advance(60)  # the server now considers the token expired
        assert requests.get(server.resource_url, headers=headers).status_code == 401
        assert server.token_requests == 1 and server.resource_401s == 1

Registered from the start: client ``svc``/``svc-secret`` (``client_credentials``; scopes
``read write``), client ``app``/``app-secret`` (``password`` and ``refresh_token``; scopes
``read write``) and user ``alice``/``wonderland``. Clients authenticate with HTTP Basic
(id and secret each form-urlencoded first, RFC 6749 section 2.3.1) or with
``client_id``/``client_secret`` in the body; a client registered without a secret is public
and sends only ``client_id``. Any client may also authenticate with ``client_secret_jwt``
(HS256 with its secret) or ``private_key_jwt`` (signed with
:meth:`AuthServer.private_key_pem`); assertions are verified for real (signature, ``aud``,
``exp`` on the server's clock, no replayed ``jti``; the ``jwt`` extra is needed for them).

More endpoints: ``GET /authorize`` (approves as ``authorize_user``, default ``alice``, and
redirects with a code; loopback ``http`` redirect URIs only), ``POST /device_authorization``
(approve with :meth:`AuthServer.approve_device`, refuse with ``deny_device``, script poll
answers with ``set_device_responses``), ``POST /revoke`` (RFC 7009) and the metadata
documents ``/.well-known/oauth-authorization-server`` and
``/.well-known/openid-configuration`` (issuer :attr:`AuthServer.url`; knobs
``metadata_issuer`` and ``metadata_documents``). Also registered: ``web``/``web-secret``
(``authorization_code``, ``refresh_token``), public ``device`` (device code,
``refresh_token``), public ``robot`` (JWT bearer: assertions signed with
:meth:`AuthServer.private_key_pem`, any ``iss``, ``sub`` becomes the user) and
``gateway``/``gateway-secret`` (token exchange of this server's live access tokens).

Expiry is judged with ``clock.monotonic()``, so a :class:`FakeClock` shared with the client
makes expiry deterministic. :attr:`AuthServer.seen` lists the requests received as
:class:`SeenRequest` records; :data:`TOKEN_FAULTS` lists the kinds of
:meth:`AuthServer.set_token_fault`.

For shared-store tests across processes, :class:`OffsetClock` moves a fleet's clocks
together and :func:`redis_server` starts a private ``redis-server`` on a free loopback port.
With pytest, ``pytest_plugins = ["requests_tokenauth.pytest_plugin"]`` provides the
``auth_server``, ``auth_server_factory`` and ``fake_clock`` fixtures.
"""

from __future__ import annotations

from ._clock import FakeClock, OffsetClock
from ._testserver._handler import TOKEN_FAULTS
from ._testserver._redis import redis_server, redis_server_binary
from ._testserver._server import AuthServer
from ._testserver._state import GRANT_TYPES, SeenRequest

__all__ = [
    "GRANT_TYPES",
    "TOKEN_FAULTS",
    "AuthServer",
    "FakeClock",
    "OffsetClock",
    "SeenRequest",
    "redis_server",
    "redis_server_binary",
]

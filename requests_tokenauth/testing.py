"""A real OAuth 2.0 authorization server and protected resource on loopback, for tests.

:class:`AuthServer` is a small threaded HTTP/1.1 server bound to ``127.0.0.1`` on a free
port. Its token endpoint (``POST /token``) is oauthlib's provider-side token endpoint with
the ``client_credentials``, ``password`` and ``refresh_token`` grants; its protected
resource (any method on ``/resource`` and ``/resource/<anything>``) checks bearer tokens
the way an API would. Everything it receives is recorded and counted, and it has knobs for
the awkward cases: revoked and expired tokens, token rotation, injected faults, latency and
a gate that holds token requests until a test releases them. It needs only the library's
own dependencies (no pytest).

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
and sends only ``client_id``.

Expiry is judged with ``clock.monotonic()``, so a :class:`FakeClock` shared with the client
makes expiry deterministic. :attr:`AuthServer.seen` lists the requests received as
:class:`SeenRequest` records; :data:`TOKEN_FAULTS` lists the kinds of
:meth:`AuthServer.set_token_fault`.

With pytest, ``pytest_plugins = ["requests_tokenauth.pytest_plugin"]`` provides the
``auth_server``, ``auth_server_factory`` and ``fake_clock`` fixtures.
"""

from __future__ import annotations

from ._clock import FakeClock
from ._testserver._handler import TOKEN_FAULTS
from ._testserver._oauth import GRANT_TYPES, SeenRequest
from ._testserver._server import AuthServer

__all__ = ["GRANT_TYPES", "TOKEN_FAULTS", "AuthServer", "FakeClock", "SeenRequest"]

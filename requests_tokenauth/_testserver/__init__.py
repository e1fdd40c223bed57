"""The loopback OAuth 2.0 server behind :mod:`requests_tokenauth.testing` (import it from there).

A map, from the bottom up; each module imports only modules above it in this list (so
nothing needs anything that needs it back), and a lower module that must call up does so
through a :class:`~typing.Protocol` it defines, which :class:`AuthServer` satisfies:

State
    ``_state``: the records (clients, grants behind tokens, faults, requests seen, device and
    authorization-code entries), the secrets handed out, and ``ServerState``, the protocol
    through which validators, grants and the DPoP checker read the server.

HTTP plumbing
    ``_hostile``: the misbehaving token answers (drip, huge, endless, raw) and their knobs.
    ``_handler``: the request handler (token endpoint, resource, redirects); it reaches the
    layers above through ``HandlerServer``. ``_redis``: a private ``redis-server`` for tests.

OAuth: validation and grants
    ``_keys``: the RS256/ES256 keys the server trusts. ``_oauth``: oauthlib's request
    validator for the classic grants. ``_extra_oauth``: plus JWT client authentication,
    authorization codes with PKCE, revocation. ``_extra_grant``: the base of the grants
    oauthlib lacks, one per module: ``_grant_jwt_bearer`` (RFC 7523),
    ``_grant_token_exchange`` (RFC 8693), ``_grant_device_code`` (RFC 8628). ``_dpop``: DPoP
    proof checks and token binding (RFC 9449).

The server's parts (mixins)
    ``_registry``: registrations, tokens and the bearer check. ``_traffic``: the gate,
    injected faults, the request log and counters. ``_extra_routes``: authorization, device
    authorization, revocation and metadata endpoints, with their knobs.

The facade
    ``_server``: :class:`AuthServer`, the socket and threads, and the token endpoint
    assembled from the above; :mod:`requests_tokenauth.testing` re-exports it.
"""

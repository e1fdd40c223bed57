"""The loopback OAuth 2.0 server behind :mod:`requests_tokenauth.testing` (import it from there)."""

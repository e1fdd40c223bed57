"""pytest fixtures around :class:`requests_tokenauth.testing.AuthServer`.

Enable them in a ``conftest.py`` (or a test module)::

    pytest_plugins = ["requests_tokenauth.pytest_plugin"]

``fake_clock``
    A fresh :class:`~requests_tokenauth.testing.FakeClock`.
``auth_server``
    A started :class:`~requests_tokenauth.testing.AuthServer` on the test's ``fake_clock``
    (so ``fake_clock.advance()`` expires its tokens), closed after the test.
``auth_server_factory``
    ``auth_server_factory(**kwargs)`` starts an ``AuthServer(**kwargs)`` (for instance a
    second server, or one with ``clock=SYSTEM_CLOCK``); all are closed after the test.

The library never imports this module; it is the only part that needs pytest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest

from requests_tokenauth.testing import AuthServer, FakeClock

__all__ = ["auth_server", "auth_server_factory", "fake_clock"]


@pytest.fixture
def fake_clock() -> FakeClock:
    """A :class:`FakeClock` at its default readings; it moves only when advanced."""
    return FakeClock()


@pytest.fixture
def auth_server_factory() -> Iterator[Callable[..., AuthServer]]:
    """Start ``AuthServer(**kwargs)`` on demand; every server made is closed afterwards."""
    servers: list[AuthServer] = []

    def make(**kwargs: Any) -> AuthServer:
        server = AuthServer(**kwargs)
        servers.append(server)
        return server.start()

    yield make
    for server in reversed(servers):
        server.close()


@pytest.fixture
def auth_server(
    auth_server_factory: Callable[..., AuthServer], fake_clock: FakeClock
) -> AuthServer:
    """A started :class:`AuthServer` whose token expiry follows ``fake_clock``."""
    return auth_server_factory(clock=fake_clock)

"""Shared test configuration: the testing server's fixtures, loopback without proxies, and a
guard that no secret reaches a log line in any test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from requests_tokenauth._testserver._state import known_secrets

pytest_plugins = ["requests_tokenauth.pytest_plugin"]

#: The password of the Redis user the redis.asyncio store tests create.
REDIS_PASSWORD = "r3dis-pa55-for-tests"
#: Secrets the tests themselves pass to grants and stores (the servers' own are tracked by
#: the server).
TEST_SECRETS = frozenset({"svc-secret", "app-secret", "wonderland", "s3cr3t", REDIS_PASSWORD})


@pytest.fixture(autouse=True)
def _loopback_without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


#: The testing server runs oauthlib's provider side in-process, and oauthlib's provider
#: logs what it validates; those lines are the server's, not the client's.
SERVER_LOGGERS = tuple(
    f"oauthlib.oauth2.rfc6749.{part}" for part in ("grant_types", "endpoints", "tokens")
)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(SERVER_LOGGERS):
            self.lines.append(self.format(record))


@pytest.fixture(autouse=True)
def _no_secret_in_any_log_line() -> Iterator[None]:
    """Every test runs with every logger at DEBUG; afterwards no line logged on the client
    side (ours, requests, urllib3, oauthlib's client; message, arguments and formatted
    traceback) may contain a token, client secret or password."""
    capture = _Capture()
    capture.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
    leaks = leaked(capture.lines, known_secrets() | TEST_SECRETS)
    assert not leaks, f"{len(leaks)} log line(s) carry a secret, e.g. {leaks[0][:200]!r}"


def leaked(lines: list[str], secrets: frozenset[str]) -> list[str]:
    """The lines that contain any of ``secrets``."""
    return [line for line in lines if any(s in line for s in secrets)]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis for the ``redis``-marked tests: ``TOKENAUTH_TEST_REDIS_URL`` (set by
    ``.ci/run``), else a private ``redis-server`` on a free loopback port for this session,
    else a skip saying so; under CI (``CI`` set) a missing Redis fails instead."""
    import os

    from requests_tokenauth.testing import redis_server, redis_server_binary

    def unavailable(reason: str) -> None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}", pytrace=False)
        pytest.skip(reason)

    try:
        import redis  # noqa: F401
    except ImportError:
        unavailable("redis-py is not installed (pip install -e '.[test]')")
    url = os.environ.get("TOKENAUTH_TEST_REDIS_URL")
    if url:
        yield url
        return
    binary = redis_server_binary()
    if binary is None:
        unavailable("no Redis: set TOKENAUTH_TEST_REDIS_URL or put redis-server on PATH")
        return
    with redis_server(binary) as started:
        yield started

"""How the command line tells a person about a failure: the exit status, and one line that
names the kind of connection failure and never a secret."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator, Sequence

import requests
import urllib3.exceptions

from ._cli_parser import EXIT_REFUSED, EXIT_TOKEN_ENDPOINT, EXIT_USAGE, CommandError
from ._errors import ConfigurationError, InvalidGrantError, TokenEndpointError


def wrapped_causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, urllib3's ``reason``, and
    exceptions passed as arguments (requests wraps urllib3's errors that way)."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        wrapped = [current.__cause__, current.__context__, reason, *current.args]
        pending.extend(e for e in wrapped if isinstance(e, BaseException))

def failure_kind(exc: BaseException) -> str:
    """What kind of connection failure ``exc`` is: words for a person, never a secret."""
    causes = list(wrapped_causes(exc))
    # Before the timeouts: urllib3's NewConnectionError (refused, DNS) subclasses its
    # ConnectTimeoutError.
    checks: tuple[tuple[str, tuple[type[BaseException], ...]], ...] = (
        ("TLS error", (requests.exceptions.SSLError, ssl.SSLError, urllib3.exceptions.SSLError)),
        ("DNS lookup failed", (socket.gaierror, urllib3.exceptions.NameResolutionError)),
        ("connection refused", (ConnectionRefusedError,)),
        ("connection reset", (ConnectionResetError,)),
        (
            "timed out",
            (requests.exceptions.Timeout, urllib3.exceptions.ReadTimeoutError, socket.timeout),
        ),
        ("invalid URL", (requests.exceptions.InvalidURL,)),
    )
    for words, types in checks:
        if any(isinstance(cause, types) for cause in causes):
            return words
    return "connection failed"

def exit_status(exc: BaseException) -> int:
    if isinstance(exc, CommandError):
        return exc.status
    if isinstance(exc, ConfigurationError):
        return EXIT_USAGE
    if isinstance(exc, InvalidGrantError):
        return EXIT_REFUSED
    if isinstance(exc, TokenEndpointError):
        return EXIT_TOKEN_ENDPOINT
    return EXIT_TOKEN_ENDPOINT

def one_line(exc: BaseException) -> str:
    """The one line for ``exc``: with the kind of connection failure behind a token
    endpoint error, and the option rather than the Python keyword for plain http."""
    text = str(exc)
    if isinstance(exc, TokenEndpointError) and any(
        isinstance(cause, requests.exceptions.RequestException) for cause in wrapped_causes(exc)
    ):
        text = f"{text} ({failure_kind(exc)})"
    if isinstance(exc, ConfigurationError):
        text = text.replace("allow_insecure_http=True", "--allow-insecure-http")
    return text

def scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    return text

"""The ``tokenauth`` argument parser: options, their checks, and usage errors as one line
that never repeats a value (a value typed in the wrong place may be a secret)."""

from __future__ import annotations

import argparse
import os
import re
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, Optional, Union

from . import __version__
from ._grants import ClientCredentials, Grant, RefreshToken

EXIT_OK = 0
EXIT_HTTP_ERROR = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_TOKEN_ENDPOINT = 4
EXIT_UNREACHABLE = 5

#: Where the client secret and a refresh token are read from by default.
DEFAULT_SECRET_ENV = "TOKENAUTH_CLIENT_SECRET"
DEFAULT_REFRESH_TOKEN_ENV = "TOKENAUTH_REFRESH_TOKEN"

#: Environment variables that supply defaults for the non-secret options.
ENV_DEFAULTS = {
    "token_url": "TOKENAUTH_TOKEN_URL",
    "issuer": "TOKENAUTH_ISSUER",
    "client_id": "TOKENAUTH_CLIENT_ID",
    "scope": "TOKENAUTH_SCOPE",
}

GRANTS: dict[str, type[Grant]] = {
    "client_credentials": ClientCredentials,
    "refresh_token": RefreshToken,
}

EPILOG = f"""\
Secrets are read from the environment or a file, never from arguments.

exit statuses:
  0  success
  1  request: the resource answered with an HTTP status of 400 or more
  2  bad usage or configuration: a missing secret, a bad URL, an unknown option
  3  the token endpoint refused: invalid_client, invalid_grant, ...
  4  the token endpoint or the issuer could not be reached, failed, or answered nonsense
  5  request: the resource could not be reached

environment variables:
  {DEFAULT_SECRET_ENV:<24} the client secret (another name: --client-secret-env)
  {DEFAULT_REFRESH_TOKEN_ENV:<24} the refresh token of --grant refresh_token
  {ENV_DEFAULTS["token_url"]:<24} default of --token-url
  {ENV_DEFAULTS["issuer"]:<24} default of --issuer
  {ENV_DEFAULTS["client_id"]:<24} default of --client-id
  {ENV_DEFAULTS["scope"]:<24} default of --scope
"""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class CommandError(Exception):
    """A failure the CLI reports as one line with this exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (argparse prints the usage block first by default), with
    every value left out: only option names are repeated."""

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"(--[\w-]+)=\S+", r"\1=...", message)
        message = re.sub(r"(invalid (?:choice|\w+ value)): '.*?'", r"\1", message)
        head, sep, rest = message.partition(": ")
        if head == "unrecognized arguments":  # values may be a secret typed by mistake
            rest = " ".join(word for word in rest.split() if word.startswith("-")) or "(values)"
        raise CommandError(f"{head}{sep}{rest} (see {self.prog} --help)", EXIT_USAGE)


def http_url(value: str) -> str:
    """An absolute http(s) URL with a host and a valid port (argparse ``type``).

    :raises argparse.ArgumentTypeError: naming what is wrong, never repeating the value.
    """
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 (parsing the port is the check: out of range, not a number)
    except ValueError as exc:
        reason = str(exc).split(" (")[0].lower() or "malformed"
        raise argparse.ArgumentTypeError(f"not a valid URL: {reason}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError("not an absolute http(s) URL")
    return value


def env_name(value: str) -> str:
    """The name of an environment variable (argparse ``type``): a value given here by
    mistake (a secret?) is refused without being repeated."""
    if not _ENV_NAME.match(value):
        raise argparse.ArgumentTypeError(
            "takes the NAME of an environment variable (letters, digits, _), not a value"
        )
    return value


class _SecretOnCommandLine(argparse.Action):
    """``--client-secret`` / ``--refresh-token``: refused, with where secrets go instead."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Union[str, Sequence[Any], None],
        option_string: Optional[str] = None,
    ) -> None:
        env, flag = (
            (DEFAULT_SECRET_ENV, "--client-secret")
            if self.dest == "client_secret"
            else (DEFAULT_REFRESH_TOKEN_ENV, "--refresh-token")
        )
        raise CommandError(
            f"{option_string}: secrets never go on the command line (ps and shell history "
            f"show them); set {env} (or name another variable with {flag}-env) or use "
            f"{flag}-file PATH",
            EXIT_USAGE,
        )


def _auth_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("authorization server and client")
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--token-url",
        type=http_url,
        default=os.environ.get(ENV_DEFAULTS["token_url"]),
        help=f"token endpoint (default ${ENV_DEFAULTS['token_url']})",
    )
    where.add_argument(
        "--issuer",
        type=http_url,
        default=os.environ.get(ENV_DEFAULTS["issuer"]),
        help="issuer URL; the token endpoint is discovered from its metadata "
        f"(default ${ENV_DEFAULTS['issuer']})",
    )
    group.add_argument(
        "--client-id",
        default=os.environ.get(ENV_DEFAULTS["client_id"]),
        help=f"(default ${ENV_DEFAULTS['client_id']})",
    )
    group.add_argument(
        "--scope",
        default=os.environ.get(ENV_DEFAULTS["scope"]),
        help=f"space-separated scopes (default ${ENV_DEFAULTS['scope']})",
    )
    group.add_argument("--grant", choices=sorted(GRANTS), default="client_credentials")
    group.add_argument(
        "--auth-method",
        choices=("client_secret_basic", "client_secret_post", "none"),
        default="client_secret_basic",
        help="client authentication ('none' for a public client, which needs no secret)",
    )
    secret = group.add_mutually_exclusive_group()
    secret.add_argument(
        "--client-secret-env",
        metavar="NAME",
        type=env_name,
        default=DEFAULT_SECRET_ENV,
        help=f"environment variable holding the client secret (default {DEFAULT_SECRET_ENV})",
    )
    secret.add_argument("--client-secret-file", metavar="PATH", type=Path)
    secret.add_argument("--client-secret", action=_SecretOnCommandLine)
    refresh = group.add_mutually_exclusive_group()
    refresh.add_argument(
        "--refresh-token-env",
        metavar="NAME",
        type=env_name,
        default=DEFAULT_REFRESH_TOKEN_ENV,
        help=f"for --grant refresh_token (default {DEFAULT_REFRESH_TOKEN_ENV})",
    )
    refresh.add_argument("--refresh-token-file", metavar="PATH", type=Path)
    refresh.add_argument("--refresh-token", action=_SecretOnCommandLine)
    group.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="accept a plain-http token URL to a host other than this machine",
    )
    group.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--debug", action="store_true", help="tracebacks and debug logging")


def build_parser() -> argparse.ArgumentParser:
    """The ``tokenauth`` argument parser."""
    common: dict[str, Any] = {
        "epilog": EPILOG,
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
    parser = _Parser(
        prog="tokenauth",
        description="OAuth 2.0 bearer tokens for requests, from the command line.",
        **common,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = commands.add_parser("demo", help="run the demo against the embedded server")
    demo.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    demo.add_argument("--seconds", type=float, default=6.0, help="how long to run (default 6)")
    demo.add_argument("--lifetime", type=int, default=2, help="token lifetime in seconds")

    token = commands.add_parser("token", help="obtain a token and print it", **common)
    _auth_options(token)
    token.add_argument("--json", action="store_true", help="print the whole token as JSON")
    token.add_argument(
        "--include-refresh-token",
        action="store_true",
        help="with --json, include the refresh token (left out by default)",
    )

    request = commands.add_parser("request", help="send an authenticated request", **common)
    request.add_argument("method", help="GET, POST, ...")
    request.add_argument("url", type=http_url)
    _auth_options(request)
    request.add_argument(
        "-d", "--data", help="request body; @PATH reads a file, @- reads standard input"
    )
    request.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header (repeatable)",
    )
    request.add_argument(
        "-i", "--include", action="store_true", help="print the status line and headers first"
    )
    return parser

"""The command line: ``tokenauth demo | token | request`` (also ``python -m requests_tokenauth``).

Secrets never come from the command line, where ``ps`` and shell history would show them:
the client secret is read from an environment variable (``--client-secret-env``, default
``TOKENAUTH_CLIENT_SECRET``) or a file (``--client-secret-file``), and so is a refresh
token. Errors print one line on stderr, never a secret, and no traceback unless
``--debug``.

Exit statuses:

==  ============================================================================
0   success
1   ``request``: the resource answered with an HTTP status of 400 or more
2   bad usage or configuration: a missing secret, a bad URL, an unknown option
3   the token endpoint refused: ``invalid_client``, ``invalid_grant``, ...
4   the token endpoint could not be reached, failed, or answered nonsense
5   ``request``: the resource could not be reached
==  ============================================================================
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional, TextIO

import requests

from ._auth import TokenAuth
from ._errors import (
    ConfigurationError,
    InvalidGrantError,
    TokenAuthError,
    TokenEndpointError,
)
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


class CommandError(Exception):
    """A failure the CLI reports as one line with this exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (argparse prints the usage block first by default)."""

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"(--[\w-]+)=\S+", r"\1=...", message)
        head, sep, rest = message.partition(": ")
        if head == "unrecognized arguments":  # values may be a secret typed by mistake
            rest = " ".join(word for word in rest.split() if word.startswith("-")) or "(values)"
        raise CommandError(f"{head}{sep}{rest} (see {self.prog} --help)", EXIT_USAGE)


def _supports_issuer() -> bool:
    return all(hasattr(cls, "from_issuer") for cls in GRANTS.values())


def _auth_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("authorization server and client")
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--token-url", default=os.environ.get(ENV_DEFAULTS["token_url"]), help="token endpoint"
    )
    if _supports_issuer():
        where.add_argument(
            "--issuer",
            default=os.environ.get(ENV_DEFAULTS["issuer"]),
            help="issuer URL; the token endpoint is discovered from its metadata",
        )
    group.add_argument("--client-id", default=os.environ.get(ENV_DEFAULTS["client_id"]))
    group.add_argument(
        "--scope", default=os.environ.get(ENV_DEFAULTS["scope"]), help="space-separated scopes"
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
        default=DEFAULT_SECRET_ENV,
        help=f"environment variable holding the client secret (default {DEFAULT_SECRET_ENV})",
    )
    secret.add_argument("--client-secret-file", metavar="PATH", type=Path)
    refresh = group.add_mutually_exclusive_group()
    refresh.add_argument(
        "--refresh-token-env",
        metavar="NAME",
        default=DEFAULT_REFRESH_TOKEN_ENV,
        help=f"for --grant refresh_token (default {DEFAULT_REFRESH_TOKEN_ENV})",
    )
    refresh.add_argument("--refresh-token-file", metavar="PATH", type=Path)
    group.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="accept a plain-http token URL to a host other than this machine",
    )
    group.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--debug", action="store_true", help="tracebacks and debug logging")


def build_parser() -> argparse.ArgumentParser:
    """The ``tokenauth`` argument parser."""
    parser = _Parser(
        prog="tokenauth",
        description="OAuth 2.0 bearer tokens for requests, from the command line.",
        epilog="Secrets are read from the environment or a file, never from arguments.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = commands.add_parser("demo", help="run the demo against the embedded server")
    demo.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    demo.add_argument("--seconds", type=float, default=6.0, help="how long to run (default 6)")
    demo.add_argument("--lifetime", type=int, default=2, help="token lifetime in seconds")

    token = commands.add_parser("token", help="obtain a token and print it")
    _auth_options(token)
    token.add_argument("--json", action="store_true", help="print the whole token as JSON")
    token.add_argument(
        "--include-refresh-token",
        action="store_true",
        help="with --json, include the refresh token (left out by default)",
    )

    request = commands.add_parser("request", help="send an authenticated request")
    request.add_argument("method", help="GET, POST, ...")
    request.add_argument("url")
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


# -- reading the secrets ----------------------------------------------------------------------


def _read_secret(env: str, path: Optional[Path], what: str, flag: str) -> Optional[str]:
    if path is not None:
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CommandError(
                f"cannot read the {what} file {str(path)!r}: {exc.strerror}", EXIT_USAGE
            ) from None
        if not value:
            raise CommandError(f"the {what} file {str(path)!r} is empty", EXIT_USAGE)
        return value
    return os.environ.get(env) or None


def _grant(args: argparse.Namespace) -> Grant:
    if not args.client_id:
        raise CommandError(
            f"no client id: pass --client-id or set {ENV_DEFAULTS['client_id']}", EXIT_USAGE
        )
    issuer = getattr(args, "issuer", None)
    if not args.token_url and not issuer:
        hint = " or --issuer" if _supports_issuer() else ""
        raise CommandError(f"no token endpoint: pass --token-url{hint}", EXIT_USAGE)
    secret = _read_secret(
        args.client_secret_env, args.client_secret_file, "client secret", "--client-secret-file"
    )
    if secret is None and args.auth_method != "none":
        raise CommandError(
            f"no client secret: set {args.client_secret_env} or pass --client-secret-file "
            "(or --auth-method none for a public client)",
            EXIT_USAGE,
        )
    kwargs: dict[str, Any] = {
        "client_id": args.client_id,
        "client_secret": secret if args.auth_method != "none" else None,
        "scope": args.scope or None,
        "auth_method": args.auth_method,
        "timeout": args.timeout,
        "allow_insecure_http": args.allow_insecure_http,
    }
    cls = GRANTS[args.grant]
    if cls is RefreshToken:
        refresh = _read_secret(args.refresh_token_env, args.refresh_token_file, "refresh token", "")
        if refresh is None:
            raise CommandError(
                f"no refresh token: set {args.refresh_token_env} or pass --refresh-token-file",
                EXIT_USAGE,
            )
        kwargs["refresh_token"] = refresh
    if issuer and not args.token_url:
        from_issuer: Callable[..., Grant] = getattr(cls, "from_issuer")  # noqa: B009
        return from_issuer(issuer, **kwargs)
    return cls(args.token_url, **kwargs)


def _secrets(args: argparse.Namespace) -> list[str]:
    """Every secret this invocation read, so no message can show one."""
    found = []
    for env, path in (
        (getattr(args, "client_secret_env", None), getattr(args, "client_secret_file", None)),
        (getattr(args, "refresh_token_env", None), getattr(args, "refresh_token_file", None)),
    ):
        if env is None:
            continue
        try:
            value = _read_secret(env, path, "", "")
        except CommandError:
            value = None
        if value:
            found.append(value)
    return found


# -- the commands -----------------------------------------------------------------------------


def _token(args: argparse.Namespace, out: TextIO) -> int:
    auth = TokenAuth(_grant(args), refresh_ahead="inline")
    token = auth.get_token()
    if not args.json:
        print(token.access_token, file=out)
        return EXIT_OK
    data = token.to_dict()
    if not args.include_refresh_token:
        data.pop("refresh_token", None)
    print(json.dumps(data, indent=2, sort_keys=True), file=out)
    return EXIT_OK


def _body(data: Optional[str]) -> Optional[bytes]:
    if data is None:
        return None
    if data == "@-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_bytes()
        except OSError as exc:
            raise CommandError(
                f"cannot read the body file {data[1:]!r}: {exc.strerror}", EXIT_USAGE
            ) from None
    return data.encode("utf-8")


def _headers(values: Sequence[str]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise CommandError(f"bad header {name.strip()!r}: use 'Name: value'", EXIT_USAGE)
        if name.strip().lower() == "authorization":
            raise CommandError("the Authorization header is set from the token", EXIT_USAGE)
        headers[name.strip()] = rest.strip()
    return headers


def _request(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    session = requests.Session()
    session.auth = TokenAuth(_grant(args), refresh_ahead="inline")
    method = args.method.upper()
    try:
        response = session.request(
            method,
            args.url,
            data=_body(args.data),
            headers=_headers(args.header),
            timeout=args.timeout,
        )
    except TokenAuthError:
        raise
    except requests.exceptions.RequestException as exc:
        raise CommandError(
            f"{method} {args.url} failed: {type(exc).__name__}", EXIT_UNREACHABLE
        ) from exc
    with response:
        if args.include:
            print(f"HTTP {response.status_code} {response.reason}", file=out)
            for name, value in response.headers.items():
                print(f"{name}: {value}", file=out)
            print(file=out)
        out.flush()
        buffer = getattr(out, "buffer", None)
        if buffer is not None:
            buffer.write(response.content)
            buffer.flush()
        else:
            out.write(response.text)
        if response.content and not response.content.endswith(b"\n"):
            print(file=out)
    if response.status_code >= 400:
        print(
            f"tokenauth: error: {method} {args.url} answered HTTP {response.status_code} "
            f"{response.reason}",
            file=err,
        )
        return EXIT_HTTP_ERROR
    return EXIT_OK


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from ._demo import run_demo

    result = run_demo(
        threads=args.threads, seconds=args.seconds, lifetime_seconds=args.lifetime, out=out
    )
    return EXIT_OK if result.ok else 1


def _status(exc: BaseException) -> int:
    if isinstance(exc, CommandError):
        return exc.status
    if isinstance(exc, ConfigurationError):
        return EXIT_USAGE
    if isinstance(exc, InvalidGrantError):
        return EXIT_REFUSED
    if isinstance(exc, TokenEndpointError):
        return EXIT_TOKEN_ENDPOINT
    return EXIT_TOKEN_ENDPOINT


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    return text


def main(
    argv: Optional[Sequence[str]] = None,
    *,
    out: Optional[TextIO] = None,
    err: Optional[TextIO] = None,
) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    args: Optional[argparse.Namespace] = None
    try:
        args = build_parser().parse_args(argv)
        if args.command != "demo" and args.debug:
            logging.basicConfig(level=logging.DEBUG, stream=err)
        else:  # failures are reported as one line below, not also as log lines
            logging.getLogger("requests_tokenauth").addHandler(logging.NullHandler())
        if args.command == "demo":
            return _demo(args, out)
        if args.command == "token":
            return _token(args, out)
        return _request(args, out, err)
    except (CommandError, TokenAuthError) as exc:
        secrets = _secrets(args) if args is not None else []
        if args is not None and getattr(args, "debug", False):
            print(_scrub(traceback.format_exc(), secrets), file=err, end="")
        print(f"tokenauth: error: {_scrub(str(exc), secrets)}", file=err)
        return _status(exc)
    except KeyboardInterrupt:
        print("tokenauth: interrupted", file=err)
        return 130

"""The command line: ``tokenauth demo | token | request`` (also ``python -m requests_tokenauth``).

Secrets never come from the command line, where ``ps`` and shell history would show them:
the client secret is read from an environment variable (``--client-secret-env``, default
``TOKENAUTH_CLIENT_SECRET``) or a file (``--client-secret-file``), and so is a refresh
token. Errors print one line on stderr, never a secret, and no traceback unless
``--debug``.

The exit statuses and environment variables are listed by ``tokenauth --help`` (the
epilog in :mod:`._cli_parser`) and in ``docs/cli.rst``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, TextIO

import requests
from requests.adapters import HTTPAdapter

from ._auth import TokenAuth
from ._cli_errors import exit_status, failure_kind, one_line, scrub
from ._cli_parser import (
    DEFAULT_REFRESH_TOKEN_ENV,
    DEFAULT_SECRET_ENV,
    ENV_DEFAULTS,
    EXIT_HTTP_ERROR,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_TOKEN_ENDPOINT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    GRANTS,
    CommandError,
    build_parser,
)
from ._errors import (
    ConfigurationError,
    TokenAuthError,
)
from ._grants import Grant, RefreshToken
from ._grants._discovery import discover
from ._grants._urls import is_loopback

__all__ = [
    "EXIT_HTTP_ERROR",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_TOKEN_ENDPOINT",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CommandError",
    "build_parser",
    "main",
]


# -- reading the secrets ----------------------------------------------------------------------


def _read_secret(env: str, path: Optional[Path], flag: str) -> Optional[str]:
    """The secret in file ``path``, else in variable ``env``. Messages name the option
    (``flag``), never the path or the variable, which may be a secret typed there by mistake."""
    if path is not None:
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CommandError(
                f"cannot read the file given to {flag}-file: {exc.strerror}", EXIT_USAGE
            ) from None
        except UnicodeDecodeError:
            raise CommandError(f"the file given to {flag}-file is not UTF-8", EXIT_USAGE) from None
        if not value:
            raise CommandError(f"the file given to {flag}-file is empty", EXIT_USAGE)
        return value
    return os.environ.get(env) or None


def _unset(env: str, default: str, flag: str) -> str:
    if env == default:
        return f"set {default} or pass {flag}-file"
    return f"the variable named by {flag}-env is unset or empty; or pass {flag}-file"


def _check_plain_http(url: Optional[str], option: str, allowed: bool) -> None:
    if url is None or allowed:
        return
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise CommandError(
            f"{option} is plain http: tokens would travel unencrypted. Use https, or pass "
            "--allow-insecure-http if this network is trusted",
            EXIT_USAGE,
        )


def _grant(args: argparse.Namespace) -> Grant:
    if args.command == "token" and args.include_refresh_token and not args.json:
        raise CommandError("--include-refresh-token needs --json", EXIT_USAGE)
    if not args.client_id:
        raise CommandError(
            f"no client id: pass --client-id or set {ENV_DEFAULTS['client_id']}", EXIT_USAGE
        )
    if not args.token_url and not args.issuer:
        raise CommandError("no token endpoint: pass --token-url or --issuer", EXIT_USAGE)
    _check_plain_http(args.token_url, "--token-url", args.allow_insecure_http)
    _check_plain_http(args.issuer, "--issuer", args.allow_insecure_http)
    secret = _read_secret(args.client_secret_env, args.client_secret_file, "--client-secret")
    if secret is None and args.auth_method != "none":
        raise CommandError(
            "no client secret: "
            + _unset(args.client_secret_env, DEFAULT_SECRET_ENV, "--client-secret")
            + " (or --auth-method none for a public client)",
            EXIT_USAGE,
        )
    cls = GRANTS[args.grant]
    refresh: Optional[str] = None
    if cls is RefreshToken:
        refresh = _read_secret(args.refresh_token_env, args.refresh_token_file, "--refresh-token")
        if refresh is None:
            raise CommandError(
                "no refresh token: "
                + _unset(args.refresh_token_env, DEFAULT_REFRESH_TOKEN_ENV, "--refresh-token"),
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
    if refresh is not None:
        kwargs["refresh_token"] = refresh
    if args.token_url:
        return cls(args.token_url, **kwargs)
    _discover(args.issuer, args)
    return cls.from_issuer(args.issuer, **kwargs)


class _FailureRecorder(HTTPAdapter):
    """Remembers why requests failed: discovery reports only the exception's class name."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[requests.exceptions.RequestException] = []

    def send(self, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            return super().send(*args, **kwargs)
        except requests.exceptions.RequestException as exc:
            self.failures.append(exc)
            raise


def _discover(issuer: str, args: argparse.Namespace) -> None:
    """Fetch (and cache, for ``from_issuer``) the issuer's metadata, so that an issuer that
    cannot be reached exits as a token endpoint that cannot be reached does."""
    recorder = _FailureRecorder()
    with requests.Session() as session:
        session.mount("http://", recorder)
        session.mount("https://", recorder)
        try:
            discover(
                issuer,
                session=session,
                timeout=args.timeout,
                allow_insecure_http=args.allow_insecure_http,
            )
        except ConfigurationError:
            if not recorder.failures:
                raise
            kinds = sorted({failure_kind(exc) for exc in recorder.failures})
            raise CommandError(
                f"the metadata of issuer {issuer} could not be fetched: {', '.join(kinds)}",
                EXIT_TOKEN_ENDPOINT,
            ) from recorder.failures[-1]


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
            value = _read_secret(env, path, "")
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
            f"{method} {args.url} failed: {type(exc).__name__} ({failure_kind(exc)})",
            EXIT_UNREACHABLE,
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
            print(scrub(traceback.format_exc(), secrets), file=err, end="")
        print(f"tokenauth: error: {scrub(one_line(exc), secrets)}", file=err)
        return exit_status(exc)
    except KeyboardInterrupt:
        print("tokenauth: interrupted", file=err)
        return 130

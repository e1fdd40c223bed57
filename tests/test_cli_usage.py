"""The command line's rough edges, each as a subprocess: ``--version``, usage errors as one
line with status 2 (never a traceback, never a value typed in the wrong place), connection
failures that say which kind, and ``--help`` that lists exit statuses and environment
variables."""

from __future__ import annotations

import pytest

from requests_tokenauth import __version__, _cli
from requests_tokenauth.testing import AuthServer

from .test_cli import (
    SVC_ENV,
    assert_no_secret,
    assert_one_error_line,
    clean_env,
    closed_port,
    svc,
    tokenauth,
)

#: Typed where an option expected a name, a path or a choice: it must never be echoed.
TYPED_SECRET = "typed-s3cret-9b2e"


def test_version() -> None:
    result = tokenauth("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"tokenauth {__version__}"


@pytest.mark.parametrize("command", ["", "token", "request"])
def test_help_lists_the_exit_statuses_and_the_environment_variables(command: str) -> None:
    result = tokenauth(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    for status in range(6):
        assert f"\n  {status}  " in result.stdout, status
    names = (_cli.DEFAULT_SECRET_ENV, _cli.DEFAULT_REFRESH_TOKEN_ENV, *_cli.ENV_DEFAULTS.values())
    for name in names:
        assert name in result.stdout, name


# -- usage errors: status 2, one line naming the option ----------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("--token-url", "http://[::1", "invalid ipv6 url"),
        ("--token-url", "http://127.0.0.1:99999/token", "port out of range"),
        ("--token-url", "http://127.0.0.1:port/token", "port could not be cast"),
        ("--token-url", "ftp://127.0.0.1/token", "not an absolute http(s) URL"),
        ("--issuer", "http://[::1", "invalid ipv6 url"),
        ("--issuer", "http://127.0.0.1:70000", "port out of range"),
        ("--issuer", "not a url", "not an absolute http(s) URL"),
    ],
)
def test_a_bad_url_is_a_usage_error(option: str, value: str, reason: str) -> None:
    result = tokenauth("token", option, value, "--client-id", "svc", env=clean_env(**SVC_ENV))
    line = assert_one_error_line(result, _cli.EXIT_USAGE)
    assert f"argument {option}: " in line and reason in line


def test_a_bad_resource_url_is_a_usage_error() -> None:
    token_url = f"http://127.0.0.1:{closed_port()}/token"
    result = tokenauth(
        "request", "GET", "http://[::1", "--token-url", token_url, "--client-id", "svc",
        env=clean_env(**SVC_ENV),
    )  # fmt: skip
    assert "argument url: not a valid URL" in assert_one_error_line(result, _cli.EXIT_USAGE)


def test_plain_http_names_the_command_line_option() -> None:
    result = tokenauth(
        "token", "--token-url", "http://idp.example.com/token", "--client-id", "svc",
        env=clean_env(**SVC_ENV),
    )  # fmt: skip
    line = assert_one_error_line(result, _cli.EXIT_USAGE)
    assert "plain http" in line and "--allow-insecure-http" in line
    assert "allow_insecure_http" not in line


@pytest.mark.parametrize(
    ("option", "variable"),
    [
        ("--client-secret", _cli.DEFAULT_SECRET_ENV),
        ("--refresh-token", _cli.DEFAULT_REFRESH_TOKEN_ENV),
    ],
)
def test_a_secret_option_explains_where_secrets_go(option: str, variable: str) -> None:
    for args in ((option, TYPED_SECRET), (f"{option}={TYPED_SECRET}",)):
        result = tokenauth("token", *svc_dead(), *args, env=clean_env(**SVC_ENV))
        line = assert_one_error_line(result, _cli.EXIT_USAGE)
        assert "never go on the command line" in line
        assert variable in line and f"{option}-file" in line
        assert TYPED_SECRET not in result.stdout + result.stderr


def test_include_refresh_token_needs_json(auth_server: AuthServer) -> None:
    saved = auth_server.issue_token("app", refresh=True, user="alice")
    env = clean_env(TOKENAUTH_CLIENT_SECRET="app-secret", APP_RT=saved["refresh_token"])
    result = tokenauth(
        "token", "--token-url", auth_server.token_url, "--client-id", "app",
        "--grant", "refresh_token", "--refresh-token-env", "APP_RT", "--include-refresh-token",
        env=env,
    )  # fmt: skip
    line = assert_one_error_line(result, _cli.EXIT_USAGE)
    assert "--include-refresh-token needs --json" in line
    assert result.stdout == ""
    assert auth_server.token_requests == 0


def svc_dead() -> tuple[str, ...]:
    return ("--token-url", f"http://127.0.0.1:{closed_port()}/token", "--client-id", "svc")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("--client-secret-env", TYPED_SECRET), "--client-secret-env"),
        (("--client-secret-env", TYPED_SECRET.replace("-", "_")), "--client-secret-env"),
        (("--refresh-token-env", TYPED_SECRET, "--grant", "refresh_token"), "--refresh-token-env"),
        (
            ("--refresh-token-env", TYPED_SECRET.replace("-", "_"), "--grant", "refresh_token"),
            "--refresh-token-env",
        ),
        (("--client-secret-file", TYPED_SECRET), "--client-secret-file"),
        (
            ("--refresh-token-file", TYPED_SECRET, "--grant", "refresh_token"),
            "--refresh-token-file",
        ),
        (("--auth-method", TYPED_SECRET), "--auth-method"),
        (("--grant", TYPED_SECRET), "--grant"),
        (("--timeout", TYPED_SECRET), "--timeout"),
    ],
)
def test_a_value_given_to_the_wrong_option_is_not_echoed(
    args: tuple[str, ...], option: str
) -> None:
    result = tokenauth("token", *svc_dead(), *args, env=clean_env(**SVC_ENV))
    line = assert_one_error_line(result, _cli.EXIT_USAGE)
    assert option in line
    assert TYPED_SECRET not in result.stdout + result.stderr
    assert TYPED_SECRET.replace("-", "_") not in result.stdout + result.stderr


# -- connection failures: which kind, the same status for the issuer and the token URL ----------


def test_a_dead_issuer_exits_as_a_dead_token_url_does() -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    by_token_url = tokenauth(
        "token", "--token-url", dead + "/token", "--client-id", "svc", env=clean_env(**SVC_ENV)
    )
    by_issuer = tokenauth("token", "--issuer", dead, "--client-id", "svc", env=clean_env(**SVC_ENV))
    assert "connection refused" in assert_one_error_line(by_token_url, _cli.EXIT_TOKEN_ENDPOINT)
    line = assert_one_error_line(by_issuer, _cli.EXIT_TOKEN_ENDPOINT)
    assert dead in line and "connection refused" in line
    assert_no_secret(by_issuer)


@pytest.mark.parametrize("kind", ["refused", "TLS", "timeout", "DNS"])
def test_a_connection_failure_says_which_kind(auth_server: AuthServer, kind: str) -> None:
    extra: tuple[str, ...] = ()
    if kind == "refused":
        token_url, words = f"http://127.0.0.1:{closed_port()}/token", "connection refused"
    elif kind == "TLS":  # https to a plain-http server
        token_url, words = auth_server.token_url.replace("http://", "https://"), "TLS error"
    elif kind == "timeout":
        auth_server.slow_seconds = 30.0
        auth_server.set_token_fault("slow")
        token_url, words, extra = auth_server.token_url, "timed out", ("--timeout", "0.5")
    else:  # RFC 6761: .invalid never resolves
        token_url, words = "http://idp.invalid/token", "DNS lookup failed"
        extra = ("--allow-insecure-http",)
    result = tokenauth(
        "token", "--token-url", token_url, "--client-id", "svc", *extra, env=clean_env(**SVC_ENV)
    )
    line = assert_one_error_line(result, _cli.EXIT_TOKEN_ENDPOINT)
    assert f"({words})" in line
    assert_no_secret(result)


def test_an_unreachable_resource_says_which_kind(auth_server: AuthServer) -> None:
    resource = f"http://127.0.0.1:{closed_port()}/resource"
    result = tokenauth("request", "GET", resource, *svc(auth_server), env=clean_env(**SVC_ENV))
    line = assert_one_error_line(result, _cli.EXIT_UNREACHABLE)
    assert resource in line and "(connection refused)" in line
    assert_no_secret(result)

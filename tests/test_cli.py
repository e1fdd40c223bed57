"""The command line, run as a subprocess against the testing server: every subcommand, and
bad input (missing secret, unreachable token URL, invalid_client, ...) reported as one line
with a distinct non-zero exit status and never a secret."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
import requests

from requests_tokenauth import _cli
from requests_tokenauth._demo import run_demo
from requests_tokenauth.testing import AuthServer

#: A wrong secret: it must not appear in any output either.
WRONG_SECRET = "not-the-secret-5e1f"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENAUTH_")}
    env.update(NO_PROXY="127.0.0.1,localhost", PYTHONWARNINGS="ignore", **extra)
    return env


def tokenauth(
    *args: str, env: Optional[dict[str, str]] = None, stdin: Optional[bytes] = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "requests_tokenauth", *args],
        capture_output=True,
        env=clean_env() if env is None else env,
        input=None if stdin is None else stdin.decode(),
        text=True,
        timeout=60,
        check=False,
    )


def svc(server: AuthServer, *more: str) -> tuple[str, ...]:
    return ("--token-url", server.token_url, "--client-id", "svc", *more)


SVC_ENV = {"TOKENAUTH_CLIENT_SECRET": "svc-secret"}


def assert_one_error_line(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tokenauth: error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def assert_no_secret(result: subprocess.CompletedProcess[str], *secrets: str) -> None:
    for secret in ("svc-secret", "app-secret", WRONG_SECRET, *secrets):
        assert secret not in result.stdout + result.stderr


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- token -------------------------------------------------------------------------------------


def test_token_prints_an_access_token_the_resource_accepts(auth_server: AuthServer) -> None:
    result = tokenauth("token", *svc(auth_server), env=clean_env(**SVC_ENV))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    access = result.stdout.strip()
    response = requests.get(auth_server.resource_url, headers={"Authorization": f"Bearer {access}"})
    assert response.json()["client_id"] == "svc"
    assert auth_server.token_requests_by_grant == {"client_credentials": 1}


def test_token_json_has_no_refresh_token_unless_asked(auth_server: AuthServer) -> None:
    saved = auth_server.issue_token("app", refresh=True, user="alice")
    env = clean_env(TOKENAUTH_CLIENT_SECRET="app-secret", APP_RT=saved["refresh_token"])
    base = ("token", "--token-url", auth_server.token_url, "--client-id", "app")
    args = (*base, "--grant", "refresh_token", "--refresh-token-env", "APP_RT", "--json")
    without = tokenauth(*args, env=env)
    assert without.returncode == 0, without.stderr
    data = json.loads(without.stdout)
    assert "refresh_token" not in data
    assert data["token_type"] == "Bearer" and data["expires_in"] == 3600
    assert saved["refresh_token"] not in without.stdout
    with_it = tokenauth(*args, "--include-refresh-token", env=env)
    assert with_it.returncode == 0, with_it.stderr
    assert json.loads(with_it.stdout)["refresh_token"] == saved["refresh_token"]
    assert auth_server.token_requests_by_grant == {"refresh_token": 2}


def test_token_reads_the_secret_from_a_file_and_sends_the_scope(
    auth_server: AuthServer, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("svc-secret\n")
    result = tokenauth(
        "token", *svc(auth_server, "--scope", "read", "--client-secret-file", str(secret), "--json")
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["scope"] == "read"


def test_options_come_from_the_environment(auth_server: AuthServer) -> None:
    env = clean_env(
        TOKENAUTH_TOKEN_URL=auth_server.token_url,
        TOKENAUTH_CLIENT_ID="svc",
        TOKENAUTH_SCOPE="write",
        MY_SECRET="svc-secret",
    )
    result = tokenauth("token", "--client-secret-env", "MY_SECRET", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["scope"] == "write"


def test_the_console_script_is_installed(auth_server: AuthServer) -> None:
    script = Path(sys.executable).with_name("tokenauth")
    if not script.exists():
        pytest.skip("the package is not installed with its console script here")
    result = subprocess.run(
        [str(script), "token", *svc(auth_server)],
        capture_output=True,
        text=True,
        env=clean_env(**SVC_ENV),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) > 20


# -- request -----------------------------------------------------------------------------------


def test_request_prints_the_body(auth_server: AuthServer) -> None:
    result = tokenauth(
        "request", "GET", auth_server.resource_url, *svc(auth_server), env=clean_env(**SVC_ENV)
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["client_id"] == "svc"
    assert result.stderr == ""


def test_request_include_prints_status_and_headers_first(auth_server: AuthServer) -> None:
    result = tokenauth(
        "request",
        "get",
        auth_server.resource_url,
        "-i",
        *svc(auth_server),
        env=clean_env(**SVC_ENV),
    )
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition("\n\n")
    assert head.splitlines()[0] == "HTTP 200 OK"
    assert "Content-Type: application/json" in head.splitlines()
    assert json.loads(body)["method"] == "GET"


def test_request_sends_data_from_text_a_file_and_stdin(
    auth_server: AuthServer, tmp_path: Path
) -> None:
    body_file = tmp_path / "body.json"
    body_file.write_bytes(b'{"from": "file"}')
    cases = [
        (("-d", "a=1"), None, b"a=1"),
        (("--data", f"@{body_file}"), None, b'{"from": "file"}'),
    ]
    cases.append((("-d", "@-"), b"piped", b"piped"))
    for data_args, stdin, sent in cases:
        result = tokenauth(
            "request",
            "POST",
            auth_server.resource_url,
            *data_args,
            "-H",
            "Content-Type: application/json",
            *svc(auth_server),
            env=clean_env(**SVC_ENV),
            stdin=stdin,
        )
        assert result.returncode == 0, result.stderr
        echoed = json.loads(result.stdout)
        assert echoed["method"] == "POST"
        assert echoed["body_sha256"] == hashlib.sha256(sent).hexdigest()
    assert auth_server.token_requests == 3  # one process per call, one token each


def test_request_http_error_prints_the_body_and_exits_1(auth_server: AuthServer) -> None:
    result = tokenauth(
        "request", "GET", auth_server.url + "/nowhere", *svc(auth_server), env=clean_env(**SVC_ENV)
    )
    line = assert_one_error_line(result, _cli.EXIT_HTTP_ERROR)
    assert "HTTP 404" in line
    assert json.loads(result.stdout) == {"error": "not_found"}


def test_request_401_after_the_one_retry_exits_1(auth_server: AuthServer) -> None:
    auth_server.always_401 = True
    result = tokenauth(
        "request", "GET", auth_server.resource_url, *svc(auth_server), env=clean_env(**SVC_ENV)
    )
    assert "HTTP 401" in assert_one_error_line(result, _cli.EXIT_HTTP_ERROR)
    assert auth_server.resource_requests == 2  # the guarded retry, once
    assert_no_secret(result)


def test_request_to_an_unreachable_resource_exits_5(auth_server: AuthServer) -> None:
    url = f"http://127.0.0.1:{closed_port()}/resource"
    result = tokenauth("request", "GET", url, *svc(auth_server), env=clean_env(**SVC_ENV))
    assert "ConnectionError" in assert_one_error_line(result, _cli.EXIT_UNREACHABLE)


def test_request_refuses_an_authorization_header(auth_server: AuthServer) -> None:
    result = tokenauth(
        "request",
        "GET",
        auth_server.resource_url,
        "-H",
        "Authorization: Bearer x",
        *svc(auth_server),
        env=clean_env(**SVC_ENV),
    )
    assert_one_error_line(result, _cli.EXIT_USAGE)
    assert auth_server.token_requests == 0 and auth_server.resource_requests == 0


# -- bad input: one line, a distinct status, no secret ------------------------------------------


@pytest.mark.parametrize("command", ["token", "request"])
def test_missing_secret(auth_server: AuthServer, command: str) -> None:
    target = ("GET", auth_server.resource_url) if command == "request" else ()
    result = tokenauth(command, *target, *svc(auth_server))
    line = assert_one_error_line(result, _cli.EXIT_USAGE)
    assert "no client secret" in line and "TOKENAUTH_CLIENT_SECRET" in line
    assert auth_server.token_requests == 0 and auth_server.resource_requests == 0


def test_missing_secret_file(auth_server: AuthServer, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = tokenauth("token", *svc(auth_server, "--client-secret-file", str(missing)))
    line = assert_one_error_line(result, _cli.EXIT_USAGE)
    assert "cannot read the file given to --client-secret-file" in line


@pytest.mark.parametrize("command", ["token", "request"])
def test_unreachable_token_url(command: str) -> None:
    token_url = f"http://127.0.0.1:{closed_port()}/token"
    target = ("GET", "http://127.0.0.1:9/resource") if command == "request" else ()
    result = tokenauth(
        command, *target, "--token-url", token_url, "--client-id", "svc", env=clean_env(**SVC_ENV)
    )
    line = assert_one_error_line(result, _cli.EXIT_TOKEN_ENDPOINT)
    assert token_url in line and "ConnectionError" in line
    assert_no_secret(result)


@pytest.mark.parametrize("command", ["token", "request"])
def test_invalid_client(auth_server: AuthServer, command: str) -> None:
    target = ("GET", auth_server.resource_url) if command == "request" else ()
    env = clean_env(TOKENAUTH_CLIENT_SECRET=WRONG_SECRET)
    result = tokenauth(command, *target, *svc(auth_server), env=env)
    assert "invalid_client" in assert_one_error_line(result, _cli.EXIT_REFUSED)
    assert result.stdout == ""
    assert_no_secret(result)
    assert auth_server.token_errors == {"invalid_client": 1}
    assert auth_server.resource_requests == 0


def test_invalid_grant_with_a_dead_refresh_token(auth_server: AuthServer) -> None:
    env = clean_env(TOKENAUTH_CLIENT_SECRET="app-secret", TOKENAUTH_REFRESH_TOKEN="dead-rt-1234")
    result = tokenauth(
        "token",
        "--token-url",
        auth_server.token_url,
        "--client-id",
        "app",
        "--grant",
        "refresh_token",
        env=env,
    )
    assert "invalid_grant" in assert_one_error_line(result, _cli.EXIT_REFUSED)
    assert_no_secret(result, "dead-rt-1234")


def test_debug_shows_the_traceback_but_no_secret(auth_server: AuthServer) -> None:
    env = clean_env(TOKENAUTH_CLIENT_SECRET=WRONG_SECRET)
    result = tokenauth("token", *svc(auth_server, "--debug"), env=env)
    assert result.returncode == _cli.EXIT_REFUSED
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("tokenauth: error: ")
    assert_no_secret(result)


def test_a_secret_typed_on_the_command_line_is_refused_and_not_echoed(
    auth_server: AuthServer,
) -> None:
    for args in (
        ("--client-secret", "typed-s3cret"),
        ("--client-secret=typed-s3cret",),
        ("typed-s3cret",),
    ):
        result = tokenauth("token", *svc(auth_server), *args, env=clean_env(**SVC_ENV))
        assert_one_error_line(result, _cli.EXIT_USAGE)
        assert "typed-s3cret" not in result.stderr + result.stdout
    assert auth_server.token_requests == 0


def test_no_token_url_or_client_id() -> None:
    assert "no token endpoint" in assert_one_error_line(
        tokenauth("token", "--client-id", "svc", env=clean_env(**SVC_ENV)), _cli.EXIT_USAGE
    )
    assert "no client id" in assert_one_error_line(
        tokenauth("token", "--token-url", "http://127.0.0.1:9/t", env=clean_env(**SVC_ENV)),
        _cli.EXIT_USAGE,
    )


def test_plain_http_to_a_remote_host_is_a_usage_error() -> None:
    result = tokenauth(
        "token",
        "--token-url",
        "http://idp.example.com/token",
        "--client-id",
        "svc",
        env=clean_env(**SVC_ENV),
    )
    assert "plain http" in assert_one_error_line(result, _cli.EXIT_USAGE)


def test_issuer_discovery(auth_server: AuthServer) -> None:
    if "--issuer" not in tokenauth("token", "--help").stdout:
        pytest.skip("Grant.from_issuer is not available")
    metadata = requests.get(auth_server.url + "/.well-known/oauth-authorization-server", timeout=10)
    if metadata.status_code != 200:
        pytest.skip("the testing server publishes no metadata")
    result = tokenauth(
        "token", "--issuer", auth_server.url, "--client-id", "svc", env=clean_env(**SVC_ENV)
    )
    assert result.returncode == 0, result.stderr
    assert auth_server.token_requests == 1


# -- demo --------------------------------------------------------------------------------------


def test_demo_runs_and_prints_plain_lines_when_not_a_terminal() -> None:
    result = tokenauth("demo", "--seconds", "2", "--threads", "2", "--lifetime", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\r" not in result.stdout
    assert "OK: every request succeeded" in result.stdout
    assert "requests failed          0" in result.stdout


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_demo_updates_one_line_on_a_terminal() -> None:
    out = _Terminal()
    result = run_demo(threads=2, seconds=1.5, lifetime_seconds=1, out=out)
    assert result.ok
    text = out.getvalue()
    assert "\r" in text and "OK: every request succeeded" in text

"""Types that catch mistakes: mypy, run on a small user program, reports a misspelled
keyword to every public constructor and ``from_issuer``, a misspelled ``Literal`` option,
and sees the class that ``wrap_adapter`` and ``authorize_session`` return.

The program is generated from ``requests_tokenauth.__all__``, so a public class that goes
back to ``**kwargs: Any`` (which accepts any keyword) fails here."""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import pytest

import requests_tokenauth
from requests_tokenauth import Grant

mypy_api = pytest.importorskip("mypy.api", reason="mypy is in the test extra")

ROOT = Path(__file__).resolve().parent.parent

#: A keyword no public constructor takes (a typo of ``client_id``).
TYPO = "clientid"


def public_classes() -> list[type]:
    classes = []
    for name in requests_tokenauth.__all__:
        value = getattr(requests_tokenauth, name)
        if inspect.isclass(value) and not issubclass(value, BaseException):
            classes.append(value)
    return classes


def keyword_classes() -> list[type]:
    """Public classes whose constructor takes keyword arguments (a typo must be an error)."""
    found = []
    for cls in public_classes():
        try:
            parameters = inspect.signature(cls).parameters.values()
        except (TypeError, ValueError):
            continue
        if any(p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters):
            found.append(cls)
    return found


def grant_classes() -> list[type[Grant]]:
    return [cls for cls in public_classes() if issubclass(cls, Grant)]


PROGRAM_HEAD = """\
import requests
import requests_tokenauth as rt
from requests_tokenauth import (
    AuthorizedAdapter, ClientCredentials, TokenAuth, authorize_session, wrap_adapter,
)

grant = ClientCredentials("https://idp.example/token", client_id="svc", client_secret="s")
auth = TokenAuth(grant, refresh_ahead="inline")
wrapped = wrap_adapter(requests.adapters.HTTPAdapter(), auth)
reveal_type(wrapped)
session = requests.Session()
mounted = authorize_session(session, auth, "https://api.example")
reveal_type(mounted)
also: AuthorizedAdapter = mounted[0]
ok = ClientCredentials.from_issuer("https://idp.example", client_id="svc", client_secret="s")
reveal_type(ok)
rt.AuthorizationCode.from_issuer(
    "https://idp.example", client_id="app", redirect_uri="http://127.0.0.1/cb"
)
rt.DeviceCode.from_issuer("https://idp.example", client_id="tv", auth_method="none")
"""

#: Lines that must each be a type error, with what mypy must say about them.
MISTAKES = {
    'TokenAuth(grant, refresh_ahead="inilne")': "refresh_ahead",
    'ClientCredentials("u", client_id="svc", auth_method="client_secret_basci")': "auth_method",
}


def program() -> tuple[str, dict[int, str]]:
    """The user program and, by line number, what mypy must report on that line."""
    lines = PROGRAM_HEAD.splitlines()
    expected: dict[int, str] = {}

    def must_fail(line: str, words: str) -> None:
        lines.append(line)
        expected[len(lines)] = words

    for cls in keyword_classes():
        must_fail(f"rt.{cls.__name__}({TYPO}='svc')  # constructor", f'"{TYPO}"')
    for cls in grant_classes():
        must_fail(
            f"rt.{cls.__name__}.from_issuer('https://idp.example', {TYPO}='svc')",
            f'"{TYPO}"',
        )
    for line, words in MISTAKES.items():
        must_fail(line, words)
    return "\n".join(lines) + "\n", expected


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[int, list[str]], str]:
    here = tmp_path_factory.mktemp("typing")
    source, _ = program()
    (here / "user_program.py").write_text(source)
    (here / "mypy.ini").write_text("[mypy]\n")  # not the project's: a user's default settings
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MYPYPATH", str(ROOT))  # this source tree, installed or not
        stdout, stderr, _status = mypy_api.run(
            [
                "--strict",
                "--no-error-summary",
                "--show-error-codes",
                "--python-version",
                f"{sys.version_info.major}.{sys.version_info.minor}",
                "--cache-dir",
                str(here / "cache"),
                "--config-file",
                str(here / "mypy.ini"),
                "--follow-imports",
                "silent",  # the package is checked by `tox -e type`; report the user's lines only
                str(here / "user_program.py"),
            ]
        )
    assert "error: Cannot find implementation or library stub" not in stdout, stdout
    by_line: dict[int, list[str]] = {}
    for match in re.finditer(r"user_program\.py:(\d+): (\w+): (.*)", stdout):
        by_line.setdefault(int(match.group(1)), []).append(f"{match.group(2)}: {match.group(3)}")
    return by_line, stdout + stderr


def test_every_public_constructor_and_from_issuer_rejects_a_misspelled_keyword(
    mypy_report: tuple[dict[int, list[str]], str],
) -> None:
    by_line, raw = mypy_report
    source, expected = program()
    lines = source.splitlines()
    assert len(keyword_classes()) >= 12, "the generated program lost its constructors"
    missed = [
        lines[number - 1]
        for number, words in expected.items()
        if not any(m.startswith("error:") and words in m for m in by_line.get(number, []))
    ]
    assert missed == [], raw


def test_the_correct_lines_type_check(mypy_report: tuple[dict[int, list[str]], str]) -> None:
    by_line, raw = mypy_report
    head = len(PROGRAM_HEAD.splitlines())
    errors = {n: m for n, ms in by_line.items() if n <= head for m in ms if m.startswith("error")}
    assert errors == {}, raw


def test_wrap_adapter_and_authorize_session_return_the_exported_class(
    mypy_report: tuple[dict[int, list[str]], str],
) -> None:
    by_line, raw = mypy_report
    revealed = [
        m.replace('"builtins.list[', '"list[')  # older mypy versions spell it out
        for ms in by_line.values()
        for m in ms
        if "Revealed type" in m
    ]
    assert revealed == [
        'note: Revealed type is "requests_tokenauth._adapters.AuthorizedAdapter"',
        'note: Revealed type is "list[requests_tokenauth._adapters.AuthorizedAdapter]"',
        'note: Revealed type is "requests_tokenauth._grants._client_credentials.ClientCredentials"',
    ], raw


def test_no_public_constructor_takes_untyped_keywords() -> None:
    """The run-time view of the same rule: no ``**kwargs`` on a public constructor
    (protocols such as ``Clock`` are implemented, not constructed)."""
    loose = []
    for cls in public_classes():
        if getattr(cls, "_is_protocol", False):
            continue
        try:
            parameters = inspect.signature(cls).parameters.values()
        except (TypeError, ValueError):
            continue
        if any(p.kind is p.VAR_KEYWORD for p in parameters):
            loose.append(cls.__name__)
    assert loose == []


def test_from_issuer_refuses_positional_arguments_after_the_issuer() -> None:
    from_issuer = requests_tokenauth.ClientCredentials.from_issuer
    with pytest.raises(TypeError, match="keyword arguments only"):
        from_issuer("https://idp.example", "svc")  # type: ignore[call-arg]

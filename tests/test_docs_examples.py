"""Every ``.. code-block:: python`` example in README.rst and docs/**/*.rst runs, against the
testing server.

The convention, for whoever writes an example:

* A ``.. code-block:: python`` block is **runnable** by default. It is executed in a fresh
  namespace, in a temporary working directory, under this suite's log guard. Write it to
  check itself with ``assert`` where that helps the reader.
* ``https://idp.example.com`` and ``https://api.example.com`` stand for a real identity
  provider and API: before running, this test points them at a started
  :class:`~requests_tokenauth.testing.AuthServer` (``https://idp.example.com/oauth2/token``
  becomes its token URL, ``https://idp.example.com`` its issuer, and
  ``https://api.example.com/...`` its protected resource ``/resource/...``). The
  environment variables ``SVC_SECRET``, ``APP_SECRET`` and ``APP_REFRESH_TOKEN`` hold
  credentials that server accepts.
* A block that cannot run on its own (a fragment using names defined elsewhere, a person at
  a browser, a Redis server, a private key) is marked with an reST comment on the line just
  above its directive, giving the reason::

      .. not-runnable: needs a Redis server
      .. code-block:: python

  It is still compiled, so its syntax cannot rot. The comment is invisible in the output.
* Literal blocks (``::``) and other languages are not examples and are left alone.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from requests_tokenauth.testing import AuthServer

ROOT = Path(__file__).resolve().parent.parent
MARKER = ".. not-runnable:"
_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. code-block::\s*python3?\s*$")


@dataclass(frozen=True)
class Example:
    path: Path
    line: int  # 1-based line of the directive
    code: str
    not_runnable: Optional[str]  # the reason, when marked

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def sources() -> list[Path]:
    docs = sorted(p for p in (ROOT / "docs").rglob("*.rst") if "_build" not in p.parts)
    return [ROOT / "README.rst", *docs]


def examples_in(path: Path) -> list[Example]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for i, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if not match:
            continue
        indent = len(match.group("indent"))
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip().startswith(":") and _indent(lines[j]) > indent:
            j += 1  # directive options such as :caption:
        for text in lines[j:]:
            if text.strip() and _indent(text) <= indent:
                break
            body.append(text)
        previous = lines[i - 1].strip() if i > 0 else ""
        reason = previous[len(MARKER) :].strip() if previous.startswith(MARKER) else None
        code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        found.append(Example(path, i + 1, code, reason))
    return found


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip())


ALL = [example for path in sources() for example in examples_in(path)]
RUNNABLE = [e for e in ALL if e.not_runnable is None]
MARKED = [e for e in ALL if e.not_runnable is not None]


def test_examples_are_found() -> None:
    readme = [e for e in RUNNABLE if e.path.name == "README.rst"]
    assert len(readme) >= 2, "README.rst lost its runnable examples"
    assert len(RUNNABLE) - len(readme) >= 8, "docs/ lost its runnable examples"


@pytest.mark.parametrize("example", MARKED, ids=lambda e: e.name)
def test_marked_examples_say_why_and_compile(example: Example) -> None:
    assert example.not_runnable, f"{example.name}: say why it is not runnable"
    compile(example.code, example.name, "exec")


@pytest.mark.parametrize("example", RUNNABLE, ids=lambda e: e.name)
def test_example_runs(
    example: Example,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with AuthServer() as server:
        saved = server.issue_token("app", refresh=True, user="alice")
        monkeypatch.setenv("SVC_SECRET", "svc-secret")
        monkeypatch.setenv("APP_SECRET", "app-secret")
        monkeypatch.setenv("APP_REFRESH_TOKEN", saved["refresh_token"])
        monkeypatch.chdir(tmp_path)
        code = (
            example.code.replace("https://idp.example.com/oauth2/token", server.token_url)
            .replace("https://idp.example.com", server.url)
            .replace("https://api.example.com", server.url + "/resource")
        )
        exec(compile(code, example.name, "exec"), {"__name__": "__main__"})

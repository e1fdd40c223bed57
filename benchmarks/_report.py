"""Markdown and JSON output of a benchmark run."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from ._scenarios import Table


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return str(value).replace("|", "\\|")


#: Tables whose name starts with this are the httpx section of the report.
HTTPX_PREFIX = "httpx_"


def _httpx_intro(meta: dict[str, Any], code: str) -> str:
    versions = ", ".join(
        f"{name} {version or '(not installed)'}"
        for name, version in meta.get("httpx_libraries", {}).items()
    )
    return (
        f"The same situations with httpx: {code}requests_tokenauth.httpx.TokenAuth{code}, "
        "Authlib's OAuth2Client and AsyncOAuth2Client, and httpx-auth, each with httpx.Client "
        "(threads) and httpx.AsyncClient (tasks on one event loop), in the same run against "
        "the same testing server. Where a library cannot do a scenario the row says n/a and "
        "why." + (f" Versions: {versions}." if versions else "")
    )


def markdown(tables: Sequence[Table], meta: dict[str, Any]) -> str:
    """The whole report as markdown: how it was run, then a table per scenario."""
    versions = ", ".join(
        f"{name} {version or '(not installed)'}" for name, version in meta["libraries"].items()
    )
    updates = [  # scenarios measured again since (``--merge``)
        f"  \nUpdated since: {', '.join(u['scenarios'])} by `{u['command']}`."
        for u in meta.get("updates", [])
    ]
    lines = [
        "# requests-tokenauth benchmarks",
        "",
        f"Command: `{meta['command']}`  ",
        f"Python {meta['python']} on {meta['platform']}, {meta['cpus']} CPUs; "
        f"{meta['seconds']:.0f} s.  ",
        f"Libraries: {versions}." + "".join(updates),
        "",
        "Counts and ratios only: absolute times vary between machines and runs. Every library "
        "runs against the same loopback testing server, configured as its documentation "
        'recommends; each library\'s "expired early" margin is scaled to the short lifetimes.',
    ]
    httpx_section = False
    for table in tables:
        if table.name.startswith(HTTPX_PREFIX) and not httpx_section:
            httpx_section = True
            lines += ["", "## httpx", "", _httpx_intro(meta, "`")]
        headers = ["library", *(header for _, header in table.columns)]
        lines += ["", f"## {table.title}", "", table.description, ""]
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join("---" for _ in headers) + "|")
        for row in table.rows:
            if "skipped" in row:
                cells = [row["library"], f"skipped ({row['skipped']})"]
                cells += [""] * (len(headers) - 2)
            else:
                cells = [row["library"], *(_cell(row.get(key)) for key, _ in table.columns)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _rst_cell(value: Any) -> str:
    text = "-" if value is None else str(value)
    return text.replace("*", "\\*").replace("|", "\\|")


def rst(tables: Sequence[Table], meta: dict[str, Any]) -> str:
    """The tables as reStructuredText, for ``docs/benchmarks.rst`` to include."""
    versions = ", ".join(
        f"{name} {version or '(not installed)'}" for name, version in meta["libraries"].items()
    )
    lines = [
        f"Measured with ``{meta['command']}`` on Python {meta['python']}, {meta['platform']}, "
        f"{meta['cpus']} CPUs, in {meta['seconds']:.0f} s. Libraries: {versions}.",
    ]
    for update in meta.get("updates", []):
        lines[0] += f" Updated since: {', '.join(update['scenarios'])} by ``{update['command']}``."
    httpx_section = False
    for table in tables:
        if table.name.startswith(HTTPX_PREFIX) and not httpx_section:
            httpx_section = True
            lines += ["", "httpx", "~~~~~", "", _httpx_intro(meta, "``")]
        lines += ["", table.title, "~" * len(table.title), "", table.description, ""]
        lines += [".. list-table::", "   :header-rows: 1", ""]
        headers = ["library", *(header for _, header in table.columns)]
        body = [headers]
        for row in table.rows:
            if "skipped" in row:
                cells = [row["library"], f"skipped ({row['skipped']})"]
                cells += [""] * (len(headers) - 2)
            else:
                cells = [row["library"], *(row.get(key) for key, _ in table.columns)]
            body.append(cells)
        for cells in body:
            lines.append(f"   * - {_rst_cell(cells[0])}")
            lines += [f"     - {_rst_cell(c)}".rstrip() for c in cells[1:]]
    return "\n".join(lines) + "\n"


def merge(tables: Sequence[Table], meta: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Like :func:`write`, but keep the other scenarios of the run already in ``out_dir``:
    the given tables replace theirs (or are added), and the report says which scenarios
    were measured by which command."""
    old = json.loads((out_dir / "latest.json").read_text(encoding="utf-8"))
    fresh = {t.name: t for t in tables}
    merged = [
        fresh.pop(name, None)
        or Table(name, s["title"], s["description"], list(s["columns"].items()), s["rows"])
        for name, s in old["scenarios"].items()
    ]
    merged += fresh.values()
    updates = [*old.get("updates", []), {
        "command": meta["command"], "scenarios": [t.name for t in tables],
        "seconds": meta["seconds"], "libraries": meta["libraries"],
    }]  # fmt: skip
    keep = {k: v for k, v in old.items() if k not in ("scenarios", "updates")}
    return write(merged, {**keep, "updates": updates}, out_dir)


def write(tables: Sequence[Table], meta: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``latest.md``, ``latest.rst`` and ``latest.json`` into ``out_dir``; returns the
    markdown and JSON paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "latest.md", out_dir / "latest.json"
    md.write_text(markdown(tables, meta), encoding="utf-8")
    (out_dir / "latest.rst").write_text(rst(tables, meta), encoding="utf-8")
    data = {
        **meta,
        "scenarios": {
            t.name: {
                "title": t.title,
                "description": t.description,
                "columns": dict(t.columns),
                "rows": t.rows,
            }
            for t in tables
        },
    }
    js.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return md, js


def machine() -> dict[str, str]:
    return {"python": platform.python_version(), "platform": platform.platform(terse=True)}


#: The comparison README.rst shows: (label, scenario, how to render a row).
_COMPARISON: list[tuple[str, str, Callable[[dict[str, Any]], str]]] = [
    ("token requests when 64 threads hit an expired token", "stampede",
     lambda r: f"{r['token_requests']}"),
    ("rotating refresh tokens, 16 threads, 3 expiries: invalid_grant / failed requests",
     "rotation", lambda r: f"{r['invalid_grant']} / {r['failed']}"),
    ("token revoked server-side: the caller gets", "revocation",
     lambda r: r["caller_gets"] + (" (retried)" if r["caller_gets"] == "200" else "")),
    ("resource always answers 401: resource + token requests per call", "storm",
     lambda r: f"{r['resource_per_call']} + {r['token_per_call']}"),
    ("requests that waited for a 300 ms refresh (8 threads, 3 expiries)", "latency",
     lambda r: f"{r['waited']}"),
    ("requests that failed across those expiries", "latency", lambda r: f"{r['failed']}"),
    ("token endpoint down 3.5 s from 1 s before expiry: failed calls with the old token / "
     "with none", "outage",
     lambda r: f"{r['failed_valid']} / {r['failed_no_token']}"),
    ("token requests per second meanwhile; seconds from recovery to the first success",
     "outage", lambda r: f"{r['token_rate']}; {r['recovery_seconds']}"),
    ("token endpoint down 30 s: token requests per second; longest call (s)", "outage_long",
     lambda r: f"{r['token_rate']}; {r['longest_seconds']}"),
    ("throughput vs a bare session (8 threads)", "overhead", lambda r: f"{r['ratio']:.2f}"),
    ("auth cost per request vs a constant header", "fast_path", lambda r: f"{r['ratio']}x"),
]  # fmt: skip


def comparison(data: dict[str, Any], libraries: Sequence[str]) -> str:
    """README.rst's comparison table (a list-table) from a run's JSON."""
    lines = [".. list-table::", "   :header-rows: 1", "", "   * - behaviour"]
    lines += [f"     - {name}" for name in libraries]
    for label, scenario, render in _COMPARISON:
        rows = {r["library"]: r for r in data["scenarios"][scenario]["rows"]}
        lines.append(f"   * - {label}")
        for name in libraries:
            row = rows.get(name)
            lines.append(f"     - {'n/a' if row is None or 'skipped' in row else render(row)}")
    return "\n".join(lines) + "\n"

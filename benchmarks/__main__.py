"""Run the benchmarks: ``python -m benchmarks`` (see :mod:`benchmarks`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional

from . import RESULTS_DIR, extra_scenarios
from ._libraries import BASELINE, LIBRARIES
from ._report import machine, merge, write
from ._scenarios import FULL, QUICK, SCENARIOS


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="requests-tokenauth side by side with requests-oauthlib, Authlib, "
        "google-auth and requests-auth, against the loopback testing server.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="one repetition, small counts (the test suite's run)"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help=f"output directory (default {RESULTS_DIR})"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help="run only these (repeatable; 'httpx': every httpx scenario)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other scenarios of the results already in --out (with --scenario)",
    )
    args = parser.parse_args(argv)
    logging.getLogger().addHandler(logging.NullHandler())  # libraries' warnings stay quiet
    params = QUICK if args.quick else FULL
    scenarios = {**SCENARIOS, **extra_scenarios()}
    names = args.scenario or list(scenarios)
    # "httpx" names every httpx scenario (python -m benchmarks --scenario httpx --merge)
    names = [n for name in names for n in (_group(name, scenarios) or [name])]
    unknown = sorted(set(names) - set(scenarios))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(scenarios)}")
    started = time.monotonic()
    tables = []
    for name in names:
        t0 = time.monotonic()
        print(f"{name} ...", end=" ", flush=True, file=sys.stderr)
        tables.append(scenarios[name](LIBRARIES, params))
        print(f"{time.monotonic() - t0:.1f} s", file=sys.stderr)
    meta = {
        "command": "python -m benchmarks"
        + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv)),
        **machine(),
        "cpus": os.cpu_count(),
        "seconds": round(time.monotonic() - started, 1),
        "quick": args.quick,
        "libraries": {lib.name: lib.version for lib in (BASELINE, *LIBRARIES)},
        "httpx_libraries": _httpx_versions(),
    }
    md, js = (merge if args.merge else write)(tables, meta, args.out)
    print(md.read_text(encoding="utf-8"))
    print(f"wrote {md} and {js}", file=sys.stderr)
    return 0


def _httpx_versions() -> dict[str, Optional[str]]:
    """The installed version of each distribution the httpx scenarios compare."""
    try:
        from ._httpx_libraries import BARE_SYNC, HTTPX_LIBRARIES
    except ModuleNotFoundError:  # no httpx: no httpx scenarios
        return {}
    return {lib.distribution: lib.version for lib in (BARE_SYNC, *HTTPX_LIBRARIES)}


def _group(name: str, scenarios: dict[str, object]) -> list[str]:
    """The scenarios a group name stands for (``httpx`` -> ``httpx_*``), else none."""
    return [n for n in scenarios if n.startswith(f"{name}_")] if name == "httpx" else []


if __name__ == "__main__":
    sys.exit(main())

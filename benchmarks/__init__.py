"""Benchmarks: requests-tokenauth side by side with requests-oauthlib, Authlib, google-auth
and requests-auth, in the same run, against the loopback testing server.

Run (the anchors are the ``bench`` extra; a library that is not installed is reported as
skipped)::

    python3 -m pip install '.[bench]'
    python3 -m benchmarks            # about 11 minutes on 2 cores (5 of them httpx)
    python3 -m benchmarks --quick    # one repetition, small counts (the test suite runs this)

Results go to ``benchmarks/results/latest.md`` and ``latest.json`` (``--out DIR`` to write
elsewhere, ``--scenario NAME`` to run only some). Everything is reported as counts and
ratios measured in the same run: absolute times are not comparable between runs.

Scenarios: overhead, fast-path cost, stampede, rotation, revocation, 401 storm, a short and
a long outage (:mod:`benchmarks._outage`) and latency at expiry (:mod:`benchmarks._latency`;
the rest in :mod:`benchmarks._scenarios`). ``--scenario NAME --merge`` measures some again
and keeps the others already in the results. More scenarios plug in from other
modules: a module ``benchmarks.stores`` (processes with and without a shared store) is
picked up when it exists, see :func:`extra_scenarios`, and so are the httpx scenarios
(:mod:`benchmarks._httpx_scenarios`: ``httpx.TokenAuth`` beside Authlib's httpx clients and
httpx-auth, sync and async, with event-loop lag), reported in a section of their own;
``--scenario httpx`` runs only those.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

#: Where ``python -m benchmarks`` writes ``latest.md`` and ``latest.json``.
RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: Modules that may add scenarios. Each exposes ``SCENARIOS``, a dict of name to
#: ``function(libraries, params) -> benchmarks._scenarios.Table``, or a single
#: ``scenario(libraries, params) -> Table`` registered under the module's name;
#: ``benchmarks.stores`` exposes ``run(processes, expiries)``, which
#: :func:`benchmarks._scenarios.shared_stores` turns into a table.
EXTRA_SCENARIO_MODULES = ("stores", "_httpx_scenarios")


def extra_scenarios() -> dict[str, Callable[..., Any]]:
    """Scenarios contributed by the modules of :data:`EXTRA_SCENARIO_MODULES` that exist."""
    found: dict[str, Callable[..., Any]] = {}
    for name in EXTRA_SCENARIO_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"{__name__}.{name}", "httpx"):  # httpx: the httpx scenarios'
                raise
            continue
        if hasattr(module, "SCENARIOS"):
            found.update(module.SCENARIOS)
        elif hasattr(module, "scenario"):
            found[name] = module.scenario
        elif name == "stores" and hasattr(module, "run"):
            from ._scenarios import shared_stores

            found[name] = shared_stores
    return found

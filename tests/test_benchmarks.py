"""The trimmed benchmark run (one repetition, small counts), so the benchmark never rots.

It runs ``python -m benchmarks --quick`` end to end in a subprocess (the other libraries log
tokens at DEBUG, which this suite's log guard would rightly reject in-process) and checks
the report has every scenario and every library, plus the counts our own claims rest on.
It never asserts a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import extra_scenarios
from benchmarks._httpx_libraries import (
    BARE_ASYNC,
    BARE_SYNC,
    HTTPX_LIBRARIES,
    OURS_ASYNC,
    OURS_SYNC,
)
from benchmarks._httpx_scenarios import SCENARIOS as HTTPX_SCENARIOS
from benchmarks._libraries import BASELINE, GOOGLE_NON_BLOCKING, LIBRARIES, OURS, OURS_INLINE
from benchmarks._loop_lag import HELD_TICKS
from benchmarks._scenarios import SCENARIOS, percentile, summary

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data: dict[str, Any] = json.loads((out / "latest.json").read_text())
    data["markdown"] = (out / "latest.md").read_text()
    return data


def rows(report: dict[str, Any], scenario: str) -> dict[str, dict[str, Any]]:
    return {row["library"]: row for row in report["scenarios"][scenario]["rows"]}


@pytest.mark.slow
def test_every_scenario_has_a_row_per_library(report: dict[str, Any]) -> None:
    expected = set(SCENARIOS) | set(extra_scenarios())
    assert set(report["scenarios"]) == expected
    names = {lib.name for lib in LIBRARIES}
    for name in SCENARIOS:
        scenario = report["scenarios"][name]
        got = set(rows(report, name))
        want = names | ({BASELINE.name} if name == "overhead" else set())
        want |= {OURS_INLINE.name} if name == "latency" else set()
        want |= {GOOGLE_NON_BLOCKING.name} if name.startswith("outage") else set()
        assert got == want, name
        for row in scenario["rows"]:
            if "skipped" not in row:
                assert set(scenario["columns"]) <= set(row), (name, row["library"])
        assert f"## {scenario['title']}" in report["markdown"]
    for name in names:
        assert name in report["markdown"]
    assert (
        report["command"] == f"python -m benchmarks --quick --out {report['command'].split()[-1]}"
    )
    assert set(report["libraries"]) == names | {BASELINE.name}
    assert report["libraries"][OURS.name]


@pytest.mark.slow
def test_the_counts_our_claims_rest_on(report: dict[str, Any]) -> None:
    ours = OURS.name
    assert rows(report, "stampede")[ours]["token_requests"] == 1
    assert rows(report, "stampede")[ours]["failed"] == 0
    rotation = rows(report, "rotation")[ours]
    assert rotation["invalid_grant"] == 0 and rotation["failed"] == 0
    assert rotation["requests"] > 0
    revocation = rows(report, "revocation")[ours]
    assert revocation["caller_gets"] == "200"
    storm = rows(report, "storm")[ours]
    assert storm["resource_per_call"] < 2  # one retry, then the cooldown holds
    assert rows(report, "overhead")[ours]["failed"] == 0
    assert rows(report, "latency")[ours]["failed"] == 0
    outage = rows(report, "outage")[ours]  # a short outage is invisible
    assert outage["failed_valid_count"] == 0 and outage["failed_no_token_count"] == 0
    assert outage["failed_after"] == 0 and outage["recovery_seconds"] is not None
    # a long one: the wait bound holds (callers get the error), recovery costs nothing. Not
    # asserted here: a call sent in the old token's last milliseconds that reaches a busy
    # server after its expiry gets a 401, waits out the bound like the rest, and fails
    long_outage = rows(report, "outage_long")[ours]
    assert long_outage["failed_after"] == 0
    assert 0 < long_outage["failed_no_token_count"] <= long_outage["calls_no_token"]


@pytest.mark.slow
def test_every_httpx_scenario_has_a_row_per_library(report: dict[str, Any]) -> None:
    names = {lib.name for lib in HTTPX_LIBRARIES}
    asynchronous = {lib.name for lib in HTTPX_LIBRARIES if lib.asynchronous}
    want = {name: names for name in HTTPX_SCENARIOS}
    want["httpx_overhead"] = names | {BARE_SYNC.name, BARE_ASYNC.name}
    want["httpx_loop_lag"] = asynchronous | {BARE_ASYNC.name}
    assert "## httpx\n" in report["markdown"]
    for name in HTTPX_SCENARIOS:
        scenario = report["scenarios"][name]
        assert set(rows(report, name)) == want[name], name
        for row in scenario["rows"]:
            if row["library"] == OURS_ASYNC.name:
                assert "skipped" not in row, (name, row)
            if "skipped" not in row:
                assert set(scenario["columns"]) <= set(row), (name, row["library"])
        assert f"## {scenario['title']}" in report["markdown"]
    assert report["httpx_libraries"][OURS_SYNC.distribution]


@pytest.mark.slow
def test_the_httpx_counts_our_claims_rest_on(report: dict[str, Any]) -> None:
    for ours in (OURS_SYNC.name, OURS_ASYNC.name):
        stampede = rows(report, "httpx_stampede")[ours]
        assert stampede["token_requests"] == 1 and stampede["failed"] == 0, ours
        assert rows(report, "httpx_revocation")[ours]["caller_gets"] == "200", ours
        assert rows(report, "httpx_overhead")[ours]["failed"] == 0, ours
    # the quick run leaves the sync flavour out of these (its waits are the manager's)
    ours = OURS_ASYNC.name
    rotation = rows(report, "httpx_rotation")[ours]
    assert rotation["invalid_grant"] == 0 and rotation["failed"] == 0
    assert rotation["requests"] > 0
    outage = rows(report, "httpx_outage")[ours]  # a short outage is invisible
    assert outage["failed_valid_count"] == 0 and outage["failed_no_token_count"] == 0
    assert outage["failed_after"] == 0 and outage["recovery_seconds"] is not None
    assert rows(report, "httpx_latency")[ours]["failed"] == 0
    assert rows(report, "httpx_stampede")[OURS_ASYNC.name]["workers"] == 64
    # the ticker kept ticking while the one token request was held at the server: had it
    # been sent from the loop's thread, no tick could run until the release
    lag = rows(report, "httpx_loop_lag")[OURS_ASYNC.name]
    assert lag["held_ticks"] >= HELD_TICKS and lag["held_token_requests"] == 1
    assert lag["outcomes"] == "200"


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_summary_counts_outcomes_most_common_first() -> None:
    assert summary(["200", "401", "200"]) == "200 x2, 401 x1"

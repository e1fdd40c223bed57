"""The arithmetic of the fleet benchmark (benchmarks/_fleet_load.py) on hand-made reports."""

from __future__ import annotations

from benchmarks._fleet_load import rounds_of, summary


def test_token_requests_closer_than_the_gap_are_one_round() -> None:
    assert rounds_of([10.0, 10.2, 10.6, 13.0, 12.9]) == [10.0, 12.9]
    assert rounds_of([]) == []


def test_the_summary_counts_per_round_and_around_renewals() -> None:
    reports = [
        {
            "calls": [(9.0, 0.001, True), (10.1, 0.020, True), (11.0, 0.002, False)],
            "renewals": [(10.0, ""), (13.0, "invalid_grant")],
            "getting_max": 0.015,
            "waits": [(10.0, 0.004, True), (13.0, 0.010, True)],
        },
        {
            "calls": [(10.2, 0.030, True), (12.0, 0.003, True)],
            "renewals": [],
            "getting_max": 0.025,
            "waits": [(10.1, 0.050, False)],
        },
    ]
    figures = summary(reports, server_token_requests=2)
    assert figures["rounds"] == 2
    assert figures["token_requests_per_round"] == 1.0
    assert figures["lock_acquisitions_per_round"] == 1.0
    assert figures["lock_waits_left_early"] == 1
    assert figures["longest_lock_wait_ms"] == 50.0
    assert figures["longest_get_token_ms"] == 25.0
    assert figures["failed_calls"] == 1
    assert figures["invalid_grant"] == 1
    assert figures["around_renewals_p99_ms"] == 30.0  # the calls at 10.1 and 10.2 only
    assert figures["p50_ms"] == 3.0

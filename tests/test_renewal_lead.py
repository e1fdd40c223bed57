"""How early the refresh ahead starts for a fleet (issue 16): the last renewal's duration,
lock wait included, times RENEWAL_LEAD_FACTOR before expiry; a pure function, by table."""

from __future__ import annotations

import pytest

from requests_tokenauth._policy import (
    RENEWAL_LEAD_FACTOR,
    RefreshPolicy,
    deadlines,
    renewal_lead_seconds,
)
from requests_tokenauth._token import Token


@pytest.mark.parametrize(
    ("renewal_seconds", "draw", "stale"),
    [
        (0.0, 0.0, 70.0),  # no lead: the policy's margin (a quarter of 100 s)
        (5.0, 0.0, 70.0),  # a lead of 15 s is inside the margin of 25 s
        (10.0, 0.0, 65.0),  # a lead of 30 s widens it
        (10.0, 0.5, 65.0 - 30 * 0.1),  # ...lengthened by the jitter, not shortened
        (20.0, 0.0, 50.0),  # never before half the lifetime
        (-1.0, 0.0, 70.0),  # a clock that went back is no lead
    ],
)
def test_the_refresh_ahead_starts_the_last_renewals_duration_times_3_before_expiry(
    renewal_seconds: float, draw: float, stale: float
) -> None:
    token = Token.from_response(
        {"access_token": "a", "expires_in": 100}, obtained_monotonic=0.0, obtained_at=0.0
    )
    policy = RefreshPolicy(refresh_jitter_fraction=0.2)
    lead = renewal_lead_seconds(renewal_seconds)
    assert lead == max(renewal_seconds, 0) * RENEWAL_LEAD_FACTOR
    d = deadlines(token, policy, draw, lead_seconds=lead)
    assert d.stale_monotonic == pytest.approx(stale)
    assert d.expired_monotonic == pytest.approx(95.0)

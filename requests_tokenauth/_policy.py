"""Pure decisions: when a token is fresh, stale or expired; what to do after a 401; backoff.

Nothing here reads a clock, draws a random number or does IO: callers pass ``now`` and a
random draw in, so every decision can be tested from a table.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Optional

from ._token import FrozenSlots, Token

#: Refresh ahead once this fraction of the lifetime is left...
DEFAULT_REFRESH_FRACTION = 0.25
#: ...but never earlier than this many seconds before expiry (long-lived tokens).
DEFAULT_REFRESH_MARGIN_MAX_SECONDS = 60.0
#: Up to this fraction of the margin is drawn at random, so a fleet does not refresh in lockstep.
DEFAULT_REFRESH_JITTER_FRACTION = 0.2
#: Treat a token as expired this early, to absorb clock skew and request latency.
DEFAULT_EXPIRY_SKEW_SECONDS = 5.0
#: A token obtained because of a 401 and rejected again is not replaced within this window:
#: a misconfigured audience must not become a refresh storm.
DEFAULT_UNAUTHORIZED_COOLDOWN_SECONDS = 30.0
#: Backoff after failed token requests: first step, cap, and how many failures double it.
DEFAULT_BACKOFF_BASE_SECONDS = 1.0
DEFAULT_BACKOFF_MAX_SECONDS = 60.0
#: With no valid token and a terminal error (``invalid_grant``), every caller fails until
#: the next attempt, so it comes sooner than with a valid token: an operator's fix is seen
#: within seconds.
DEFAULT_BACKOFF_MAX_WITHOUT_TOKEN_SECONDS = 2.0
#: With no valid token and a transient error, callers wait for the next attempt: it comes
#: within half a second (a recovered endpoint is noticed that soon), and no sooner than
#: DEFAULT_PROBE_JITTER_FRACTION of it earlier (at most 2.5 token requests per second).
DEFAULT_PROBE_INTERVAL_SECONDS = 0.5
#: The probe interval is drawn from its top fifth, so a fleet's processes spread out.
DEFAULT_PROBE_JITTER_FRACTION = 0.2


class TokenState(enum.Enum):
    """How usable a token is at a given instant."""

    FRESH = "fresh"  # use it
    STALE = "stale"  # use it; one caller refreshes ahead
    EXPIRED = "expired"  # refresh before use


@dataclass(frozen=True)
class RefreshPolicy(FrozenSlots):
    """When to refresh, how long to wait after failures. Immutable; share freely.

    :param refresh_fraction: refresh ahead once this fraction of the lifetime is left.
    :param refresh_margin_max_seconds: the refresh-ahead margin never exceeds this.
    :param refresh_jitter_fraction: up to this fraction of the margin is drawn at random.
    :param expiry_skew_seconds: a token counts as expired this much early (at most a tenth
        of its lifetime).
    :param unauthorized_cooldown_seconds: a token obtained because of a 401 is not replaced
        again because of another 401 within this window.
    :param backoff_base_seconds: the first wait after a failed token request.
    :param backoff_max_seconds: waits never exceed this (a server's ``Retry-After`` aside).
    :param backoff_max_without_token_seconds: the lower cap while no valid token is left and
        the error is terminal (callers fail meanwhile, so a fix must be noticed soon).
    :param probe_interval_seconds: while no valid token is left and the error is transient,
        callers wait and the next attempt comes within this long (from its top fifth): how
        soon a recovered endpoint is noticed; its inverse bounds the token requests per
        second one process sends to a dead endpoint.
    """

    __slots__ = (
        "refresh_fraction",
        "refresh_margin_max_seconds",
        "refresh_jitter_fraction",
        "expiry_skew_seconds",
        "unauthorized_cooldown_seconds",
        "backoff_base_seconds",
        "backoff_max_seconds",
        "backoff_max_without_token_seconds",
        "probe_interval_seconds",
    )

    refresh_fraction: float
    refresh_margin_max_seconds: float
    refresh_jitter_fraction: float
    expiry_skew_seconds: float
    unauthorized_cooldown_seconds: float
    backoff_base_seconds: float
    backoff_max_seconds: float
    backoff_max_without_token_seconds: float
    probe_interval_seconds: float

    def __init__(
        self,
        *,
        refresh_fraction: float = DEFAULT_REFRESH_FRACTION,
        refresh_margin_max_seconds: float = DEFAULT_REFRESH_MARGIN_MAX_SECONDS,
        refresh_jitter_fraction: float = DEFAULT_REFRESH_JITTER_FRACTION,
        expiry_skew_seconds: float = DEFAULT_EXPIRY_SKEW_SECONDS,
        unauthorized_cooldown_seconds: float = DEFAULT_UNAUTHORIZED_COOLDOWN_SECONDS,
        backoff_base_seconds: float = DEFAULT_BACKOFF_BASE_SECONDS,
        backoff_max_seconds: float = DEFAULT_BACKOFF_MAX_SECONDS,
        backoff_max_without_token_seconds: float = DEFAULT_BACKOFF_MAX_WITHOUT_TOKEN_SECONDS,
        probe_interval_seconds: float = DEFAULT_PROBE_INTERVAL_SECONDS,
    ) -> None:
        values = {
            "refresh_fraction": refresh_fraction,
            "refresh_margin_max_seconds": refresh_margin_max_seconds,
            "refresh_jitter_fraction": refresh_jitter_fraction,
            "expiry_skew_seconds": expiry_skew_seconds,
            "unauthorized_cooldown_seconds": unauthorized_cooldown_seconds,
            "backoff_base_seconds": backoff_base_seconds,
            "backoff_max_seconds": backoff_max_seconds,
            "backoff_max_without_token_seconds": backoff_max_without_token_seconds,
            "probe_interval_seconds": probe_interval_seconds,
        }
        for name, value in values.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0")
            object.__setattr__(self, name, float(value))
        if probe_interval_seconds <= 0:
            raise ValueError("probe_interval_seconds must be > 0 (callers wait for the probes)")
        if refresh_fraction > 0.5 or refresh_jitter_fraction > 1:
            raise ValueError("refresh_fraction must be <= 0.5 and refresh_jitter_fraction <= 1")


DEFAULT_POLICY = RefreshPolicy()


@dataclass(frozen=True)
class Deadlines(FrozenSlots):
    """When one token turns stale, when it counts as expired, and when it really expires
    (monotonic seconds).

    ``expired_monotonic`` is ``expiry_skew_seconds`` before ``nominal_expiry_monotonic``:
    from then on a caller renews before using the token. The skew decides *when to renew*,
    never whether the server accepts the token: while renewal is failing, the token is
    used until its nominal expiry.
    """

    __slots__ = ("stale_monotonic", "expired_monotonic", "nominal_expiry_monotonic")

    stale_monotonic: float
    expired_monotonic: float
    nominal_expiry_monotonic: float

    def classify(self, now: float) -> TokenState:
        """The token's state at monotonic instant ``now``."""
        if now < self.stale_monotonic:
            return TokenState.FRESH
        if now < self.expired_monotonic:
            return TokenState.STALE
        return TokenState.EXPIRED

    def left_seconds(self, now: float) -> float:
        """How long the server still accepts the token after ``now`` (0 once it has expired)."""
        return max(0.0, self.nominal_expiry_monotonic - now)


def deadlines(token: Token, policy: RefreshPolicy, draw: float) -> Deadlines:
    """Compute a token's deadlines once, when it is obtained.

    The refresh margin is ``refresh_fraction`` of the lifetime, capped at
    ``refresh_margin_max_seconds`` and never more than half the lifetime (a fixed 60 s
    leeway breaks 59 s tokens); ``draw`` in [0, 1) shortens it by up to the jitter
    fraction. A server's ``refresh_in`` hint (seconds) moves the stale instant earlier.
    A token without a lifetime never turns stale or expires by time.
    """
    lifetime = token.expires_in_seconds
    if lifetime is None:
        return Deadlines(math.inf, math.inf, math.inf)
    skew = min(policy.expiry_skew_seconds, lifetime / 10)
    nominal = token.obtained_monotonic + lifetime
    expired = nominal - skew
    margin = min(lifetime * policy.refresh_fraction, policy.refresh_margin_max_seconds)
    margin *= 1.0 - policy.refresh_jitter_fraction * min(max(draw, 0.0), 1.0)
    stale = expired - margin
    hint = token.extra.get("refresh_in")
    if isinstance(hint, (int, float)) and not isinstance(hint, bool) and hint >= 0:
        stale = min(stale, token.obtained_monotonic + float(hint))
    return Deadlines(stale, expired, nominal)


def backoff_seconds(
    failures: int,
    policy: RefreshPolicy,
    draw: float,
    retry_after_seconds: Optional[float] = None,
    *,
    token_left_seconds: float = math.inf,
    retryable: bool = True,
) -> float:
    """How long to wait before the next token request after ``failures`` failures in a row.

    With a valid token (``token_left_seconds`` > 0, how long the server still accepts it):
    exponential with full jitter (``draw`` in [0, 1) scales the step) capped at
    ``backoff_max_seconds``, and never past the token's expiry, so the first caller left
    without a token finds an attempt due. Without one, callers are waiting: a transient
    error is probed again within ``probe_interval_seconds`` (from its top fifth, so at
    most one request per 0.8 interval); a terminal one (``retryable`` false) backs off
    exponentially up to the lower ``backoff_max_without_token_seconds``. A server's
    ``Retry-After`` is never shortened (only bounded at ten times ``backoff_max_seconds``).
    """
    if failures <= 0:
        return 0.0
    draw = min(max(draw, 0.0), 1.0)
    if token_left_seconds > 0:
        step = min(policy.backoff_max_seconds, policy.backoff_base_seconds * 2.0 ** (failures - 1))
        wait = min(step * draw, token_left_seconds)
    elif retryable:
        jitter = DEFAULT_PROBE_JITTER_FRACTION
        wait = policy.probe_interval_seconds * (1.0 - jitter + jitter * draw)
    else:
        cap = min(policy.backoff_max_seconds, policy.backoff_max_without_token_seconds)
        wait = min(cap, policy.backoff_base_seconds * 2.0 ** (failures - 1)) * draw
    if retry_after_seconds is not None:
        wait = max(wait, min(retry_after_seconds, policy.backoff_max_seconds * 10))
    return wait


def parse_retry_after(value: Optional[str], now: float) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date).

    :param now: wall-clock epoch seconds, for the HTTP-date form.
    :returns: ``None`` when the header is missing or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


_AUTH_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def challenge_error(www_authenticate: Optional[str]) -> Optional[str]:
    """The ``error`` parameter of a Bearer (or DPoP) challenge (RFC 6750 §3), if any."""
    if not www_authenticate:
        return None
    for match in _AUTH_PARAM.finditer(www_authenticate):
        if match.group(1).lower() == "error":
            return match.group(2) if match.group(2) is not None else match.group(3)
    return None


def should_retry_unauthorized(
    *,
    status_code: int,
    www_authenticate: Optional[str],
    already_retried: bool,
    sent_token: bool,
    body_replayable: bool,
) -> bool:
    """Whether a response deserves the one guarded retry with a replaced token.

    Only a 401 to a request that carried our token, not yet retried, whose body can be
    sent again in full, and whose challenge is not ``insufficient_scope`` (a new token
    with the same scope cannot help).
    """
    return (
        status_code == 401
        and not already_retried
        and sent_token
        and body_replayable
        and challenge_error(www_authenticate) != "insufficient_scope"
    )

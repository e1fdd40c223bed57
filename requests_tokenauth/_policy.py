"""Pure decisions: when a token is fresh, stale or expired; what to do after a 401; backoff.

Nothing here reads a clock, draws a random number or does IO: callers pass ``now`` and a
random draw in, so every decision can be tested from a table.
"""

from __future__ import annotations

import enum
import math
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
#: With no valid token every caller fails until the next attempt, so that attempt comes
#: sooner: the wait is capped lower, and an endpoint that recovers is noticed within seconds.
DEFAULT_BACKOFF_MAX_WITHOUT_TOKEN_SECONDS = 2.0


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
    :param backoff_max_without_token_seconds: the lower cap while no valid token is left
        (callers are failing meanwhile, so recovery must be noticed soon).
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
    )

    refresh_fraction: float
    refresh_margin_max_seconds: float
    refresh_jitter_fraction: float
    expiry_skew_seconds: float
    unauthorized_cooldown_seconds: float
    backoff_base_seconds: float
    backoff_max_seconds: float
    backoff_max_without_token_seconds: float

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
        }
        for name, value in values.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0")
            object.__setattr__(self, name, float(value))
        if refresh_fraction > 0.5 or refresh_jitter_fraction > 1:
            raise ValueError("refresh_fraction must be <= 0.5 and refresh_jitter_fraction <= 1")


DEFAULT_POLICY = RefreshPolicy()

#: A renewal's measured duration (lock wait, token request and save) times this is how long
#: before expiry a refresh ahead starts at the latest: room for a fleet's slowest renewal to
#: reach every sharer of a store before the old token expires.
RENEWAL_LEAD_FACTOR = 3.0

#: A server's ``refresh_in`` hint never brings the refresh ahead earlier than this many
#: seconds (or half the lifetime, if less) after the token was obtained.
REFRESH_IN_FLOOR_SECONDS = 60.0


@dataclass(frozen=True)
class Deadlines(FrozenSlots):
    """When one token turns stale and when it counts as expired (monotonic seconds)."""

    __slots__ = ("stale_monotonic", "expired_monotonic")

    stale_monotonic: float
    expired_monotonic: float

    def classify(self, now: float) -> TokenState:
        """The token's state at monotonic instant ``now``."""
        if now < self.stale_monotonic:
            return TokenState.FRESH
        if now < self.expired_monotonic:
            return TokenState.STALE
        return TokenState.EXPIRED


def renewal_lead_seconds(renewal_seconds: float, factor: float = RENEWAL_LEAD_FACTOR) -> float:
    """How long before expiry a refresh ahead must start, given how long the last renewal
    took to reach the store (lock wait included): ``factor`` times that, never negative."""
    return max(renewal_seconds, 0.0) * factor


def deadlines(
    token: Token, policy: RefreshPolicy, draw: float, *, lead_seconds: float = 0.0
) -> Deadlines:
    """Compute a token's deadlines once, when it is obtained.

    The refresh margin is ``refresh_fraction`` of the lifetime, capped at
    ``refresh_margin_max_seconds`` and never more than half the lifetime (a fixed 60 s
    leeway breaks 59 s tokens); ``draw`` in [0, 1) shortens it by up to the jitter
    fraction. A server's ``refresh_in`` hint (seconds) moves the stale instant earlier,
    but never before ``min(60 s, half the lifetime)``: ``refresh_in: 0`` would make every
    request start a refresh. A token without a lifetime never turns stale or expires by
    time.

    ``lead_seconds`` (see :func:`renewal_lead_seconds`) widens the margin to at least that
    (lengthened by up to the jitter fraction, so a fleet still spreads out), but the stale
    instant never comes before half the lifetime.
    """
    lifetime = token.expires_in_seconds
    if lifetime is None:
        return Deadlines(math.inf, math.inf)
    skew = min(policy.expiry_skew_seconds, lifetime / 10)
    expired = token.obtained_monotonic + lifetime - skew
    margin = min(lifetime * policy.refresh_fraction, policy.refresh_margin_max_seconds)
    spread = policy.refresh_jitter_fraction * min(max(draw, 0.0), 1.0)
    margin *= 1.0 - spread
    if lead_seconds > margin:
        margin = max(margin, min(lead_seconds * (1.0 + spread), lifetime / 2 - skew))
    stale = expired - margin
    hint = token.extra.get("refresh_in")
    if isinstance(hint, (int, float)) and not isinstance(hint, bool) and hint >= 0:
        floor = min(REFRESH_IN_FLOOR_SECONDS, lifetime / 2)
        hint_seconds = float(hint) if hint < 1e300 else math.inf  # an int may not fit
        stale = min(stale, token.obtained_monotonic + max(hint_seconds, floor))
    return Deadlines(stale, expired)


def backoff_seconds(
    failures: int,
    policy: RefreshPolicy,
    draw: float,
    retry_after_seconds: Optional[float] = None,
    *,
    token_valid: bool = True,
) -> float:
    """How long to wait before the next token request after ``failures`` failures in a row.

    Exponential with full jitter (``draw`` in [0, 1) scales the step), capped (lower when
    ``token_valid`` is false: callers fail until the next attempt), and never shorter than a
    server's ``Retry-After``.
    """
    if failures <= 0:
        return 0.0
    cap = policy.backoff_max_seconds
    if not token_valid:
        cap = min(cap, policy.backoff_max_without_token_seconds)
    step = min(cap, policy.backoff_base_seconds * 2.0 ** (failures - 1))
    wait = step * min(max(draw, 0.0), 1.0)
    if retry_after_seconds is not None:
        wait = max(wait, min(retry_after_seconds, policy.backoff_max_seconds * 10))
    return wait


def parse_retry_after(value: Optional[str], now: float) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date).

    :param now: wall-clock epoch seconds, for the HTTP-date form.
    :returns: ``None`` when the header is missing or unreadable.
    """
    if not value or len(value) > _MAX_HEADER_CHARS:
        return None
    value = value.strip()
    # ASCII digits only (RFC 9110 section 10.2.3): str.isdigit() also accepts "²", which
    # float() then refuses
    if value.isascii() and value.isdigit():
        return float(value)  # a huge number is inf; the backoff caps it
    try:
        when = parsedate_to_datetime(value)
        if when is None or when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


#: Headers longer than this are not parsed: a challenge or a Retry-After is a few dozen
#: characters, and a hostile server's 60 KB header must cost nothing.
_MAX_HEADER_CHARS = 4096

#: RFC 9110 ``token`` characters as the challenge parser reads parameter names.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def challenge_error(www_authenticate: Optional[str]) -> Optional[str]:
    """The ``error`` parameter of a Bearer (or DPoP) challenge (RFC 6750 §3), if any.

    One pass over at most the first 4096 characters, so the work is linear and bounded
    whatever the server sends.
    """
    if not www_authenticate:
        return None
    for name, value in _auth_params(www_authenticate[:_MAX_HEADER_CHARS]):
        if name.lower() == "error":
            return value
    return None


def _auth_params(header: str) -> list[tuple[str, str]]:
    """``name=value`` pairs of a ``WWW-Authenticate`` value (value unquoted), scanning
    each character once: scheme names and token68 runs are skipped."""
    params: list[tuple[str, str]] = []
    i, n = 0, len(header)
    while i < n:
        start = i
        while i < n and header[i] in _NAME_CHARS:
            i += 1
        if i == start:
            i += 1  # a separator or a character no name holds
            continue
        name, j = header[start:i], i
        while j < n and header[j] in " \t":
            j += 1
        if j == n or header[j] != "=":
            continue
        j += 1
        while j < n and header[j] in " \t":
            j += 1
        if j < n and header[j] == '"':
            value, i = _quoted(header, j + 1)
        else:
            i = j
            while i < n and header[i] not in " \t,":
                i += 1
            value = header[j:i]
        if value:
            params.append((name, value))
    return params


def _quoted(header: str, i: int) -> tuple[str, int]:
    """The quoted string starting at ``i`` (just past the opening quote), unescaped, and
    the index past its closing quote (or the end, when it is not closed)."""
    out: list[str] = []
    n = len(header)
    while i < n and header[i] != '"':
        if header[i] == "\\" and i + 1 < n:
            i += 1
        out.append(header[i])
        i += 1
    return "".join(out), i + 1


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

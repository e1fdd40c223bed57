"""Pure decisions: when a token is fresh, stale or expired; what to do after a 401; backoff.

Nothing here reads a clock, draws a random number or does IO: callers pass ``now`` and a
random draw in, so every decision can be tested from a table.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection
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

#: A renewal's measured duration (lock wait, token request and save) times this is how long
#: before expiry a refresh ahead starts at the latest: room for a fleet's slowest renewal to
#: reach every sharer of a store before the old token expires.
RENEWAL_LEAD_FACTOR = 3.0

#: A server's ``refresh_in`` hint never brings the refresh ahead earlier than this many
#: seconds (or half the lifetime, if less) after the token was obtained.
REFRESH_IN_FLOOR_SECONDS = 60.0


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
        return Deadlines(math.inf, math.inf, math.inf)
    skew = min(policy.expiry_skew_seconds, lifetime / 10)
    nominal = token.obtained_monotonic + lifetime
    expired = nominal - skew
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
    if not value or len(value) > _MAX_HEADER_CHARS:
        return None
    value = value.strip()
    # ASCII digits only (RFC 9110 section 10.2.3): str.isdigit() also accepts "²", which
    # float() then refuses
    if value.isascii() and value.isdigit():
        # more than 10 digits (over 300 years) is no wait anyone means, and would be inf
        return float(value) if len(value) <= 10 else None
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
#: The statuses that mean "this token was rejected" unless told otherwise (RFC 6750 §3.1).
DEFAULT_REFRESH_STATUS_CODES: frozenset[int] = frozenset({401})


class Rejection(enum.Enum):
    """What to do with a response that may have rejected the token (:func:`after_unauthorized`)."""

    IGNORE = "ignore"  # not a rejection of our token, or no retry can help: return it as it is
    REPLACE = "replace"  # replace the token for the next request; this body cannot be re-sent
    RETRY = "retry"  # replace the token and re-send the request once


def after_unauthorized(
    *,
    status_code: int,
    www_authenticate: Optional[str],
    already_retried: bool,
    sent_token: bool,
    body_replayable: bool,
    refresh_status_codes: Collection[int] = DEFAULT_REFRESH_STATUS_CODES,
) -> Rejection:
    """What a response with ``status_code`` does to the token that was sent.

    A status in ``refresh_status_codes`` (401, and 403 for APIs that answer 403 to an
    expired token) to a request that carried our token and was not retried yet, whose
    challenge is not ``insufficient_scope`` (a new token with the same scope cannot help):
    the token is replaced. The request is re-sent only if its body can be sent again in
    full; otherwise only the next request benefits.
    """
    if (
        status_code not in refresh_status_codes
        or already_retried
        or not sent_token
        or challenge_error(www_authenticate) == "insufficient_scope"
    ):
        return Rejection.IGNORE
    return Rejection.RETRY if body_replayable else Rejection.REPLACE


def should_retry_unauthorized(
    *,
    status_code: int,
    www_authenticate: Optional[str],
    already_retried: bool,
    sent_token: bool,
    body_replayable: bool,
) -> bool:
    """Whether a 401 deserves the one guarded retry (:func:`after_unauthorized` says
    :attr:`Rejection.RETRY`)."""
    verdict = after_unauthorized(
        status_code=status_code,
        www_authenticate=www_authenticate,
        already_retried=already_retried,
        sent_token=sent_token,
        body_replayable=body_replayable,
    )
    return verdict is Rejection.RETRY

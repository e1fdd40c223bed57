"""What the test server does to the traffic and records of it: the gate that holds token
requests, injected token and resource faults, the log of requests seen and the counters."""

from __future__ import annotations

import collections
import threading
from typing import Optional, Union

from ._handler import TOKEN_FAULTS
from ._state import Fault, SeenRequest

_SEEN_LIMIT = 10_000


class TrafficControl:
    """Mixed into :class:`~requests_tokenauth.testing.AuthServer`: gating, faults and
    observations. Thread-safe (guarded by the server's ``_lock``)."""

    _lock: threading.Lock

    def _init_traffic(self) -> None:
        self._resource_fault: Optional[list[int]] = None  # [status, remaining]
        self._arrivals = threading.Condition(self._lock)
        self._released = threading.Event()
        self._released.set()
        self._seen: collections.deque[SeenRequest] = collections.deque(maxlen=_SEEN_LIMIT)
        self._fault: Optional[Fault] = None
        self._accepted = 0
        self._token_requests = self._resource_requests = self._resource_401s = 0
        self._by_grant: collections.Counter[str] = collections.Counter()
        self._errors: collections.Counter[str] = collections.Counter()

    # -- gating and faults ---------------------------------------------------------

    def hold_token_endpoint(self) -> None:
        """Make token requests wait, once counted, until :meth:`release_token_endpoint`."""
        self._released.clear()

    def release_token_endpoint(self) -> None:
        """Let held and future token requests proceed."""
        self._released.set()

    def wait_for_token_requests(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least ``n`` token requests have arrived since the last reset.

        :param n: how many.
        :param timeout: the most seconds to wait.
        :returns: whether that many arrived in time.
        """
        with self._arrivals:
            return self._arrivals.wait_for(lambda: self._token_requests >= n, timeout)

    def set_token_fault(
        self,
        kind: str,
        *,
        count: Optional[int] = None,
        retry_after: Optional[Union[float, str]] = None,
    ) -> None:
        """Make the next ``count`` token requests misbehave (all of them when ``None``).

        Faulted requests are still counted. ``"500"``, ``"503"``, ``"429"``: that status
        with a plain-text body (``Retry-After: <retry_after>`` on 503 and 429 when given);
        ``"slow"``: wait ``slow_seconds`` (less if the server closes) and answer normally;
        ``"drop"``: close the connection without a response; ``"non_json"``: 200 with an
        HTML body; ``"no_access_token"``, ``"wrong_token_type"`` (``"mac"``),
        ``"negative_expires_in"`` (-5), ``"string_expires_in"`` (``"soon"``): a successful
        response (the token is really issued) rewritten that way; ``"invalid_grant"``
        (400) and ``"invalid_client"`` (401): that OAuth error, counted in
        :attr:`token_errors`; ``"drip"``, ``"huge_body"``, ``"endless_body"``: the token
        response sent slowly, padded or without end (the hostile knobs: ``drip_seconds``,
        ``huge_body_bytes``);
        ``"raw"``: what :meth:`set_raw_token_response` scripted.

        :param kind: one of :data:`TOKEN_FAULTS`.
        :param count: how many requests it affects; ``None`` until cleared.
        :param retry_after: the ``Retry-After`` value (seconds or an HTTP date).
        """
        if kind not in TOKEN_FAULTS or (count is not None and count < 1):
            raise ValueError(f"bad fault {kind!r} (count={count!r})")
        with self._lock:
            self._fault = Fault(kind, count, retry_after)

    def fail_resource(self, status: int, count: int = 1) -> None:
        """Make the next ``count`` resource requests answer ``status`` (e.g. 503) before
        any token check; they are counted in :attr:`resource_requests`.

        :param status: an HTTP error status, 400 to 599.
        :param count: how many requests it affects.
        """
        if not 400 <= status <= 599 or count < 1:
            raise ValueError(f"bad resource fault {status!r} (count={count!r})")
        with self._lock:
            self._resource_fault = [status, count]

    def _take_resource_fault(self) -> Optional[int]:
        with self._lock:
            fault = self._resource_fault
            if fault is None:
                return None
            fault[1] -= 1
            if fault[1] <= 0:
                self._resource_fault = None
            return fault[0]

    def clear_token_fault(self) -> None:
        """Let token requests behave again."""
        with self._lock:
            self._fault = None

    # -- observations --------------------------------------------------------------

    @property
    def seen(self) -> list[SeenRequest]:
        """The last 10,000 requests received, oldest first (a copy)."""
        with self._lock:
            return list(self._seen)

    def clear_seen(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._seen.clear()

    @property
    def token_requests(self) -> int:
        """``POST /token`` requests that arrived, counted on arrival, faulted ones too."""
        with self._lock:
            return self._token_requests

    @property
    def token_requests_by_grant(self) -> dict[str, int]:
        """:attr:`token_requests` by ``grant_type`` (``""`` when there was none)."""
        with self._lock:
            return dict(self._by_grant)

    @property
    def token_errors(self) -> dict[str, int]:
        """OAuth error responses of the token endpoint, by error code."""
        with self._lock:
            return dict(self._errors)

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far (keep-alive reuse shows as fewer)."""
        with self._lock:
            return self._accepted

    @property
    def resource_requests(self) -> int:
        """Requests to the protected resource."""
        with self._lock:
            return self._resource_requests

    @property
    def resource_401s(self) -> int:
        """Protected-resource responses with status 401."""
        with self._lock:
            return self._resource_401s

    def reset_counters(self) -> None:
        """Zero every counter (not :attr:`seen`)."""
        with self._lock:
            self._token_requests = self._resource_requests = self._resource_401s = 0
            self._by_grant.clear()
            self._errors.clear()

    def _record(self, seen: SeenRequest) -> None:
        with self._lock:
            self._seen.append(seen)

    def _token_arrived(self, grant_type: str) -> Optional[Fault]:
        with self._lock:
            self._token_requests += 1
            self._by_grant[grant_type] += 1
            self._arrivals.notify_all()
            fault = self._fault
            if fault is not None and fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._fault = None
            return fault

    def _count_token_error(self, error: str) -> None:
        with self._lock:
            self._errors[error] += 1

    def _count_resource(self, status: int) -> None:
        with self._lock:
            self._resource_requests += 1
            self._resource_401s += status == 401

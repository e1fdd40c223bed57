"""AheadRunner: at most one refresh ahead of expiry in flight, on a short-lived thread.

No caller waits for a refresh ahead: the token is still valid, so the caller that notices
hands the work to a thread of its own and goes on (google-auth's ``_refresh_worker`` does
the same). No permanent thread: each refresh gets one that ends with it.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Callable

from ._forksafe import ForkSafe, lock

#: The name of the short-lived thread a refresh ahead runs on (``on_token`` docs name it).
THREAD_NAME = "tokenauth-refresh"


class AheadRunner(ForkSafe):
    """Runs one refresh ahead at a time. Thread-safe; pickles and forks with a fresh lock.

    :param background: run on a short-lived thread (else on the caller's, before its
        request goes out).
    """

    # held while a refresh ahead is in flight; new in a child, where its holder is gone
    _fresh_locks = {"_busy": lock}

    def __init__(self, background: bool) -> None:
        self.background = background
        self._busy = threading.Lock()
        self._track()

    def start(self, work: Callable[[], None]) -> None:
        """Run ``work`` unless a refresh ahead is already in flight (then do nothing)."""
        if not self._busy.acquire(blocking=False):
            return
        if self.background:
            # the caller's context goes along: a driver's sender (see _grants._wire) sends it
            context = contextvars.copy_context()
            worker = threading.Thread(
                target=context.run, args=(self._run, work), name=THREAD_NAME
            )
            worker.daemon = True  # interpreter exit waits for it, bounded (see _delivery)
            try:
                worker.start()
                return
            except RuntimeError:  # no new threads (interpreter shutting down): do it here
                pass
        self._run(work)

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        finally:
            self._busy.release()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no refresh ahead is in flight; ``False`` if one still is after
        ``timeout`` seconds."""
        if not self._busy.acquire(timeout=timeout):
            return False
        self._busy.release()
        return True

"""ForkSafe: pickling without locks or secrets, and fresh locks in a child after ``fork()``.

requests pickles ``session.auth`` and ``session.adapters``, and ``fork()`` copies locks that
another thread of the parent may hold mid-refresh: that thread does not exist in the child,
so the child would wait on it forever. Objects that own locks derive from :class:`ForkSafe`
and name them; they are re-created in every child and after unpickling.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any, Callable, ClassVar


class ForkSafe:
    """Base of the objects that own locks. Subclasses list the locks to re-create in
    ``_fresh_locks`` (attribute name -> factory) and the attributes a pickle must not carry
    (tokens: a pickle is not a secure store) in ``_not_pickled`` (name -> value after
    unpickling). Call :meth:`_track` at the end of ``__init__``."""

    _fresh_locks: ClassVar[Mapping[str, Callable[[], Any]]] = {}
    _not_pickled: ClassVar[Mapping[str, Callable[[], Any]]] = {}

    def _track(self) -> None:
        _live.add(self)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in self._fresh_locks:
            state.pop(name, None)
        for name in self._not_pickled:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name, initial in self._not_pickled.items():
            setattr(self, name, initial())
        self._after_fork_in_child()
        self._track()

    def _after_fork_in_child(self) -> None:
        for name, factory in self._fresh_locks.items():
            setattr(self, name, factory())


_live: weakref.WeakSet[ForkSafe] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for owner in list(_live):
        owner._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


def lock() -> threading.Lock:
    """A plain lock (a factory for ``_fresh_locks``)."""
    return threading.Lock()


def rlock() -> threading.RLock:
    """A re-entrant lock (a factory for ``_fresh_locks``)."""
    return threading.RLock()

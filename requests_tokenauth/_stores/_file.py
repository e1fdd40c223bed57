"""FileStore: one JSON file per key in a directory, atomic replace, a cross-process flock."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any, Callable, Optional, Union

from .._errors import ConfigurationError, TokenStoreError
from ._crypto import EncryptionKey, RefreshTokenCipher, decode, encode
from ._private_dir import (
    open_directory,
    open_file,
    os_reason,
    read_file,
    remove_file,
    replace_file,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("requests_tokenauth")

#: A waiter gives up on the lock after this long: a little more than the default token
#: request may take (5 s connect + 30 s read), which is what a live holder does with it.
DEFAULT_FILE_LOCK_TIMEOUT_SECONDS = 40.0

#: How often a waiter retries a lock held by another process: first, then at most.
_POLL_FIRST_SECONDS = 0.002
_POLL_MAX_SECONDS = 0.05

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_NAME_LIMIT = 80


def file_name(key: str) -> str:
    """The file name (without suffix) for ``key``: its safe characters, then a short hash of
    the whole key, so distinct keys never share a file and no key can leave the directory."""
    safe = _UNSAFE.sub("_", key).lstrip(".")[:_NAME_LIMIT] or "key"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return f"{safe}-{digest}"


class FileStore:
    """Tokens in a directory, shared by every process on this machine that opens it.

    Each key is one file, ``<name>.json``, readable with any JSON tool. A save writes a
    temporary file in the same directory (mode 0600), ``fsync``\\ s it and renames it over
    the old one, so a reader sees the old token or the new one, never half of either, and a
    crash mid-save leaves the old file intact. A file that cannot be read or parsed makes
    :meth:`load` raise :class:`~requests_tokenauth.TokenStoreError` and is left as it is
    until a good token replaces it.

    The lock of a key is ``fcntl.flock`` on a separate ``<name>.lock`` file (lock files are
    never deleted: deleting one would let two processes lock different files). The kernel
    drops a flock when its holder exits, even when killed by ``SIGKILL``, so a crashed
    process never blocks the others. Waiting threads of one process queue on an in-process
    lock; waiting processes retry the flock until ``lock_timeout_seconds``. The lock is not
    re-entrant. POSIX only (Linux, macOS): Windows has no ``flock``. Network file systems
    that do not honour ``flock`` (some NFS setups) cannot share a FileStore.

    It trusts nothing it did not create. The directory must be a real directory (not a
    symbolic link) owned by this process's effective uid with no group or other permission
    bits; if missing, it is created with mode 0700, parents included, whatever the umask.
    Token and lock files are opened inside it without following links or blocking, and must
    be regular files of this uid (a token file at most 1 MiB). Anything else is refused with
    a :class:`~requests_tokenauth.TokenStoreError` naming the path and the reason: a
    directory that another user can write is one where they could plant a token.

    Thread-safe and safe across processes. Picklable: a pickle holds the directory, the
    settings and the ``encryption_key`` (so treat it as a secret), never a token. Safe
    across ``fork()``: the child starts with fresh locks.

    :param directory: where the token files live.
    :param lock_timeout_seconds: how long :meth:`lock` waits before raising
        :class:`~requests_tokenauth.TokenStoreError`.
    :param encryption_key: a Fernet key (or a list, the first one encrypting) to encrypt
        refresh tokens at rest; needs the ``encryption`` extra.
    :raises ConfigurationError: no ``fcntl`` on this platform, or a bad ``encryption_key``.
    """

    def __init__(
        self,
        directory: Union[str, os.PathLike[str]],
        *,
        lock_timeout_seconds: float = DEFAULT_FILE_LOCK_TIMEOUT_SECONDS,
        encryption_key: Optional[EncryptionKey] = None,
    ) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            raise ConfigurationError("FileStore needs fcntl.flock (POSIX); use RedisStore")
        if lock_timeout_seconds < 0:
            raise ConfigurationError("lock_timeout_seconds must not be negative")
        self.directory = os.fspath(directory)
        self.lock_timeout_seconds = lock_timeout_seconds
        self._cipher = RefreshTokenCipher(encryption_key) if encryption_key is not None else None
        self._guard = threading.Lock()
        self._thread_locks: dict[str, threading.Lock] = {}
        self._held: set[int] = set()  # lock-file descriptors open right now
        _live_stores.add(self)

    def __repr__(self) -> str:
        encrypted = ", encrypted" if self._cipher is not None else ""
        return f"FileStore({self.directory!r}{encrypted})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_guard", "_thread_locks", "_held"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._guard = threading.Lock()
        self._thread_locks = {}
        self._held = set()
        _live_stores.add(self)

    def path(self, key: str) -> str:
        """The file that holds ``key``'s token."""
        return os.path.join(self.directory, file_name(key) + ".json")

    # -- load and save --------------------------------------------------------------------

    def load(self, key: str) -> Optional[dict[str, Any]]:
        """The token saved under ``key``, or ``None`` if there is no file.

        :raises TokenStoreError: the directory or the file fails the checks the class
            describes, or the file cannot be read, is not a JSON token object, or is an
            encrypted record the store's key refuses (moved, edited, plaintext, old format).
        """
        path = self.path(key)
        directory = open_directory(self.directory, create=False)
        if directory is None:
            return None
        try:
            raw = read_file(directory, file_name(key) + ".json", path)
        finally:
            os.close(directory)
        if raw is None:
            return None
        return decode(raw, f"token file {path}", self._cipher, key)

    def save(self, key: str, token: dict[str, Any]) -> None:
        """Atomically replace the token saved under ``key``.

        :raises TokenStoreError: the directory fails the checks or is not writable, the disk
            is full, or the dict cannot be written as JSON; the old file is then left as it was.
        """
        text = encode(token, self._cipher, key).encode("utf-8")
        directory = self._open_directory()
        try:
            replace_file(directory, file_name(key) + ".json", self.path(key), text)
        finally:
            os.close(directory)

    def delete(self, key: str) -> None:
        """Remove the token file of ``key`` (nothing if there is none).

        :raises TokenStoreError: the file exists but cannot be removed.
        """
        directory = open_directory(self.directory, create=False)
        if directory is None:
            return
        try:
            remove_file(directory, file_name(key) + ".json", self.path(key))
        finally:
            os.close(directory)

    # -- locking --------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the cross-process lock of ``key``.

        :raises TokenStoreError: not acquired within ``lock_timeout_seconds``, or the lock
            file cannot be opened.
        """
        with self.lock_unless(key, _never):
            yield

    @contextlib.contextmanager
    def lock_unless(self, key: str, satisfied: Callable[[], bool]) -> Iterator[bool]:
        """As :meth:`lock`, but a waiter calls ``satisfied()`` before each retry of the
        flock and gives up waiting when it returns true: the block then runs without the
        lock, and the context manager yields ``False`` (else ``True``).

        :raises TokenStoreError: as :meth:`lock`.
        """
        deadline = time.monotonic() + self.lock_timeout_seconds
        with self._guard:
            thread_lock = self._thread_locks.setdefault(key, threading.Lock())
        if not thread_lock.acquire(timeout=self.lock_timeout_seconds):
            raise self._timeout(key)
        try:
            fd = self._open_lock_file(key)
            with self._guard:
                self._held.add(fd)
            try:
                if not self._flock(fd, key, deadline, satisfied):
                    yield False
                    return
                try:
                    yield True
                finally:
                    _unlock(fd)
            finally:
                with self._guard:
                    self._held.discard(fd)
                os.close(fd)
        finally:
            thread_lock.release()

    def _open_lock_file(self, key: str) -> int:
        name = file_name(key) + ".lock"
        directory = self._open_directory()
        try:
            return open_file(
                directory, name, os.path.join(self.directory, name), os.O_RDWR | os.O_CREAT
            )
        finally:
            os.close(directory)

    def _flock(self, fd: int, key: str, deadline: float, satisfied: Callable[[], bool]) -> bool:
        """Whether the flock was taken (``False``: ``satisfied()`` first)."""
        pause = _POLL_FIRST_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise TokenStoreError(
                        f"cannot lock {self.path(key)}: {os_reason(exc)}"
                    ) from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timeout(key)
            time.sleep(min(pause, left))
            pause = min(pause * 2, _POLL_MAX_SECONDS)
            if satisfied():
                return False

    def _timeout(self, key: str) -> TokenStoreError:
        return TokenStoreError(
            f"token file {self.path(key)} stayed locked for {self.lock_timeout_seconds:g}s "
            "(another process is renewing the token, or is stuck)"
        )

    # -- helpers --------------------------------------------------------------------------

    def _open_directory(self) -> int:
        fd = open_directory(self.directory, create=True)
        assert fd is not None
        return fd

    def _after_fork_in_child(self) -> None:
        # A thread of the parent may have held a lock: it does not exist here. Close the
        # inherited descriptors without unlocking (that would release the parent's flock),
        # so this child cannot keep the parent's lock alive after the parent exits.
        for fd in self._held:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._held = set()
        self._guard = threading.Lock()
        self._thread_locks = {}


_live_stores: weakref.WeakSet[FileStore] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for store in list(_live_stores):
        store._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


def _never() -> bool:
    return False


def _unlock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError as exc:  # closing the descriptor releases it anyway
        log.warning("could not release a token file lock: %s", os_reason(exc))

"""The file-system side of FileStore: trust nothing it did not create.

A token directory must be a real directory (the last component not a symbolic link; its
parents are the system's business), owned by this process's effective uid, with no group or
other permission bits; missing ones are created 0700,
parents included, whatever the umask. Everything inside is reached through the directory's
descriptor (``openat``), so the checked directory is the one used. Files are opened with
``O_NOFOLLOW | O_NONBLOCK`` (a planted link is not followed, a FIFO cannot block) and must
be regular files of this uid, no larger than :data:`MAX_FILE_BYTES`. Every refusal is a
:class:`~requests_tokenauth.TokenStoreError` naming the path and the reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from typing import Callable, Optional

from .._errors import TokenStoreError

#: A token file holds a few kilobytes; one larger than this was not written by a FileStore.
MAX_FILE_BYTES = 1 << 20

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_DIR_FLAGS = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC
#: ``O_NOFOLLOW`` on a symbolic link fails with ELOOP (Linux, macOS) or EMLINK (FreeBSD).
_LINK_ERRNOS = (errno.ELOOP, errno.EMLINK)


def refused(path: str, reason: str) -> TokenStoreError:
    return TokenStoreError(f"FileStore refuses {path}: {reason}")


def os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def open_directory(path: str, *, create: bool) -> Optional[int]:
    """A descriptor of the checked token directory ``path``; ``None`` if it does not exist
    and ``create`` is false. The caller closes it.

    :raises TokenStoreError: it cannot be created or opened, or fails a check.
    """
    try:
        fd = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        if not create:
            return None
        _make_directories(path)
        fd = _open_existing_directory(path)
    except OSError as exc:
        raise _directory_error(path, exc) from None
    try:
        _check(path, os.fstat(fd), "directory", stat.S_ISDIR)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_existing_directory(path: str) -> int:
    try:
        return os.open(path, _DIR_FLAGS)
    except OSError as exc:
        raise _directory_error(path, exc) from None


def _directory_error(path: str, exc: OSError) -> TokenStoreError:
    if exc.errno in (*_LINK_ERRNOS, errno.ENOTDIR):
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return refused(path, "it is a symbolic link (give the real directory)")
        return refused(path, "it is not a directory")
    return TokenStoreError(f"cannot open token directory {path}: {os_reason(exc)}")


def _make_directories(path: str) -> None:
    """Create ``path`` and its missing parents, each with mode 0700 (``os.makedirs`` gives
    parents 0777 minus the umask: world-writable under umask 0)."""
    missing = []
    head = os.path.abspath(path)
    while not os.path.lexists(head):
        missing.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue  # made meanwhile by someone else: the checks decide about the last one
        except OSError as exc:
            raise TokenStoreError(
                f"cannot create token directory {directory}: {os_reason(exc)}"
            ) from None
        # a umask can only remove bits; put back the owner's, through a descriptor so a
        # swapped-in link is not followed
        with contextlib.suppress(OSError):
            fd = os.open(directory, _DIR_FLAGS)
            try:
                os.fchmod(fd, 0o700)
            finally:
                os.close(fd)


def _check(path: str, st: os.stat_result, what: str, is_kind: Callable[[int], bool]) -> None:
    if not is_kind(st.st_mode):
        raise refused(path, f"it is not a {what}")
    uid = os.geteuid()
    if st.st_uid != uid:
        raise refused(path, f"it is owned by uid {st.st_uid}, not by this process (uid {uid})")
    if what == "directory" and st.st_mode & 0o077:
        raise refused(
            path,
            f"its mode {stat.S_IMODE(st.st_mode):04o} lets other users in (chmod 700 it)",
        )


def open_file(directory_fd: int, name: str, path: str, flags: int, mode: int = 0o600) -> int:
    """Open ``name`` in the directory, not following a link and never blocking; it must be
    a regular file of this uid. The caller closes it.

    :raises FileNotFoundError: it does not exist (and ``flags`` do not create it).
    :raises TokenStoreError: it cannot be opened, or fails a check.
    """
    try:
        fd = os.open(name, flags | _NOFOLLOW | _NONBLOCK | _CLOEXEC, mode, dir_fd=directory_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS:
            raise refused(path, "it is a symbolic link") from None
        raise TokenStoreError(f"cannot open {path}: {os_reason(exc)}") from None
    try:
        _check(path, os.fstat(fd), "regular file", stat.S_ISREG)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file(directory_fd: int, name: str, path: str) -> Optional[bytes]:
    """The content of token file ``name``, or ``None`` if there is none.

    :raises TokenStoreError: not a regular file of this uid, larger than
        :data:`MAX_FILE_BYTES`, or unreadable.
    """
    try:
        fd = open_file(directory_fd, name, path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        chunks = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise TokenStoreError(f"token file {path} cannot be read: {os_reason(exc)}") from None
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        raise refused(path, f"it is larger than {MAX_FILE_BYTES} bytes")
    return b"".join(chunks)


def replace_file(directory_fd: int, name: str, path: str, data: bytes) -> None:
    """Write ``data`` to a new 0600 file in the directory, fsync it and rename it over
    ``name`` (a reader sees the old file or the new, never half), then fsync the directory.

    :raises TokenStoreError: it cannot be written; the old file is then left as it was.
    """
    temp = f".{name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    try:
        fd = os.open(temp, flags, 0o600, dir_fd=directory_fd)
    except OSError as exc:
        raise TokenStoreError(f"cannot write next to {path}: {os_reason(exc)}") from None
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=directory_fd)
        raise TokenStoreError(f"cannot save token file {path}: {os_reason(exc)}") from None
    sync(directory_fd)


def remove_file(directory_fd: int, name: str, path: str) -> None:
    """Remove ``name`` from the directory (nothing if it is not there)."""
    try:
        os.unlink(name, dir_fd=directory_fd)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise TokenStoreError(f"cannot remove token file {path}: {os_reason(exc)}") from None
    sync(directory_fd)


def sync(directory_fd: int) -> None:
    """Make a rename durable (POSIX: fsync the directory); best effort."""
    with contextlib.suppress(OSError):
        os.fsync(directory_fd)

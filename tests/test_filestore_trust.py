"""FileStore trusts nothing it did not create (issue 15, item 2).

A victim (this process) and, where the machine allows it, an attacker: a forked child that
switches to the ``nobody`` uid and prepares directories, links and files in a shared
sticky directory, as another local user could in ``/tmp``. Where switching uid is not
possible (not root), those tests are skipped, not faked."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from requests_tokenauth import ClientCredentials, FileStore, TokenAuth, TokenStoreError
from requests_tokenauth._stores import store_key
from requests_tokenauth._stores._file import file_name
from requests_tokenauth._stores._private_dir import MAX_FILE_BYTES
from requests_tokenauth.testing import AuthServer

from .helpers import session_for

WAIT = 10.0
TOKEN = {"access_token": "at-victim", "token_type": "Bearer", "expires_at": 4_000_000_000.0}
PLANTED = {"access_token": "attacker-token", "token_type": "Bearer", "expires_at": 4_000_000_000}


#: The child's exit status when it cannot become the second user.
_CANNOT_SWITCH = 77


def _nobody() -> tuple[int, int]:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root to act as a second user (nobody)")
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user on this machine")
    return entry.pw_uid, entry.pw_gid


def as_attacker(action: Callable[[], None]) -> None:
    """Run ``action`` in a forked child under the ``nobody`` uid (a second local user)."""
    uid, gid = _nobody()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            try:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
            except PermissionError:  # root without CAP_SETUID (some containers)
                code = _CANNOT_SWITCH
                raise
            os.umask(0)
            action()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status)
    if os.WEXITSTATUS(status) == _CANNOT_SWITCH:
        pytest.skip("this machine does not let root switch to another uid")
    if os.WEXITSTATUS(status) != 0:
        pytest.fail("the attacker's setup failed in the child")


@pytest.fixture
def shared() -> Iterator[str]:
    """A world-writable sticky directory, like /tmp, that both users can reach."""
    path = tempfile.mkdtemp(prefix="tokenauth-shared-", dir="/tmp")
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def private(tmp_path: Any) -> str:
    """The victim's own token directory, as FileStore makes it."""
    path = str(tmp_path / "tokens")
    FileStore(path).save("setup", TOKEN)
    return path


def refused(operation: Callable[[], object], *words: str) -> str:
    with pytest.raises(TokenStoreError) as info:
        operation()
    message = str(info.value)
    for word in words:
        assert word in message, message
    return message


# -- directories ------------------------------------------------------------------------------


def test_a_directory_owned_by_another_user_is_refused_and_its_token_never_sent(
    shared: str, auth_server: AuthServer
) -> None:
    grant = ClientCredentials(auth_server.token_url, client_id="svc", client_secret="svc-secret")
    directory = os.path.join(shared, "tokens")
    planted = os.path.join(directory, file_name(store_key(grant)) + ".json")

    def plant() -> None:
        os.mkdir(directory, 0o777)
        with open(planted, "w") as f:
            json.dump(PLANTED, f)

    as_attacker(plant)
    store = FileStore(directory, lock_timeout_seconds=1)
    refused(lambda: store.load(store_key(grant)), directory, "owned by uid")
    refused(lambda: store.save("k", TOKEN), directory, "owned by uid")
    refused(lambda: store.lock("k").__enter__(), directory, "owned by uid")
    session = session_for(TokenAuth(grant, store=store))
    with pytest.raises(TokenStoreError):
        session.get(auth_server.resource_url)
    assert [s.authorization for s in auth_server.seen if s.path.startswith("/resource")] == []
    assert sorted(os.listdir(directory)) == [os.path.basename(planted)]  # nothing of ours


def test_a_directory_other_users_can_write_is_refused(tmp_path: Any) -> None:
    directory = str(tmp_path / "tokens")
    os.mkdir(directory)
    for mode in (0o777, 0o770, 0o701):
        os.chmod(directory, mode)
        refused(lambda: FileStore(directory).save("k", TOKEN), directory, f"{mode:04o}")
        refused(lambda: FileStore(directory).load("k"), directory, "chmod 700")
    assert os.listdir(directory) == []


def test_a_directory_that_is_a_symbolic_link_is_refused(shared: str, tmp_path: Any) -> None:
    target = os.path.join(shared, "theirs")
    as_attacker(lambda: os.mkdir(target, 0o700))
    link = str(tmp_path / "tokens")
    os.symlink(target, link)
    refused(lambda: FileStore(link).save("k", TOKEN), link, "symbolic link")
    refused(lambda: FileStore(link).load("k"), link, "symbolic link")


def test_missing_parents_are_created_0700_whatever_the_umask(tmp_path: Any) -> None:
    directory = tmp_path / "a" / "b" / "tokens"
    old = os.umask(0)
    try:
        FileStore(directory).save("k", TOKEN)
    finally:
        os.umask(old)
    for path in (tmp_path / "a", tmp_path / "a" / "b", directory):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
    assert stat.S_IMODE(os.stat(FileStore(directory).path("k")).st_mode) == 0o600


# -- files inside the directory ---------------------------------------------------------------


def test_a_lock_file_that_is_a_symbolic_link_is_not_followed(private: str, tmp_path: Any) -> None:
    target = tmp_path / "elsewhere" / "created-by-the-victim"
    target.parent.mkdir()
    os.symlink(target, os.path.join(private, file_name("k") + ".lock"))
    store = FileStore(private, lock_timeout_seconds=1)
    refused(lambda: store.lock("k").__enter__(), "symbolic link")
    assert not target.exists()


def test_a_token_file_that_is_a_symbolic_link_is_not_followed(private: str) -> None:
    store = FileStore(private)
    store.save("bob", {**TOKEN, "access_token": "at-bob"})
    os.symlink(store.path("bob"), store.path("alice"))
    refused(lambda: store.load("alice"), store.path("alice"), "symbolic link")


def test_a_link_to_dev_zero_is_refused(private: str) -> None:
    store = FileStore(private)
    os.symlink("/dev/zero", store.path("k"))
    refused(lambda: store.load("k"), "symbolic link")


def test_a_fifo_does_not_block_load(private: str) -> None:
    store = FileStore(private)
    os.mkfifo(store.path("k"), 0o600)
    out: list[Any] = []

    def load() -> None:
        try:
            out.append(store.load("k"))
        except TokenStoreError as exc:
            out.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(WAIT)
    if thread.is_alive():  # unblock it: a writer that opens and closes at once
        os.close(os.open(store.path("k"), os.O_WRONLY | os.O_NONBLOCK))
        thread.join(WAIT)
        pytest.fail("load() blocked on a FIFO")
    assert len(out) == 1 and isinstance(out[0], TokenStoreError)
    assert "not a regular file" in str(out[0])


def test_a_file_larger_than_the_cap_is_refused(private: str) -> None:
    store = FileStore(private)
    with open(store.path("k"), "wb") as f:
        f.write(b" " * MAX_FILE_BYTES + json.dumps(TOKEN).encode())
    refused(lambda: store.load("k"), store.path("k"), "larger than")


def test_a_file_of_another_user_is_refused(private: str) -> None:
    uid, gid = _nobody()
    store = FileStore(private)
    store.save("k", TOKEN)
    os.chown(store.path("k"), uid, gid)
    refused(lambda: store.load("k"), store.path("k"), "owned by uid")

"""A private ``redis-server`` on a free loopback port, for tests and benchmarks (no
persistence; needs Debian's ``redis-server`` or any other on ``PATH``)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Optional

#: How long a fresh redis-server may take to answer PING.
START_TIMEOUT_SECONDS = 10.0


def redis_server_binary() -> Optional[str]:
    """The ``redis-server`` on ``PATH``, or ``None``."""
    return shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(binary: str, attempts: int = 3) -> Iterator[str]:
    """Start ``redis-server`` bound to 127.0.0.1 on a free port; yield its URL; stop it.

    A port taken between choosing and binding it makes the server exit; then another port
    is tried, ``attempts`` times in all.
    """
    with tempfile.TemporaryDirectory(prefix="tokenauth-redis-") as workdir:
        for _ in range(attempts):
            port = _free_port()
            process = subprocess.Popen(  # noqa: S603 - our own argv, a binary found on PATH
                [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                 "--appendonly", "no", "--dir", workdir, "--logfile", ""],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + START_TIMEOUT_SECONDS
                while process.poll() is None and time.monotonic() < deadline:
                    if _answers_ping(port):
                        break
                    time.sleep(0.05)
                else:
                    continue  # exited (port taken) or never answered: next port
                yield f"redis://127.0.0.1:{port}/0"
                return
            finally:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        raise RuntimeError(f"redis-server did not start on a free port in {attempts} attempts")

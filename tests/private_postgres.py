"""A PostgreSQL server of the test's own, to stop and start under a running billing.

Fault tests take the database away; doing that to the machine's shared server (or to the
session's embedded one) would break every other test running beside them. This one is
made from the binaries shipped in the ``pgserver`` wheel, with its own data directory
(``server_directory``) and a free TCP port on 127.0.0.1, and is gone when the test ends.

Use the ``private_postgres`` fixture (import it into the test module), or
``PrivatePostgres`` in a ``server_directory`` for more than one server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set", harmless
    warnings.simplefilter("ignore")
    from pgserver._commands import POSTGRES_BIN_PATH  # type: ignore[attr-defined]

# initdb and postgres refuse to run as root; pgserver runs them as this system user.
SYSTEM_USER = "pgserver"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(directory: Path) -> str | None:
    """The user the server runs as (None: the current one), with ``directory`` its own."""
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set", harmless
        warnings.simplefilter("ignore")
        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

    entry = ensure_user_exists(SYSTEM_USER)
    assert entry is not None
    ensure_prefix_permissions(directory)
    os.chown(directory, entry.pw_uid, entry.pw_gid)
    return SYSTEM_USER


class PrivatePostgres:
    """One server in ``directory`` on ``port``: ``start()``, ``stop()``, ``outage()``."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.user = _as_server_user(directory)
        self.pgdata = directory / "pgdata"
        self.log = directory / "postgres.log"
        self.port = port or free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "--no-sync")

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [str(POSTGRES_BIN_PATH / program), *args],
            user=self.user,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)}: {done.stderr.decode().strip()}")

    def start(self) -> None:
        # TCP on 127.0.0.1 only, no Unix socket; durability is not what these tests test.
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories=''"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.pgdata), "-l", str(self.log), "-o", options, "-w", "start"
        )
        self._wait_until_accepting()

    def stop(self) -> None:
        """Stop as an operator (or a failover) does: every connection is cut at once."""
        self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")

    @property
    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    @contextmanager
    def outage(self) -> Iterator[None]:
        """The database is away for the duration of the block."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def _wait_until_accepting(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def server_directory(tmp_path: Path) -> Iterator[Path]:
    """Where a private server keeps its data: under ``tmp_path``, except as root.

    As root the server runs as another user, who must be able to reach its directory; but
    every pytest session resets ``/tmp/pytest-of-root`` to mode 700, so a directory under
    ``tmp_path`` becomes unreachable whenever another session starts. Then it is a
    directory of its own in the system's temporary directory, removed afterwards.
    """
    if os.geteuid() != 0:
        yield tmp_path / "private-pg"
        return
    directory = Path(tempfile.mkdtemp(prefix="billing-private-pg-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[PrivatePostgres]:
    """A running private server; stopped at the end of the test, whatever it did."""
    with server_directory(tmp_path) as directory:
        server = PrivatePostgres(directory)
        server.start()
        try:
            yield server
        finally:
            if server.running:
                server.stop()

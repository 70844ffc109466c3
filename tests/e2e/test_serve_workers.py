"""`billing serve --workers N` as a real process: N API processes answer on one port, on
the embedded PostgreSQL, and one that dies is replaced while the others keep serving."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_serve_process import BILLING, environment, free_port, wait_until_healthy


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "billing-data"
    # Never leave a server behind, whatever the test did.
    pid_file = tmp_path / "billing-data" / "pgdata" / "postmaster.pid"
    if pid_file.exists():
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)


def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (uvicorn's API processes, its
    multiprocessing resource tracker)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def api_processes(pid: int) -> set[int]:
    return {
        child
        for child in children(pid)
        if "spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
    }


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def accepted_connections(port: int) -> dict[int, int]:
    """The server's side of each established TCP connection to ``port``: socket inode →
    the client's port."""
    accepted = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if state == "01" and int(local.split(":")[1], 16) == port:
            accepted[inode] = int(remote.split(":")[1], 16)
    return accepted


def wait_for(condition: object, timeout: float = 60) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def stop(process: subprocess.Popen[bytes], log: Path) -> str:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    return log.read_text()


def test_two_api_processes_answer_on_one_port(data_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [BILLING, "serve", "--port", str(port), "--workers", "2", "--no-worker"],
            env=environment(data_dir),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_healthy(base_url, process)
        wait_for(lambda: len(api_processes(process.pid)) == 2)
        workers = api_processes(process.pid)

        # Many client connections, each kept open after one request that reads the database
        # (the embedded one, reached through the URL the parent handed down): each is held
        # by the API process that accepted it. Both processes must hold some.
        clients = [httpx.Client(base_url=base_url, timeout=10) for _ in range(32)]
        try:
            for client in clients:
                assert client.get("/api/v1/tariffs").status_code == 200
                assert client.get("/ready").json() == {"status": "ready"}
            accepted = accepted_connections(port)
            holders = {
                worker: {accepted[inode] for inode in socket_inodes(worker) if inode in accepted}
                for worker in workers
            }
        finally:
            for client in clients:
                client.close()
        assert all(holders.values()), f"connections per API process: {holders}"
        assert sum(len(ports) for ports in holders.values()) == 32

        # One process killed outright: the other keeps answering, and uvicorn starts a new one.
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        for _ in range(20):
            assert httpx.get(f"{base_url}/api/v1/tariffs", timeout=10).status_code == 200
        wait_for(
            lambda: (
                len(api_processes(process.pid)) == 2 and victim not in api_processes(process.pid)
            )
        )
        assert httpx.get(f"{base_url}/ready", timeout=10).status_code == 200
    finally:
        text = stop(process, log)
    assert process.returncode == 0, text
    assert "stopping embedded PostgreSQL" in text
    assert "Traceback" not in text
    assert not (data_dir / "pgdata" / "postmaster.pid").exists(), "PostgreSQL still running"


def test_several_api_processes_need_the_scheduler_elsewhere(data_dir: Path) -> None:
    refused = subprocess.run(
        [BILLING, "serve", "--port", str(free_port()), "--workers", "2"],
        env=environment(data_dir),
        capture_output=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "--workers above 1 needs --no-worker" in refused.stderr.decode()
    assert not (data_dir / "pgdata").exists(), "nothing was started"

"""`billing serve` as a real process on the embedded PostgreSQL: answers, stops, starts again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

BILLING = str(Path(sys.executable).parent / "billing")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("BILLING_")}
    env["BILLING_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def wait_until_healthy(
    base_url: str, process: subprocess.Popen[bytes], timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"billing serve exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError("billing serve did not answer /health in time")


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "billing-data"
    # Never leave a server behind, whatever the test did.
    pid_file = tmp_path / "billing-data" / "pgdata" / "postmaster.pid"
    if pid_file.exists():
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)


def start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [BILLING, "serve", "--port", str(port)],
        env=environment(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop(process: subprocess.Popen[bytes]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    return output.decode()


def test_serve_answers_stops_cleanly_and_reuses_its_data(data_dir: Path) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    process = start(data_dir, port)
    try:
        wait_until_healthy(base_url, process)
        ready = httpx.get(f"{base_url}/ready", timeout=5)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}
        assert httpx.get(f"{base_url}/openapi.json", timeout=5).json()["info"]["title"] == "Billing"
        assert "billing_http_requests_total" in httpx.get(f"{base_url}/metrics", timeout=5).text
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    assert "stopping embedded PostgreSQL" in output
    assert not (data_dir / "pgdata" / "postmaster.pid").exists(), "PostgreSQL still running"

    # Data written while the service is down is there when it starts again.
    created = subprocess.run(
        [BILLING, "admin", "create", "--username", "marta", "--role", "marketing"],
        input=b"correct horse battery\n",
        env=environment(data_dir),
        capture_output=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr.decode()

    process = start(data_dir, port)
    try:
        wait_until_healthy(base_url, process)
        assert httpx.get(f"{base_url}/ready", timeout=5).status_code == 200
        again = subprocess.run(
            [BILLING, "admin", "create", "--username", "MARTA", "--role", "admin"],
            input=b"another password\n",
            env=environment(data_dir),
            capture_output=True,
            timeout=120,
        )
        assert again.returncode == 1
        assert "already exists" in again.stderr.decode()
        # The second command found the server running and left it running.
        assert httpx.get(f"{base_url}/ready", timeout=5).status_code == 200
    finally:
        output = stop(process)
    assert process.returncode == 0, output


def test_invalid_configuration_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [BILLING, "serve"],
        env=environment(tmp_path, BILLING_GRACE_PERIOD="two days"),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("configuration error: BILLING_GRACE_PERIOD:")


def test_token_command_signs_with_the_secret_kept_in_the_data_dir(tmp_path: Path) -> None:
    import jwt

    user = "7d4bb2a8-8a0c-4bd1-8d35-7e3f1b7ef0b5"
    result = subprocess.run(
        [BILLING, "token", "--user", user, "--role", "admin", "--role", "service"],
        env=environment(tmp_path),
        capture_output=True,
        timeout=60,
        check=True,
    )
    secret = (tmp_path / "jwt-secret").read_text().strip()
    claims = jwt.decode(result.stdout.decode().strip(), secret, algorithms=["HS256"])
    assert claims["sub"] == user
    assert claims["roles"] == ["admin", "service"]

    bad = subprocess.run(
        [BILLING, "token", "--user", "not-a-uuid"], env=environment(tmp_path), capture_output=True
    )
    assert bad.returncode == 2

"""Bad input never gives a 500: Schemathesis fuzzes every operation of /openapi.json
against `billing serve` as a real process (viewer, admin and service roles in one token)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.test_serve_process import BILLING, environment, free_port, wait_until_healthy

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
VIEWER = "6f1c1b9e-2a8e-4c39-9a57-1b1d1f0b7a10"


def test_no_operation_answers_a_server_error(database_url: str, tmp_path: Path) -> None:
    env = environment(tmp_path, BILLING_DATABASE_URL=database_url)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    subprocess.run([BILLING, "demo-data"], env=env, check=True, capture_output=True, timeout=120)
    token = subprocess.run(
        [BILLING, "token", "--user", VIEWER, "--role", "admin", "--role", "service"],
        env=env, check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    # The server logs every request: to a file, since a pipe nobody reads would fill up
    # and block it.
    log_path = tmp_path / "serve.log"
    server = subprocess.Popen(
        [BILLING, "serve", "--port", str(port), "--no-worker"],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_healthy(base_url, server)
        fuzz = subprocess.run(
            [
                SCHEMATHESIS, "run", f"{base_url}/openapi.json",
                "--header", f"Authorization: Bearer {token}",
                "--checks", "not_a_server_error",
                "--max-examples", "25",
                "--seed", "20261127",
            ],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    log = log_path.read_text()
    assert fuzz.returncode == 0, fuzz.stdout[-4000:] + log[-4000:]
    assert "Traceback" not in log
    assert "passed" in fuzz.stdout

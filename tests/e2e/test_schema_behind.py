"""`billing serve` and `billing worker` refuse to start on a server database whose schema is
behind, with one line that says to run `billing migrate` (exit 2, as configuration errors)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from billing.migrations import upgrade
from tests.conftest import create_database, drop_database
from tests.e2e.test_serve_process import BILLING, environment, free_port, wait_until_healthy


@pytest.fixture
def unmigrated_url(server_url: str) -> Iterator[str]:
    url = create_database(server_url, prefix="billing_behind")
    yield url
    drop_database(server_url, url)


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BILLING, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [["serve", "--port", str(free_port())], ["worker"]])
def test_a_schema_behind_stops_start_up_naming_billing_migrate(
    command: list[str], unmigrated_url: str, tmp_path: Path
) -> None:
    env = environment(tmp_path, BILLING_DATABASE_URL=unmigrated_url)
    for schema in ("never migrated", "at 0004"):
        if schema == "at 0004":
            upgrade(unmigrated_url, "0004")
        result = run(command, env)
        assert result.returncode == 2, result.stdout + result.stderr
        [line] = result.stderr.strip().splitlines()
        assert "schema is behind" in line
        assert schema in line
        assert "run `billing migrate`" in line

    # Once migrated, the same command starts, works, and stops cleanly on SIGTERM.
    assert run(["migrate"], env).returncode == 0
    log = tmp_path / "output.log"
    process = subprocess.Popen(
        [BILLING, *command], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        if command[0] == "serve":
            base_url = f"http://127.0.0.1:{command[2]}"
            wait_until_healthy(base_url, process)
            assert httpx.get(f"{base_url}/ready", timeout=5).status_code == 200
        else:
            deadline = time.monotonic() + 60
            while "job sync-roles" not in log.read_text():  # its first run, at start
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert process.returncode == 0, log.read_text()
    assert "schema is behind" not in log.read_text()


def test_serve_on_an_unreachable_database_says_so_in_one_line(tmp_path: Path) -> None:
    env = environment(tmp_path, BILLING_DATABASE_URL=f"postgresql://127.0.0.1:{free_port()}/x")
    result = run(["serve", "--port", str(free_port())], env)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("cannot reach the database: OperationalError:")

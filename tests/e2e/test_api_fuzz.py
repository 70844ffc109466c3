"""The API keeps the promises of its OpenAPI document: Schemathesis fuzzes every operation of
/openapi.json against `billing serve` as a real process, as a viewer and as an admin, and
checks that no answer is a server error and that each answer's status, media type and body
are the ones the document lists for that operation (every error as problem+json with its
codes)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_serve_process import BILLING, environment, free_port, wait_until_healthy

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
VIEWER = "6f1c1b9e-2a8e-4c39-9a57-1b1d1f0b7a10"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)
# Bounded for CI: a fixed seed and a few examples per operation (the coverage phase adds
# the boundary values of each parameter on top).
MAX_EXAMPLES = "10"
SEED = "20261127"


@pytest.mark.parametrize(
    "roles",
    [
        pytest.param([], id="viewer"),  # admin operations answer 403, as documented
        pytest.param(["admin", "service"], id="admin"),  # service: the entitlements route
    ],
)
def test_every_answer_is_the_one_the_openapi_document_lists(
    roles: list[str], database_url: str, tmp_path: Path
) -> None:
    env = environment(tmp_path, BILLING_DATABASE_URL=database_url)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    subprocess.run([BILLING, "demo-data"], env=env, check=True, capture_output=True, timeout=120)
    role_options = [option for role in roles for option in ("--role", role)]
    token = subprocess.run(
        [BILLING, "token", "--user", VIEWER, *role_options],
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
                "--checks", CHECKS,
                "--max-examples", MAX_EXAMPLES,
                "--seed", SEED,
                # One worker: Hypothesis in parallel threads trips CPython 3.11's ast.parse
                # ("AST constructor recursion depth mismatch") and Schemathesis reports it.
                "--workers", "1",
                "--request-timeout", "30",
            ],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    log = log_path.read_text()
    assert fuzz.returncode == 0, fuzz.stdout[-12000:] + log[-3000:]
    assert "Traceback" not in log
    # Every operation of the document was tested, none left out.
    tested = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", fuzz.stdout)
    assert tested is not None, fuzz.stdout[-3000:]
    selected, total, done = tested.groups()
    assert selected == total == done and int(total) >= 30, tested.group(0)

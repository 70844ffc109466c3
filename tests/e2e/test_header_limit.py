"""`billing serve` as a real process: oversized request headers are refused by the HTTP
server and never reach the app, while a viewer's ordinary multi-KB JWT works; an oversized
body is a 413 over a real socket too."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from billing.auth import issue_token
from billing.config import Settings
from billing.http_limits import MAX_BODY_BYTES, MAX_HEADER_BYTES
from tests.e2e.test_serve_process import BILLING, environment, free_port, wait_until_healthy

SECRET = "header-limit-test-secret-header-limit-test"


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `billing serve` on the test session's (migrated) database; its base URL."""
    port = free_port()
    data_dir = tmp_path_factory.mktemp("header-limit")
    log_path = data_dir / "serve.log"  # a pipe nobody reads would fill up and block it
    process = subprocess.Popen(
        [BILLING, "serve", "--port", str(port), "--no-worker"],
        env=environment(data_dir, BILLING_DATABASE_URL=database_url, BILLING_JWT_SECRET=SECRET),
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base_url, process)
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    log = log_path.read_text()
    assert process.returncode == 0, log[-4000:]
    assert "Traceback" not in log, log[-4000:]


def raw_get(base_url: str, path: str, header_value_size: int) -> bytes:
    """A GET whose one header holds ``header_value_size`` bytes, over a plain socket (HTTP
    clients refuse to send such a thing); what the server answered, or b"" if it just closed
    the connection."""
    host, port = base_url.removeprefix("http://").split(":")
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nX-Padding: ".encode()
        + b"a" * header_value_size
        + b"\r\n\r\n"
    )
    answer = b""
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        # The server may stop reading; what it said, if anything, is still there to read.
        with contextlib.suppress(OSError):
            connection.sendall(request)
        with contextlib.suppress(OSError):
            while chunk := connection.recv(65536):
                answer += chunk
    return answer


def requests_counted(base_url: str, route: str) -> float:
    """What the app itself counted (Prometheus) for GET ``route``, whatever the status."""
    metrics = httpx.get(f"{base_url}/metrics", timeout=10).text
    labels = rf'method="GET",route="{re.escape(route)}",status="\d+"'
    pattern = rf"billing_http_requests_total{{{labels}}} (\S+)"
    return sum(float(value) for value in re.findall(pattern, metrics))


def test_a_4_mb_header_is_refused_by_the_server_and_never_reaches_the_app(served: str) -> None:
    before = requests_counted(served, "/health")

    answer = raw_get(served, "/health", 4 * 1024 * 1024)

    status_line = answer.split(b"\r\n", 1)[0]
    assert not status_line.startswith(b"HTTP/1.1 2"), status_line
    if answer:  # a refusal (uvicorn's h11 says 400), never the app's answer
        assert re.match(rb"HTTP/1.1 4\d\d ", status_line), status_line
        assert b'"status":"ok"' not in answer
    assert requests_counted(served, "/health") == before
    # The server is still there for everyone else.
    assert httpx.get(f"{served}/health", timeout=10).status_code == 200


def test_a_half_megabyte_header_is_refused_too(served: str) -> None:
    before = requests_counted(served, "/health")
    # h11 checks the bound while a head is incomplete; one arriving in a single read may pass
    # up to the size of that read, which is why this is several times the bound.
    answer = raw_get(served, "/health", 8 * MAX_HEADER_BYTES)
    assert not answer.startswith(b"HTTP/1.1 2"), answer[:100]
    assert requests_counted(served, "/health") == before


def test_ordinary_headers_and_a_multi_kb_jwt_are_served(served: str, tmp_path: Path) -> None:
    settings = Settings(jwt_secret=SECRET, data_dir=tmp_path)
    roles = [f"role-{number:04d}" for number in range(600)]
    token = issue_token(settings, str(uuid.uuid4()), roles)
    assert len(token) > 8 * 1024
    subscriptions = httpx.get(
        f"{served}/api/v1/subscriptions",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert subscriptions.status_code == 200, subscriptions.text
    assert subscriptions.json() == []

    # Many headers, 48 KiB in all (cookies of other apps on the same domain, tracing, ...).
    headers = {f"X-Extra-{number}": "v" * 1000 for number in range(48)}
    assert httpx.get(f"{served}/health", headers=headers, timeout=10).status_code == 200
    answer = raw_get(served, "/health", 32 * 1024)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]


def test_a_body_over_1_mib_is_413_over_a_real_socket(served: str) -> None:
    body = b"{" + b" " * MAX_BODY_BYTES

    def streamed() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    with httpx.Client(base_url=served, timeout=30) as client:
        for content in (body, streamed()):
            response = client.post(
                "/api/v1/quotes", content=content, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 413, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "payload_too_large"
        # The refused bodies leave the client (and its kept-alive connection) usable.
        assert client.get("/health").status_code == 200

"""What both benchmarks share: a throw-away database on the machine's PostgreSQL, the
machine's description, and medians."""

from __future__ import annotations

import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import psycopg

from billing.db import libpq_url
from billing.migrations import upgrade

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url_from_env() -> str:
    return os.environ.get("BILLING_BENCH_SERVER_URL", DEFAULT_SERVER_URL)


def with_database(server_url: str, name: str) -> str:
    """The same server URL naming another database (keeps ``?host=`` and credentials)."""
    head, _, query = libpq_url(server_url).partition("?")
    base = head.rsplit("/", 1)[0] if head.count("/") > 2 else head
    return f"{base}/{name}" + (f"?{query}" if query else "")


def exit_on_sigterm() -> None:
    """SIGTERM (``kill``, a CI timeout) unwinds like Ctrl-C, so the bench database is
    dropped on the way out."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


@contextmanager
def bench_database(server_url: str) -> Iterator[str]:
    """A fresh ``billing_bench_<random>`` database migrated to head, dropped afterwards
    (also when the bench fails or is interrupted)."""
    name = f"billing_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(server_url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(libpq_url(server_url), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def machine(server_url: str) -> dict[str, str]:
    """What the numbers were measured on: they mean little without it."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
                break
    with psycopg.connect(libpq_url(server_url)) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return {
        "cpu": cpu,
        "nproc": str(os.cpu_count()),
        "memory": f"{memory_kib / 1024**2:.1f} GiB",
        "load average": " ".join(f"{value:.2f}" for value in os.getloadavg()),
        "postgresql": str(row[0]) if row else "?",
        "python": platform.python_version(),
        "code": code_version(),
    }


def code_version() -> str:
    """The commit measured, and whether the working tree differed from it."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    root = Path(__file__).resolve().parent.parent
    head = subprocess.run(  # noqa: S603 - a fixed, read-only git command
        [git, "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
    )
    if head.returncode != 0:
        return "unknown"
    changed = subprocess.run(  # noqa: S603
        [git, "--no-optional-locks", "status", "--porcelain", "--", "src"],
        cwd=root,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return head.stdout.strip() + (" with uncommitted changes in src/" if changed else "")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: a value that was actually measured."""
    ordered = sorted(values)
    rank = min(max(1, math.ceil(fraction * len(ordered))), len(ordered))
    return ordered[rank - 1]

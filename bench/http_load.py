"""HTTP load on a running billing, measured against the database's own limit (issue 15).

On the machine's PostgreSQL (``BILLING_BENCH_SERVER_URL``, default the local server):

1. **pgbench** TPC-B (``pgbench -i -s SCALE``, then ``-c CLIENTS -j THREADS -T SECONDS``) in a
   throw-away database: the baseline, what the same server does with the same client count.
2. A fresh billing database (migrated, demo data), then ``billing serve --workers N
   --no-worker`` and one ``billing worker`` as real processes, and the scenarios driven by
   ``wrk`` (``bench/http_load.lua``) from its own process over loopback, one at a time:

   * ``GET /api/v1/tariffs``; ``POST /api/v1/quotes`` (premium 3 months + WELCOME10, and 12
     months without a code, alternating); ``GET /api/v1/users/{id}/entitlements`` (service
     token, viewers with a subscription);
   * payment confirmation: ``POST /api/v1/payments/{id}/confirm`` on payments that are
     pending at billing and paid at the sandbox (``notify=0``), each confirmed once: the
     re-read at the sandbox (an HTTP call to the same server), settlement, outbox; at full
     speed, then paced at half the rate reached (the p99 target);
   * the webhook path: ``POST /api/v1/webhooks/yookassa`` naming such a payment;
   * full checkout: invoice → payment → pay at the sandbox → confirm, one chain per viewer;
   * a burst: 64 viewers at once starting payments on their open invoices.

   The payments to confirm are made by one checkout through the API, then copied in SQL
   (new ids, a viewer each; the copy is what the API would have written), so that preparing
   thousands costs a second, not minutes.
3. Checks: no 5xx anywhere, no wrk socket error; every confirmed payment is ``succeeded``
   exactly once, with its subscription; exits 1 otherwise.

Writes Markdown (``--markdown``, with ``bench/tried.md`` appended: the profiles and fixes)
and JSON (``--json``). ``--quick`` is the CI smoke variant: same scenarios, short runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import psycopg
from _common import bench_database, code_version, exit_on_sigterm, server_url_from_env
from _common import with_database as database_named
from outbox_throughput import results_section as outbox_section
from stats_at_scale import results_section as stats_section

from billing.auth import issue_token
from billing.config import Settings
from billing.db import create_engine, libpq_url, session_factory, transaction
from billing.demo import create_demo_data

HERE = Path(__file__).resolve().parent
LUA = HERE / "http_load.lua"
BILLING = str(Path(sys.executable).parent / "billing")
SECRET = "bench-secret-that-is-long-enough-for-hs256"  # noqa: S105 - a throw-away database
TOKENS = Settings(jwt_secret=SECRET)


@dataclass(frozen=True)
class Profile:
    clients: int  # concurrent connections, pgbench's and wrk's
    seconds: int  # per scenario
    pgbench_scale: int
    api_workers: int
    load_threads: int  # wrk's and pgbench's threads


FULL = Profile(clients=16, seconds=30, pgbench_scale=16, api_workers=2, load_threads=2)
QUICK = Profile(clients=16, seconds=6, pgbench_scale=16, api_workers=2, load_threads=2)
BURST = 64
TARIFFS_LINE = "GET\t/api/v1/tariffs\t-\t-"  # the catalogue, no token (http_load.lua's format)
# The scale-out runs' scenario names: the same scenario on one API process.
SINGLE = "1 API process: "


@dataclass
class Figure:
    scenario: str
    connections: int
    requests: int
    seconds: float
    per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # 4xx and 5xx answers
    s5xx: int
    socket_errors: int
    exhausted: bool
    chains: int = 0
    think_ms: float = 0.0
    api_cpu_ms: float = 0.0  # API processes' CPU time per request (0: not measured)


# --- the machine -------------------------------------------------------------------------------


def command_output(*command: str) -> str:
    tool = shutil.which(command[0])
    if tool is None:
        return f"{command[0]}: not installed"
    done = subprocess.run([tool, *command[1:]], capture_output=True, text=True)  # noqa: S603
    return (done.stdout or done.stderr).strip()


def describe_machine(server_url: str) -> dict[str, str]:
    lscpu = command_output("lscpu")
    wanted = ("Architecture", "CPU(s)", "Model name", "Thread(s) per core", "Core(s) per")
    with psycopg.connect(libpq_url(server_url)) as connection:
        server = connection.execute("SHOW server_version").fetchone()
        settings = connection.execute(
            "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings"
            " WHERE name IN ('shared_buffers', 'max_connections', 'synchronous_commit',"
            " 'fsync', 'autovacuum', 'work_mem')"
        ).fetchone()
    return {
        "lscpu": "\n".join(line for line in lscpu.splitlines() if line.strip().startswith(wanted)),
        "nproc": command_output("nproc"),
        "free": command_output("free", "-m"),
        "load average": " ".join(f"{value:.2f}" for value in os.getloadavg()),
        "postgresql": f"{server[0] if server else '?'} ({settings[0] if settings else ''})",
        "python": sys.version.split()[0],
        "packages": ", ".join(
            f"{name} {version(name)}"
            for name in ("uvicorn", "fastapi", "sqlalchemy", "psycopg", "pydantic", "pyjwt")
        ),
        "wrk": command_output("wrk", "--version").splitlines()[0],
        "pgbench": command_output("pgbench", "--version"),
        "code": code_version(),
    }


# --- pgbench -----------------------------------------------------------------------------------


def run_pgbench(server_url: str, profile: Profile) -> Figure:
    """TPC-B on a throw-away database: throughput and latency percentiles (from -l logs)."""
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        raise SystemExit("pgbench is missing: apt-get install postgresql-client")
    name = f"billing_pgbench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(server_url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = database_named(server_url, name)
    try:
        subprocess.run(  # noqa: S603
            [pgbench, "-i", "-q", "-s", str(profile.pgbench_scale), url],
            check=True,
            capture_output=True,
        )
        with tempfile.TemporaryDirectory() as logs:
            done = subprocess.run(  # noqa: S603
                [
                    pgbench,
                    *("-c", str(profile.clients), "-j", str(profile.load_threads)),
                    *("-T", str(profile.seconds), "-l", "--log-prefix", f"{logs}/tx", url),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            latencies = sorted(
                int(line.split()[2])
                for log in Path(logs).iterdir()
                for line in log.read_text().splitlines()
            )
    finally:
        with psycopg.connect(libpq_url(server_url), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    assert tps is not None, done.stdout
    return Figure(
        scenario=f"pgbench TPC-B (scale {profile.pgbench_scale})",
        connections=profile.clients,
        requests=len(latencies),
        seconds=profile.seconds,
        per_second=float(tps.group(1)),
        p50_ms=latencies[len(latencies) // 2] / 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1000,
        max_ms=latencies[-1] / 1000,
        errors=0,
        s5xx=0,
        socket_errors=0,
        exhausted=False,
    )


# --- billing as real processes -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Billing:
    """``billing serve --workers N --no-worker`` and one ``billing worker``."""

    def __init__(self, database_url: str, workers: int, logs: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {name: value for name, value in os.environ.items() if "BILLING_" not in name}
        self.env |= {
            "BILLING_DATABASE_URL": database_url,
            "BILLING_JWT_SECRET": SECRET,
            "BILLING_DATA_DIR": str(logs),
            # Copied invoices must stay payable for the whole run.
            "BILLING_INVOICE_TTL": "P1D",
        }
        self.workers = workers
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for name, command in (
            ("serve", ["serve", "--port", str(self.port), "--workers", str(self.workers)]),
            ("worker", ["worker"]),
        ):
            with (self.logs / f"{name}.log").open("wb") as log:
                self.processes.append(
                    subprocess.Popen(  # noqa: S603
                        [BILLING, *command, *(["--no-worker"] if name == "serve" else [])],
                        env=self.env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(process.poll() is not None for process in self.processes):
                tails = "\n".join(
                    log.read_text()[-2000:] for log in sorted(self.logs.glob("*.log"))
                )
                raise SystemExit(f"billing exited at start-up:\n{tails}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise SystemExit("billing serve did not become ready in time")

    def api_pids(self) -> list[int]:
        """uvicorn's API processes: the children of ``billing serve`` that it spawned, or,
        with one worker, ``billing serve`` itself (uvicorn then serves in its process)."""
        parent = str(self.processes[0].pid)
        found = []
        for entry in Path("/proc").iterdir():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                command = (entry / "cmdline").read_bytes()
            except (OSError, IndexError):
                continue
            if stat[1] == parent and b"spawn_main" in command:
                found.append(int(entry.name))
        return found or [self.processes[0].pid]

    def api_cpu_seconds(self) -> float:
        """CPU time (user + system) the API processes have used so far: per request, a
        figure that other load on a shared machine disturbs far less than throughput."""
        ticks = 0
        for pid in self.api_pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


# --- data --------------------------------------------------------------------------------------


def viewer_token(user_id: uuid.UUID) -> str:
    return issue_token(TOKENS, str(user_id), [], email=f"{user_id}@example.com")


async def seed(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            await create_demo_data(session, now=datetime.now(UTC), currency="RUB")
    finally:
        await engine.dispose()


def template_checkout(base_url: str, tariff_id: str) -> tuple[str, str]:
    """One viewer's invoice and payment through the API, paid at the sandbox without a
    notification: the pending payment that the copies are made from."""
    user = uuid.uuid4()
    headers = {"Authorization": f"Bearer {viewer_token(user)}"}
    with httpx.Client(base_url=base_url, timeout=30) as http:
        invoice = http.post(
            "/api/v1/invoices", json={"tariff_id": tariff_id, "months": 1}, headers=headers
        )
        assert invoice.status_code == 201, invoice.text
        payment = http.post(
            f"/api/v1/invoices/{invoice.json()['id']}/payments", json={}, headers=headers
        )
        assert payment.status_code == 201, payment.text
        sandbox_id = payment.json()["confirmation_url"].rsplit("/", 1)[1]
        paid = http.post(f"/sandbox/checkout/{sandbox_id}", data={"action": "pay", "notify": "0"})
        assert paid.status_code < 400, paid.text
    return str(invoice.json()["id"]), str(payment.json()["id"])


def columns(connection: psycopg.Connection[Any], table: str) -> list[str]:
    rows = connection.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
        " AND table_schema = 'public' ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [str(row[0]) for row in rows]


def copy_rows(
    connection: psycopg.Connection[Any],
    table: str,
    template_where: str,
    replace: dict[str, str],
    params: dict[str, Any],
) -> None:
    """Copy the template row of ``table`` once per row of ``clones``, with ``replace``'s
    columns taken from the clone (``c``) instead of the template (``t``)."""
    names = columns(connection, table)
    chosen = ", ".join(replace.get(name, f't."{name}"') for name in names)
    quoted = ", ".join(f'"{name}"' for name in names)
    connection.execute(
        f"INSERT INTO {table} ({quoted}) SELECT {chosen} FROM {table} t, clones c"  # noqa: S608
        f" WHERE {template_where}",
        params,
    )


def copy_checkouts(
    database_url: str, invoice_id: str, payment_id: str, count: int, with_payment: bool
) -> list[tuple[uuid.UUID, uuid.UUID, str, uuid.UUID]]:
    """``count`` copies of the template checkout, each with its own viewer: (invoice,
    payment, sandbox payment, viewer); only open invoices when not ``with_payment``."""
    params = {"invoice": invoice_id, "payment": payment_id}
    with psycopg.connect(libpq_url(database_url)) as connection:
        connection.execute(
            "CREATE TEMP TABLE clones ON COMMIT DROP AS SELECT gen_random_uuid() AS invoice_id,"
            " gen_random_uuid() AS payment_id, gen_random_uuid()::text AS sandbox_id,"
            " gen_random_uuid() AS user_id FROM generate_series(1, %(count)s)",
            {"count": count},
        )
        copy_rows(
            connection,
            "invoices",
            "t.id = %(invoice)s",
            {"id": "c.invoice_id", "user_id": "c.user_id"},
            params,
        )
        if with_payment:
            copy_rows(
                connection,
                "sandbox_payments",
                "t.id = (SELECT provider_payment_id FROM payments WHERE id = %(payment)s)",
                {
                    "id": "c.sandbox_id",
                    "idempotence_key": "gen_random_uuid()::text",
                    "metadata": "jsonb_set(t.metadata, '{billing_payment_id}',"
                    " to_jsonb(c.payment_id::text))",
                },
                params,
            )
            copy_rows(
                connection,
                "payments",
                "t.id = %(payment)s",
                {
                    "id": "c.payment_id",
                    "invoice_id": "c.invoice_id",
                    "user_id": "c.user_id",
                    "provider_payment_id": "c.sandbox_id",
                    "idempotence_key": "gen_random_uuid()",
                    "confirmation_url": "regexp_replace(t.confirmation_url, '[^/]+$',"
                    " c.sandbox_id)",
                },
                params,
            )
        rows = connection.execute(
            "SELECT invoice_id, payment_id, sandbox_id, user_id FROM clones"
        ).fetchall()
        connection.execute("ANALYZE invoices, payments, sandbox_payments")
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def scalar(database_url: str, query: str, *params: object) -> Any:
    with psycopg.connect(libpq_url(database_url)) as connection:
        row = connection.execute(query, params).fetchone()
    return row[0] if row else None


# --- wrk ---------------------------------------------------------------------------------------


def write_lines(directory: Path, name: str, lines: list[str]) -> Path:
    path = directory / f"{name}.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_wrk(
    scenario: str,
    base_url: str,
    script_args: list[str],
    *,
    connections: int,
    threads: int,
    seconds: int,
    think_ms: float = 0.0,
) -> Figure:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    threads = min(threads, connections)
    mode, data, *rest = script_args
    lua_args = [mode, data, str(threads), *rest, f"{think_ms:.3f}"]
    done = subprocess.run(  # noqa: S603
        [
            wrk,
            *("-t", str(threads), "-c", str(connections), "-d", f"{seconds}s"),
            *("--timeout", "10s", "-s", str(LUA), base_url, "--", *lua_args),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    marker = [line for line in done.stdout.splitlines() if line.startswith("BENCH-JSON ")]
    if done.returncode != 0 or not marker:
        raise SystemExit(f"wrk failed for {scenario}: {done.stdout}\n{done.stderr}")
    raw = json.loads(marker[-1].removeprefix("BENCH-JSON "))
    elapsed = raw["duration_us"] / 1e6
    return Figure(
        scenario=scenario,
        connections=connections,
        requests=raw["requests"],
        seconds=round(elapsed, 2),
        per_second=raw["requests"] / elapsed,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=raw["s4xx"] + raw["s5xx"],  # the sandbox's pay step answers 303
        s5xx=raw["s5xx"],
        socket_errors=raw["connect_errors"]
        + raw["read_errors"]
        + raw["write_errors"]
        + raw["timeouts"],
        exhausted=bool(raw["exhausted"]),
        chains=raw["chains"],
        think_ms=think_ms,
    )


# --- the run -----------------------------------------------------------------------------------


PROFILED = ("POST /payments/{id}/confirm", "POST /webhooks/yookassa")


def profilers(pids: list[int], seconds: int, directory: Path, name: str) -> list[Any]:
    """py-spy sampling each API process during a scenario, as collapsed stacks (``-f raw``:
    one line per stack with its sample count; flamegraph.pl or speedscope read them)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    slug = re.sub(r"[^a-z]+", "-", name.lower()).strip("-")
    directory.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(  # noqa: S603
            [
                *(spy, "record", "--nonblocking", "-r", "200", "-d", str(seconds), "-f", "raw"),
                *("-o", str(directory / f"{slug}-{pid}.txt"), "--pid", str(pid)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]


def bench(
    server_url: str, profile: Profile, capacity: int, profile_dir: Path | None = None
) -> dict[str, Any]:
    """``capacity``: the most requests per second a one-shot scenario (confirm, webhook,
    checkout, burst) is prepared for; past it a thread runs out and the figure says so."""
    started = time.monotonic()
    figures: list[Figure] = []
    checks: dict[str, Any] = {}
    pgbench = run_pgbench(server_url, profile)
    print(f"pgbench: {pgbench.per_second:.0f} tps, p99 {pgbench.p99_ms:.1f} ms", flush=True)
    with bench_database(server_url) as url, tempfile.TemporaryDirectory() as work:
        directory = Path(work)
        asyncio.run(seed(url))
        billing = Billing(url, profile.api_workers, directory)
        billing.start()
        try:
            tariff = str(scalar(url, "SELECT id FROM tariffs WHERE code = 'premium'"))
            invoice_id, payment_id = template_checkout(billing.url, tariff)
            items = capacity * profile.seconds
            confirm = copy_checkouts(url, invoice_id, payment_id, items, with_payment=True)
            paced = copy_checkouts(url, invoice_id, payment_id, items, with_payment=True)
            hooks = copy_checkouts(url, invoice_id, payment_id, items, with_payment=True)
            burst = copy_checkouts(url, invoice_id, payment_id, BURST * 40, with_payment=False)
            single = copy_checkouts(url, invoice_id, payment_id, items, with_payment=True)

            def run(name: str, args: list[str], **options: Any) -> Figure:
                options.setdefault("connections", profile.clients)
                options.setdefault("threads", profile.load_threads)
                options.setdefault("seconds", profile.seconds)
                spies = []
                if profile_dir is not None and name in PROFILED:
                    spies = profilers(billing.api_pids(), options["seconds"], profile_dir, name)
                cpu_before = billing.api_cpu_seconds()
                figure = run_wrk(name, billing.url, args, **options)
                figure.api_cpu_ms = round(
                    (billing.api_cpu_seconds() - cpu_before) * 1000 / max(1, figure.requests), 1
                )
                for spy in spies:
                    spy.wait(timeout=60)
                figures.append(figure)
                print(
                    f"{name}: {figure.per_second:.0f}/s p50 {figure.p50_ms:.1f} ms"
                    f" p99 {figure.p99_ms:.1f} ms 4xx/5xx {figure.errors}"
                    f" API CPU {figure.api_cpu_ms:.1f} ms/request"
                    + (" (ran out of prepared items)" if figure.exhausted else ""),
                    flush=True,
                )
                return figure

            viewers = [viewer_token(uuid.uuid4()) for _ in range(64)]
            service = issue_token(TOKENS, str(uuid.uuid4()), ["service"])
            quotes = [
                "\t".join(
                    [
                        "POST",
                        "/api/v1/quotes",
                        token,
                        json.dumps(body, separators=(",", ":")),
                    ]
                )
                for token in viewers
                for body in (
                    {"tariff_id": tariff, "months": 3, "promo_code": "WELCOME10"},
                    {"tariff_id": tariff, "months": 12},
                )
            ]
            tariffs = ["requests", str(write_lines(directory, "tariffs", [TARIFFS_LINE])), "1"]
            run("warm-up GET /tariffs", tariffs, seconds=2)
            figures.pop()
            run("GET /api/v1/tariffs", tariffs)
            run(
                "POST /api/v1/quotes",
                ["requests", str(write_lines(directory, "quotes", quotes)), "1"],
            )

            def confirmations(rows: list[tuple[uuid.UUID, uuid.UUID, str, uuid.UUID]]) -> Path:
                return write_lines(
                    directory,
                    f"confirm-{uuid.uuid4().hex[:6]}",
                    [
                        f"POST\t/api/v1/payments/{payment}/confirm\t{viewer_token(user)}\t-"
                        for _, payment, _, user in rows
                    ],
                )

            full = run(
                "POST /payments/{id}/confirm", ["requests", str(confirmations(confirm)), "0"]
            )
            # At most half the rate reached, paced per connection: pauses of clients /
            # (rate / 2) seconds on average (exponential: a Poisson stream, see the Lua
            # script) before each request, plus the request's own time.
            think = profile.clients * 1000 / (full.per_second / 2)
            run(
                "POST /payments/{id}/confirm at half rate",
                ["requests", str(confirmations(paced)), "0"],
                think_ms=think,
            )
            webhook_lines = [
                "POST\t/api/v1/webhooks/yookassa\t-\t"
                + json.dumps(
                    {
                        "type": "notification",
                        "event": "payment.succeeded",
                        "object": {"id": sandbox, "status": "succeeded"},
                    },
                    separators=(",", ":"),
                )
                for _, _, sandbox, _ in hooks
            ]
            run(
                "POST /webhooks/yookassa",
                ["requests", str(write_lines(directory, "hooks", webhook_lines)), "0"],
            )
            checkout_viewers = [viewer_token(uuid.uuid4()) for _ in range(items // 4 + 64)]
            run(
                "checkout chain (invoice, payment, pay, confirm)",
                ["checkout", str(write_lines(directory, "viewers", checkout_viewers)), tariff],
                threads=profile.clients,
            )
            entitled = [
                f"GET\t/api/v1/users/{user}/entitlements\t{service}\t-"
                for _, _, _, user in confirm[:1000]
            ]
            run(
                "GET /api/v1/users/{id}/entitlements",
                ["requests", str(write_lines(directory, "entitled", entitled)), "1"],
            )
            starts = [
                f"POST\t/api/v1/invoices/{invoice}/payments\t{viewer_token(user)}\t{{}}"
                for invoice, _, _, user in burst
            ]
            run(
                f"burst: {BURST} viewers starting payments",
                ["requests", str(write_lines(directory, "burst", starts)), "0"],
                connections=BURST,
                threads=profile.load_threads,
                seconds=max(5, profile.seconds // 3),
            )

            if profile.api_workers > 1:
                # Scale-out (issue 15, "throughput grows"): the same confirmations and reads
                # on one API process, against the figures above on api_workers of them.
                billing.stop()
                (directory / "one").mkdir()
                billing = Billing(url, 1, directory / "one")
                billing.start()
                run(
                    SINGLE + "POST /payments/{id}/confirm",
                    ["requests", str(confirmations(single)), "0"],
                )
                run(SINGLE + "GET /api/v1/tariffs", tariffs)

            confirmed_ids = [str(payment) for _, payment, _, _ in confirm + paced + hooks + single]
            checks["payments settled twice"] = scalar(
                url,
                "SELECT count(*) FROM (SELECT invoice_id FROM payments WHERE status ="
                " 'succeeded' GROUP BY invoice_id HAVING count(*) > 1) twice",
            )
            checks["prepared payments now succeeded"] = scalar(
                url,
                "SELECT count(*) FROM payments WHERE status = 'succeeded' AND id = ANY(%s)",
                confirmed_ids,
            )
            checks["confirm/webhook answers 200"] = sum(
                figure.requests - figure.errors - (1 if figure.exhausted else 0)
                for figure in figures
                if figure.scenario.removeprefix(SINGLE).startswith(
                    ("POST /payments", "POST /webhooks")
                )
            )
            checks["succeeded payments without a subscription"] = scalar(
                url,
                "SELECT count(*) FROM payments p WHERE p.status = 'succeeded' AND NOT EXISTS"
                " (SELECT 1 FROM subscriptions s WHERE s.user_id = p.user_id)",
            )
        finally:
            billing.stop()
    return {
        "profile": asdict(profile),
        "pgbench": asdict(pgbench),
        "figures": [asdict(figure) for figure in figures],
        "checks": checks,
        "total_seconds": round(time.monotonic() - started, 1),
    }


def failures(outcome: dict[str, Any]) -> list[str]:
    found = []
    for figure in outcome["figures"]:
        if figure["s5xx"] or figure["socket_errors"]:
            found.append(
                f"{figure['scenario']}: {figure['s5xx']} 5xx,"
                f" {figure['socket_errors']} socket errors"
            )
        scenario = figure["scenario"].removeprefix(SINGLE)
        one_shot = scenario.startswith(("POST /payments", "POST /webhooks", "burst"))
        if one_shot and figure["errors"] - (1 if figure["exhausted"] else 0) > 0:
            found.append(f"{figure['scenario']}: {figure['errors']} answers 4xx/5xx")
    checks = outcome["checks"]
    if checks["payments settled twice"]:
        found.append(f"{checks['payments settled twice']} invoices paid twice")
    if checks["succeeded payments without a subscription"]:
        found.append("succeeded payments without a subscription")
    if checks["prepared payments now succeeded"] < checks["confirm/webhook answers 200"]:
        found.append("fewer payments succeeded than confirmations answered 200")
    return found


# --- Markdown ----------------------------------------------------------------------------------

TARGETS = {
    "POST /payments/{id}/confirm": "≥ 0.20 × pgbench",
    "POST /payments/{id}/confirm at half rate": "p99 ≤ 50 ms",
    "POST /webhooks/yookassa": "≥ 0.20 × pgbench",
    "GET /api/v1/tariffs": "≥ 10 × confirmation",
    "GET /api/v1/users/{id}/entitlements": "≥ 10 × confirmation",
}


def claim_section() -> list[str]:
    """``claim_cost.py``'s figures: one claim's time as a backlog is worked through."""
    path = HERE / "results" / "claim_cost.json"
    if not path.exists():
        return []
    recorded = json.loads(path.read_text())
    lines = [
        "",
        "## Scheduler claims: one batch's claim, before and after migration 0009"
        " (bench/claim_cost.py)",
        "",
        f"Measured on {recorded['machine'].get('code', '?')}; median of the repeats, ms per"
        " 500-row claim, with N due rows of which a share is already handled."
        " `to-expired`'s old plan went wrong when the statistics held few `grace` rows among"
        " many others (bench/README.md, finding 3), which this fill (all rows `grace`) does not"
        " reproduce; `tests/integration/test_claim_plans.py` checks that case (300 `grace` rows"
        " of 40 000).",
        "",
        "| claim | N | handled | before ms | after ms | plan before | plan after |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    rows: dict[tuple[str, int, float], dict[str, Any]] = {}
    for result in recorded["results"]:
        rows.setdefault((result["claim"], result["n"], result["handled"]), {})[
            result["variant"]
        ] = result
    for (claim, n, handled), pair in rows.items():
        before, after = pair["before"], pair["after"]

        def plan(result: dict[str, Any]) -> str:
            return result["plan"] + (" + Sort" if result["sorted"] else "")

        lines.append(
            f"| {claim} | {n} | {handled:.0%} | {before['ms']:.2f} | {after['ms']:.2f} |"
            f" {plan(before)} | {plan(after)} |"
        )
    return lines


# The scheduler's recorded runs shown in results.md: make bench's own, then the 1M run and
# the per-row code before the set-based batches (commands: bench/README.md).
SCHEDULER_FILES = {
    "jobs_at_scale.json": ("make bench", None),
    "jobs_set_based_1m.json": ("1M, once", None),
    # Measured from a copy of 829ea00's src/ on PYTHONPATH (the file names the checkout's).
    "jobs_set_based_before_rerun.json": ("before: one ORM object per row", "829ea00"),
}


def scheduler_section() -> list[str]:
    """The subscription jobs against one hand-written set-based SQL doing the same work on
    the same fill (``jobs_at_scale.py``: the issue's "≤ 3 ×"), with the code each was
    measured on."""
    lines = [
        "",
        "## Scheduler jobs against one set-based SQL (bench/jobs_at_scale.py)",
        "",
        "Each job run after run until nothing is left, in a fresh process; then the same fill"
        " again and one hand-written `WITH moved AS (UPDATE … RETURNING …) INSERT INTO"
        " outbox_events SELECT …` per pass doing the same work (target: the job ≤ 3 × that)."
        " `expire-subscriptions` is both passes (active → grace → expired, two events per row).",
        "",
        "| run | code | load | job | N | job s | set-based SQL s | job ÷ SQL | rows/s |"
        " rows/s ÷ at 10k | CPU µs/row | peak RSS MiB |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    shown = False
    for name, (label, code) in SCHEDULER_FILES.items():
        path = HERE / "results" / name
        if not path.exists():
            continue
        recorded = json.loads(path.read_text())
        machine = recorded.get("machine", {})
        at_10k = {r["job"]: r["rows_per_s"] for r in recorded["results"] if r["n"] == 10_000}
        for result in recorded["results"]:
            if result.get("baseline_seconds") is None:
                continue
            shown = True
            base = at_10k.get(result["job"])
            flat = f"{result['rows_per_s'] / base:.2f}" if base else ""
            lines.append(
                f"| {label} | {code or machine.get('code', '?')} |"
                f" {machine.get('load average', '?')} |"
                f" {result['job']} | {result['n']} | {result['seconds']:.1f} |"
                f" {result['baseline_seconds']:.1f} | **{result['job_over_baseline']:.2f}** |"
                f" {result['rows_per_s']:.0f} | {flat} | {result.get('cpu_us_per_row') or 0:.0f} |"
                f" {result['rss_peak_mib']:.1f} |"
            )
    return lines if shown else []


def scale_out_lines(outcome: dict[str, Any]) -> list[str]:
    """What the API processes beyond the first add: each scenario run on one process too."""
    by_name = {figure["scenario"]: figure for figure in outcome["figures"]}
    workers = outcome["profile"]["api_workers"]
    found = []
    for name, one in by_name.items():
        if name.startswith(SINGLE) and name.removeprefix(SINGLE) in by_name:
            many = by_name[name.removeprefix(SINGLE)]
            found.append(
                f"`{name.removeprefix(SINGLE)}` {one['per_second']:.0f}/s on one process →"
                f" {many['per_second']:.0f}/s on {workers}"
                f" (× {many['per_second'] / max(one['per_second'], 0.1):.2f})"
            )
    if not found:
        return []
    return [
        "",
        "**Scale-out** (the same scenario on one API process, then on "
        f"{workers}, one database, one machine of {os.cpu_count()} CPUs shared with"
        " PostgreSQL and wrk): " + "; ".join(found) + ".",
    ]


def markdown(outcome: dict[str, Any], about: dict[str, str], command: str, quick: bool) -> str:
    pgbench = outcome["pgbench"]
    finished = outcome.get("finished_at") or f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    confirm = next(
        (f for f in outcome["figures"] if f["scenario"] == "POST /payments/{id}/confirm"), None
    )
    lines = [
        "# HTTP load against the database's own limit" + (" (quick run)" if quick else ""),
        "",
        f"Produced by `{command}` on {finished} UTC in"
        f" {outcome['total_seconds']:.0f} s (method: `bench/http_load.py`'s docstring;"
        " the scheduler's figures: `bench/README.md`).",
        "",
        f"{outcome['profile']['clients']} concurrent connections for pgbench and for billing;"
        f" `billing serve --workers {outcome['profile']['api_workers']} --no-worker` and one"
        f" `billing worker`; wrk with {outcome['profile']['load_threads']} threads;"
        f" {outcome['profile']['seconds']} s per scenario. The load tool, the API processes,"
        " the worker and PostgreSQL share this machine's CPUs.",
        "",
        "| scenario | connections | requests | per second | p50 ms | p99 ms | max ms |"
        " 4xx+5xx | 5xx | API CPU ms/request | ratio to pgbench | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    rows = [pgbench, *outcome["figures"]]
    for figure in rows:
        rate = figure["per_second"]
        if figure["chains"]:
            rate_text = f"{rate:.0f} req ({figure['chains'] / figure['seconds']:.1f} chains)"
            ratio = f"{figure['chains'] / figure['seconds'] / pgbench['per_second']:.3f} (chains)"
        else:
            rate_text = f"{rate:.0f}" + (" (ran out: at least)" if figure["exhausted"] else "")
            ratio = f"{rate / pgbench['per_second']:.3f}"
        if figure["think_ms"]:
            rate_text += f" (paced, {figure['think_ms']:.0f} ms mean pause)"
        target = TARGETS.get(figure["scenario"], "")
        if target.startswith("≥ 10") and confirm:
            target += f" ({rate / confirm['per_second']:.1f}×)"
        lines.append(
            f"| {figure['scenario']} | {figure['connections']} | {figure['requests']} |"
            f" {rate_text} | {figure['p50_ms']:.1f} | {figure['p99_ms']:.1f} |"
            f" {figure['max_ms']:.1f} | {figure['errors']} | {figure['s5xx']} |"
            f" {figure['api_cpu_ms'] or '–'} | {ratio} |"
            f" {target} |"
        )
    half = next((f for f in outcome["figures"] if f["scenario"].endswith("at half rate")), None)
    if confirm and half:
        ratio = confirm["per_second"] / pgbench["per_second"]
        lines += [
            "",
            f"**Headline: payment confirmation {confirm['per_second']:.0f}/s = {ratio:.3f} ×"
            f" pgbench's {pgbench['per_second']:.0f} tps (target 0.20: "
            + ("met" if ratio >= 0.2 else "not met")
            + f"); p99 {half['p99_ms']:.0f} ms at {half['per_second']:.0f}/s (target ≤ 50 ms"
            " at half the rate: "
            + ("met" if half["p99_ms"] <= 50 else "not met")
            + ').** The API processes\' CPU is the limit: see "What was tried" below.',
        ]
    lines += scale_out_lines(outcome)
    lines += ["", "Checks after the run:", ""]
    lines += [f"- {name}: {value}" for name, value in outcome["checks"].items()]
    lines += ["", "## Machine", ""]
    lines += [f"- **{name}**: {value}" for name, value in about.items() if "\n" not in value]
    for name, value in about.items():
        if "\n" in value:
            lines += ["", f"`{name}`:", "", "```", value, "```"]
    lines += claim_section()
    lines += scheduler_section()
    lines += stats_section()
    lines += outbox_section()
    tried = HERE / "tried.md"
    if tried.exists():
        lines += ["", tried.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-url", default=server_url_from_env())
    parser.add_argument("--quick", action="store_true", help="the CI smoke run (≈ 1.5 min)")
    parser.add_argument("--seconds", type=int, help="per scenario (default 30, quick 6)")
    parser.add_argument("--clients", type=int, help="connections (default 16)")
    parser.add_argument("--api-workers", type=int, help="API processes (default 2)")
    parser.add_argument(
        "--capacity", type=int, default=800, help="requests/s a one-shot scenario is prepared for"
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy the API processes during confirm and webhook"
    )
    parser.add_argument("--markdown", type=Path, help="write the results here")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument(
        "--render", type=Path, help="only write --markdown again from this run's --json"
    )
    args = parser.parse_args()
    if args.render:
        outcome = json.loads(args.render.read_text())
        args.markdown.write_text(
            markdown(
                outcome,
                outcome["machine"],
                outcome.get("command", f"python bench/http_load.py --json {args.render}"),
                outcome.get("quick", False),
            )
        )
        return
    profile = QUICK if args.quick else FULL
    overrides = {
        "seconds": args.seconds,
        "clients": args.clients,
        "api_workers": args.api_workers,
    }
    profile = Profile(**asdict(profile) | {k: v for k, v in overrides.items() if v})
    about = describe_machine(args.server_url)
    outcome = bench(args.server_url, profile, args.capacity, args.profile)
    outcome["machine"] = about
    command = "python bench/http_load.py " + " ".join(sys.argv[1:])
    outcome["command"], outcome["quick"] = command, args.quick
    outcome["finished_at"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(outcome, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(outcome, about, command, args.quick))
    problems = failures(outcome)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(1)
    print(f"OK in {outcome['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()

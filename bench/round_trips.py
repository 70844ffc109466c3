"""Round trips and CPU per request of the hot paths, counted in-process: figures that the
machine's other load does not change (unlike throughput), for before/after comparisons.

The app from ``create_app`` on a fresh bench database, its outgoing calls to the sandbox
routed back into it in-process (as the tests do), driven one request at a time by
``httpx.ASGITransport``. For each scenario, ``--requests`` requests (each on a payment
of its own, copied as in ``http_load.py``), and per request: the SQL statements sent (by
kind), the pings of pooled connections, the transactions (a BEGIN and a COMMIT or ROLLBACK
each), their sum as round trips to PostgreSQL, and the
process's CPU time (median). Every answer must be 200 and the payment ``succeeded``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from _common import bench_database, exit_on_sigterm, server_url_from_env
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from http_load import SECRET, copy_checkouts, seed, viewer_token
from sqlalchemy import event

from billing.app import create_app
from billing.config import Settings

PUBLIC = "http://billing.bench"


class Loopback(httpx.AsyncBaseTransport):
    """The app's outgoing calls (to the sandbox at its own public URL) back into the app."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert self.app is not None
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)


class Counts:
    def __init__(self, app: FastAPI) -> None:
        self.statements: Counter[str] = Counter()
        engine = app.state.engine.sync_engine

        @event.listens_for(engine, "before_cursor_execute")
        def statement(conn: Any, cursor: Any, text: str, *args: Any) -> None:
            self.statements[text.split(None, 1)[0].upper()] += 1

        dialect = engine.dialect
        ping = dialect.do_ping

        def counted_ping(dbapi_connection: Any) -> bool:
            self.statements["(ping)"] += 1
            return ping(dbapi_connection)

        dialect.do_ping = counted_ping  # type: ignore[method-assign]

        # SQLAlchemy reports a transaction's begin and end on an autocommit connection too,
        # where the driver sends neither (db.autocommit_statements).
        def sent(conn: Any) -> bool:
            return not conn.connection.dbapi_connection.autocommit

        @event.listens_for(engine, "begin")
        def begin(conn: Any) -> None:
            if sent(conn):
                self.statements["(BEGIN)"] += 1

        @event.listens_for(engine, "commit")
        def commit(conn: Any) -> None:
            if sent(conn):
                self.statements["(COMMIT)"] += 1

        @event.listens_for(engine, "rollback")
        def rollback(conn: Any) -> None:
            if sent(conn):
                self.statements["(ROLLBACK)"] += 1


async def measure(url: str, requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            database_url=url,
            data_dir=Path(data_dir),
            jwt_secret=SECRET,
            public_url=PUBLIC,
            invoice_ttl=timedelta(days=1),
        )
        loopback = Loopback()
        app = create_app(settings, outbound_transport=loopback)
        loopback.app = app
        counts = Counts(app)
        results: dict[str, Any] = {}
        async with (
            LifespanManager(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC) as http,
        ):
            tariff = (await http.get("/api/v1/tariffs")).json()
            premium = next(item["id"] for item in tariff if item["code"] == "premium")
            user = uuid.uuid4()
            headers = {"Authorization": f"Bearer {viewer_token(user)}"}
            invoice = await http.post(
                "/api/v1/invoices", json={"tariff_id": premium, "months": 1}, headers=headers
            )
            payment = await http.post(
                f"/api/v1/invoices/{invoice.json()['id']}/payments", json={}, headers=headers
            )
            sandbox_id = payment.json()["confirmation_url"].rsplit("/", 1)[1]
            await http.post(
                f"/sandbox/checkout/{sandbox_id}", data={"action": "pay", "notify": "0"}
            )
            copies = copy_checkouts(
                url, invoice.json()["id"], payment.json()["id"], 2 * requests + 10, True
            )

            async def confirm(row: tuple[Any, ...]) -> httpx.Response:
                _, payment_id, _, owner = row
                return await http.post(
                    f"/api/v1/payments/{payment_id}/confirm",
                    headers={"Authorization": f"Bearer {viewer_token(owner)}"},
                )

            async def webhook(row: tuple[Any, ...]) -> httpx.Response:
                body = {
                    "type": "notification",
                    "event": "payment.succeeded",
                    "object": {"id": row[2], "status": "succeeded"},
                }
                return await http.post("/api/v1/webhooks/yookassa", json=body)

            warm = 2 * requests
            for name, call, rows, warm_up in (
                ("POST /payments/{id}/confirm", confirm, copies[:requests], copies[warm:][:5]),
                ("POST /webhooks/yookassa", webhook, copies[requests:warm], copies[warm + 5 :]),
            ):
                for row in warm_up:
                    await call(row)
                counts.statements.clear()
                cpu, wall = [], []
                for row in rows:
                    started_cpu, started = time.process_time(), time.perf_counter()
                    answer = await call(row)
                    cpu.append(time.process_time() - started_cpu)
                    wall.append(time.perf_counter() - started)
                    assert answer.status_code == 200, answer.text
                per_request = {
                    kind: round(count / len(rows), 2)
                    for kind, count in sorted(counts.statements.items())
                }
                results[name] = {
                    "requests": len(rows),
                    "per_request": per_request,
                    "round_trips": round(sum(counts.statements.values()) / len(rows), 1),
                    "cpu_ms_median": round(statistics.median(cpu) * 1000, 2),
                    "wall_ms_median": round(statistics.median(wall) * 1000, 2),
                }
        return results


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-url", default=server_url_from_env())
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with bench_database(args.server_url) as url:
        asyncio.run(seed(url))
        results = asyncio.run(measure(url, args.requests))
    text = json.dumps(results, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    sys.exit(0)


if __name__ == "__main__":
    main()

"""The outbox relay's throughput to a real local HTTP receiver and to the machine's RabbitMQ:
events delivered per second.

For each scenario, ``--repeats`` times: empty the outbox, write ``--events`` pending
notification events (two per user, so the per-user order check has rows to look at), then
call ``deliver_outbox`` (the ``deliver-outbox`` job's relay, with the job's defaults) again and
again until every event is delivered, and report the events per second over all runs (median
of the repeats).

* ``http``, for each receiver latency (``--latency-ms``: how long the receiver takes to
  answer, as a network hop and the Notification service's own work would): the receiver is a
  ``ThreadingHTTPServer`` speaking HTTP/1.1 (keep-alive) in a separate process, so it does not
  compete with the relay for the GIL.
* ``amqp``: ``NotifyAmqpSink`` as production runs it (publisher confirms, persistent messages,
  mandatory) to a durable exchange and durable queue of the bench's own on ``--amqp-url``;
  after each repeat the queue must hold exactly ``--events`` messages, then it is purged.

``--profile FILE`` runs the relay under py-spy (collapsed stacks, ``-f raw``) for the first
repeat of each scenario: FILE gets the scenario's name appended.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
from _common import bench_database, exit_on_sigterm, machine, median, server_url_from_env

from billing.db import libpq_url

EVENTS_SQL = """
INSERT INTO outbox_events (id, type, user_id, payload, status, attempts, next_attempt_at,
                           occurred_at)
SELECT gen_random_uuid(), 'payment.succeeded', user_id, '{"amount": 49900}', 'pending', 0,
       %(now)s, %(now)s
FROM (SELECT gen_random_uuid() AS user_id FROM generate_series(1, %(users)s)) AS users,
     generate_series(1, 2)
ORDER BY user_id
"""

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"

# A scenario: opens the notification sink for one repeat and checks what it received.
SinkScope = Callable[[], AbstractAsyncContextManager[Any]]


def serve(port_out: Any, latency: float) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if latency:
                time.sleep(latency)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_out.put(server.server_address[1])
    server.serve_forever()


def http_scope(receiver: str) -> SinkScope:
    @asynccontextmanager
    async def scope() -> AsyncIterator[Any]:
        import httpx

        from billing.outbox.sinks import NotifyHttpSink

        # The app's outbound timeouts (billing.app.OUTBOUND_TIMEOUT).
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0)) as client:
            yield NotifyHttpSink(client, receiver)

    return scope


def amqp_scope(amqp_url: str, name: str, events: int) -> SinkScope:
    """Publishes to exchange ``name``; its durable queue ``name`` must then hold every event."""

    @asynccontextmanager
    async def scope() -> AsyncIterator[Any]:
        import aio_pika

        from billing.outbox.sinks import NotifyAmqpSink

        sink = NotifyAmqpSink(amqp_url, exchange=name)
        try:
            yield sink
        finally:
            await sink.close()
        async with await aio_pika.connect(amqp_url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(name, passive=True)
            held = queue.declaration_result.message_count
            await queue.purge()
        if held != events:
            raise RuntimeError(f"the bench queue holds {held} messages, not {events}")

    return scope


async def declare_amqp(amqp_url: str, name: str, *, delete: bool = False) -> None:
    import aio_pika

    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        if delete:
            await channel.queue_delete(name)
            await channel.exchange_delete(name)
            return
        exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(name, durable=True)
        await queue.bind(exchange, routing_key="#")


async def deliver_all(
    url: str, sink_scope: SinkScope, events: int, batch_size: int | None
) -> tuple[float, float, int]:
    """Answers the run's wall seconds, this process's CPU seconds meanwhile, and the relay
    runs it took."""
    from billing.db import create_engine, session_factory
    from billing.outbox.relay import deliver_outbox
    from billing.outbox.sinks import LogSink, Receiver, Sink

    now = datetime.now(UTC)
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        connection.execute("TRUNCATE outbox_events")
        connection.execute(EVENTS_SQL, {"now": now, "users": events // 2})
        connection.execute("VACUUM ANALYZE outbox_events")
    engine = create_engine(url)
    sessions = session_factory(engine)
    delivered = runs = 0
    async with sink_scope() as notification:
        sinks: dict[Receiver, Sink] = {
            Receiver.NOTIFICATION: notification,
            Receiver.AUTH: LogSink(Receiver.AUTH),
        }
        started, cpu_started = time.perf_counter(), time.process_time()
        while delivered < events:
            options = {"batch_size": batch_size} if batch_size else {}
            report = await deliver_outbox(
                sessions,
                sinks,
                now=now,
                max_attempts=12,
                retry_ceiling=timedelta(hours=1),
                **options,
            )
            if report.delivered == 0:
                raise RuntimeError(f"a run delivered nothing: {report}")
            delivered += report.delivered
            runs += 1
            # The next scheduled run sees a later clock; the events' due times do not matter.
            now += timedelta(seconds=10)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    await engine.dispose()
    return seconds, cpu, runs


def profiled(output: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy sampling this process (collapsed stacks), until ``stop_profile``."""
    if output is None:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    spying = subprocess.Popen(  # noqa: S603
        [spy, "record", "-r", "200", "-f", "raw", "-o", str(output), "--pid", str(os.getpid())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)  # attached
    return spying


def stop_profile(spying: subprocess.Popen[bytes] | None) -> None:
    if spying is not None:
        spying.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        spying.wait(30)


def run_scenario(
    url: str, name: str, sink_scope: SinkScope, args: argparse.Namespace
) -> dict[str, Any]:
    timings = []
    for repeat in range(args.repeats):
        slug = re.sub(r"[^a-z0-9]+", "-", name).strip("-")
        wanted = args.profile and not repeat
        spying = profiled(Path(f"{args.profile}.{slug}.txt") if wanted else None)
        try:
            timings.append(asyncio.run(deliver_all(url, sink_scope, args.events, args.batch_size)))
        finally:
            stop_profile(spying)
    rates = [args.events / seconds for seconds, _, _ in timings]
    cpu = [cpu_seconds / args.events * 1e6 for _, cpu_seconds, _ in timings]
    scenario = {
        "scenario": name,
        "events_per_second_median": round(median(rates), 1),
        "events_per_second": [round(rate, 1) for rate in rates],
        # The relay process's own CPU per event (sinks' clients included; not the database's
        # or the receiver's): what the machine's other load changes least.
        "relay_cpu_us_per_event_median": round(median(cpu)),
        "relay_runs": [runs for _, _, runs in timings],
    }
    print(json.dumps(scenario), file=sys.stderr, flush=True)
    return scenario


def http_scenarios(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    scenarios = []
    for latency_ms in (float(value) for value in args.latency_ms.split(",")):
        ports: Any = multiprocessing.Queue()
        receiver = multiprocessing.Process(
            target=serve, args=(ports, latency_ms / 1000), daemon=True
        )
        receiver.start()
        try:
            address = f"http://127.0.0.1:{ports.get(timeout=10)}/events"
            name = f"http, receiver latency {latency_ms:g} ms"
            scenario = run_scenario(url, name, http_scope(address), args)
        finally:
            receiver.terminate()
            receiver.join()
        scenarios.append({"receiver_latency_ms": latency_ms, **scenario})
    return scenarios


def amqp_scenario(url: str, args: argparse.Namespace) -> dict[str, Any]:
    name = f"billing.bench.{uuid.uuid4().hex[:12]}"
    asyncio.run(declare_amqp(args.amqp_url, name))
    try:
        scope = amqp_scope(args.amqp_url, name, args.events)
        scenario = run_scenario(url, "amqp, publisher confirms, persistent", scope, args)
    finally:
        asyncio.run(declare_amqp(args.amqp_url, name, delete=True))
    return {"sink": "amqp", **scenario}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--sinks", default="http,amqp", help="http, amqp or both")
    parser.add_argument(
        "--latency-ms", default="0,5,20", help="HTTP receiver latencies, comma-separated"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, help="the relay's lease (default: its own)")
    parser.add_argument("--server-url", default=server_url_from_env())
    parser.add_argument(
        "--amqp-url", default=os.environ.get("BILLING_BENCH_AMQP_URL", DEFAULT_AMQP_URL)
    )
    parser.add_argument("--profile", help="py-spy the first repeat of each scenario into FILE.*")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    exit_on_sigterm()
    sinks = args.sinks.split(",")
    results: dict[str, Any] = {"machine": machine(args.server_url), "events": args.events}
    scenarios = []
    with bench_database(args.server_url) as url:
        if "amqp" in sinks:
            scenarios.append(amqp_scenario(url, args))
        if "http" in sinks:
            scenarios.extend(http_scenarios(url, args))
    results["machine"]["load average after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    results["scenarios"] = scenarios
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as out:
            out.write(text + "\n")


if __name__ == "__main__":
    main()

"""The outbox relay's throughput to a real local HTTP receiver and to the machine's RabbitMQ:
events delivered per second.

For each scenario, ``--repeats`` times: empty the outbox, write ``--events`` pending
notification events (two per user, so the per-user order check has rows to look at), then
start ``--relays`` relay processes at once (workers sharing the outbox by ``SKIP LOCKED``; with
several counts, ``1,2``, the RabbitMQ scenario runs with each, HTTP with the first), each
calling ``deliver_outbox`` (the ``deliver-outbox`` job's relay, with the job's defaults) run
after run until no event is pending; report the events per second from the first relay's
start to the last one's end (median of the repeats) and the relays' CPU per event. Every event
must have been delivered, and nothing may have failed.

* ``http``, for each receiver latency (``--latency-ms``: how long the receiver takes to
  answer, as a network hop and the Notification service's own work would): the receiver is a
  ``ThreadingHTTPServer`` speaking HTTP/1.1 (keep-alive) in a separate process, so it does not
  compete with the relay for the GIL.
* ``amqp``: ``NotifyAmqpSink`` as production runs it (publisher confirms, persistent messages,
  mandatory) to a durable exchange and durable queue of the bench's own on ``--amqp-url``;
  after each repeat the queue must hold exactly ``--events`` messages (none lost, none twice),
  then it is purged; both are deleted at the end.

``--profile FILE`` runs py-spy on the first relay process during the first repeat of each
scenario (collapsed stacks, ``-f raw``; FILE gets the scenario's name appended). A before/after
of another version of ``src/`` is ``PYTHONPATH=/copy/of/src python bench/outbox_throughput.py
--code "..." --json bench/results/outbox_throughput_before.json``; ``--markdown
bench/results.md`` then renders both files into results.md's "Outbox relay" section.
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

# A scenario: opens the notification sink for one relay process; then checks, after all
# of them, what the receiver got.
SinkScope = Callable[[], AbstractAsyncContextManager[Any]]
Check = Callable[[], None]

PENDING_SQL = "SELECT count(*) FROM outbox_events WHERE status = 'pending'"
DELIVERED_SQL = "SELECT count(*) FROM outbox_events WHERE status = 'delivered'"


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


def amqp_scope(amqp_url: str, name: str) -> SinkScope:
    @asynccontextmanager
    async def scope() -> AsyncIterator[Any]:
        from billing.outbox.sinks import NotifyAmqpSink

        sink = NotifyAmqpSink(amqp_url, exchange=name)
        try:
            yield sink
        finally:
            await sink.close()

    return scope


def amqp_check(amqp_url: str, name: str, events: int) -> Check:
    """The bench queue must hold every event exactly once (no loss, no duplicate); emptied."""

    async def check() -> None:
        import aio_pika

        async with await aio_pika.connect(amqp_url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(name, passive=True)
            held = queue.declaration_result.message_count
            await queue.purge()
        if held != events:
            raise RuntimeError(f"the bench queue holds {held} messages, not {events}")

    return lambda: asyncio.run(check())


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


def broker_cpu() -> float:
    """CPU seconds the local RabbitMQ (``beam.smp``) used so far; 0 when it is not local."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(beam.smp)" in text:
            fields = text.rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def count(url: str, sql: str) -> int:
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        row = connection.execute(sql).fetchone()
    return int(row[0]) if row else 0


def fill(url: str, events: int) -> datetime:
    now = datetime.now(UTC)
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        connection.execute("TRUNCATE outbox_events")
        connection.execute(EVENTS_SQL, {"now": now, "users": events // 2})
        connection.execute("VACUUM ANALYZE outbox_events")
    return now


async def relay_until_done(
    url: str, sink_scope: SinkScope, now: datetime, batch_size: int | None, ready: Any, go: Any
) -> dict[str, float]:
    """One relay process: ``deliver_outbox`` run after run (as the job's schedule would, the
    clock 10 s later each time) until no event is pending. Answers when it started and
    ended (monotonic, the same clock in every process), its CPU seconds and its events."""
    from billing.db import create_engine, session_factory
    from billing.outbox.events import Receiver
    from billing.outbox.relay import deliver_outbox
    from billing.outbox.sinks import LogSink, Sink

    engine = create_engine(url)
    sessions = session_factory(engine)
    delivered = runs = 0
    options = {"batch_size": batch_size} if batch_size else {}
    async with sink_scope() as notification:
        sinks: dict[Receiver, Sink] = {
            Receiver.NOTIFICATION: notification,
            Receiver.AUTH: LogSink(Receiver.AUTH),
        }
        ready.set()
        go.wait()
        started, cpu_started = time.monotonic(), time.process_time()
        while True:
            report = await deliver_outbox(
                sessions,
                sinks,
                now=now,
                max_attempts=12,
                retry_ceiling=timedelta(hours=1),
                **options,
            )
            delivered += report.delivered
            runs += 1
            if report.retried or report.parked:
                raise RuntimeError(f"a delivery failed: {report}")
            if not report.delivered:
                if not count(url, PENDING_SQL):
                    break
                await asyncio.sleep(0.05)  # another relay holds the rest
            now += timedelta(seconds=10)
        ended, cpu = time.monotonic(), time.process_time() - cpu_started
    await engine.dispose()
    return {"started": started, "ended": ended, "cpu": cpu, "delivered": delivered, "runs": runs}


def relay_process(results: Any, loop: str, *args: Any) -> None:
    if loop == "uvloop":  # as ``billing worker`` and ``billing serve`` run it
        import uvloop

        results.put(uvloop.run(relay_until_done(*args)))
    else:
        results.put(asyncio.run(relay_until_done(*args)))


def deliver_all(
    url: str, sink_scope: SinkScope, args: argparse.Namespace, profile: Path | None
) -> dict[str, float]:
    """One repeat: fill the outbox, then ``--relays`` relay processes at once until it is
    empty. Answers the wall seconds from the first start to the last end, and the relays' CPU
    seconds."""
    now = fill(url, args.events)
    ready = [multiprocessing.Event() for _ in range(args.relays)]
    go, results = multiprocessing.Event(), multiprocessing.Queue()
    relays = [
        multiprocessing.Process(
            target=relay_process,
            args=(results, args.loop, url, sink_scope, now, args.batch_size, ready[number], go),
            daemon=True,
        )
        for number in range(args.relays)
    ]
    for relay in relays:
        relay.start()
    for number, event in enumerate(ready):
        if not event.wait(60):
            raise RuntimeError(f"relay {number} did not start")
    spying = profiled(profile, relays[0].pid)
    broker_started = broker_cpu()
    go.set()
    try:
        reports = [results.get(timeout=900) for _ in relays]
        broker = broker_cpu() - broker_started
    finally:
        stop_profile(spying)
        for relay in relays:
            relay.join(10)
    delivered = count(url, DELIVERED_SQL)
    if delivered != args.events or sum(r["delivered"] for r in reports) != args.events:
        raise RuntimeError(f"{delivered} of {args.events} delivered: {reports}")
    return {
        "seconds": max(r["ended"] for r in reports) - min(r["started"] for r in reports),
        "cpu": sum(r["cpu"] for r in reports),
        "broker_cpu": broker,
        "runs": sum(r["runs"] for r in reports),
    }


def profiled(output: Path | None, pid: int | None) -> subprocess.Popen[bytes] | None:
    """py-spy sampling a relay process (collapsed stacks), until ``stop_profile``."""
    if output is None or pid is None:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    spying = subprocess.Popen(  # noqa: S603
        [spy, "record", "-r", "200", "-f", "raw", "-o", str(output), "--pid", str(pid)],
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
    url: str, name: str, sink_scope: SinkScope, check: Check | None, args: argparse.Namespace
) -> dict[str, Any]:
    timings = []
    for repeat in range(args.repeats):
        slug = re.sub(r"[^a-z0-9]+", "-", name).strip("-")
        wanted = args.profile and not repeat
        timings.append(
            deliver_all(
                url, sink_scope, args, Path(f"{args.profile}.{slug}.txt") if wanted else None
            )
        )
        if check is not None:
            check()
    rates = [args.events / timing["seconds"] for timing in timings]
    cpu = [timing["cpu"] / args.events * 1e6 for timing in timings]
    scenario = {
        "scenario": name,
        "loop": args.loop,
        "events": args.events,
        "relays": args.relays,
        "events_per_second_median": round(median(rates), 1),
        "events_per_second": [round(rate, 1) for rate in rates],
        # The relay processes' own CPU per event (sinks' clients included; not the database's
        # or the receiver's): what the machine's other load changes least.
        "relay_cpu_us_per_event_median": round(median(cpu)),
        # RabbitMQ's (the local broker process's) CPU per event meanwhile.
        "broker_cpu_us_per_event_median": round(
            median([timing["broker_cpu"] / args.events * 1e6 for timing in timings])
        ),
        "relay_runs": [timing["runs"] for timing in timings],
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
            scenario = run_scenario(url, name, http_scope(address), None, args)
        finally:
            receiver.terminate()
            receiver.join()
        scenarios.append({"receiver_latency_ms": latency_ms, **scenario})
    return scenarios


def amqp_scenario(url: str, args: argparse.Namespace) -> dict[str, Any]:
    name = f"billing.bench.{uuid.uuid4().hex[:12]}"
    asyncio.run(declare_amqp(args.amqp_url, name))
    try:
        scenario = run_scenario(
            url,
            "amqp, publisher confirms, persistent",
            amqp_scope(args.amqp_url, name),
            amqp_check(args.amqp_url, name, args.events),
            args,
        )
    finally:
        asyncio.run(declare_amqp(args.amqp_url, name, delete=True))
    return {"sink": "amqp", **scenario}


HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "outbox_throughput.json"
BEFORE = HERE / "results" / "outbox_throughput_before.json"
HEADING = "## Outbox relay (bench/outbox_throughput.py)"
TARGET = 2000  # events/s to RabbitMQ with publisher confirms (issue 15)


def results_section(after_path: Path = RESULTS, before_path: Path = BEFORE) -> list[str]:
    """``results.md``'s section: each scenario before and after, from the recorded JSON."""
    if not after_path.exists() or not before_path.exists():
        return []
    after, before = json.loads(after_path.read_text()), json.loads(before_path.read_text())

    def keyed(run: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
        return {(s["scenario"], s.get("relays", 1)): s for s in run["scenarios"]}

    old, new = keyed(before), keyed(after)

    def measured(run: dict[str, Any]) -> str:
        about = run["machine"]
        return (
            f"{about['code']}, load average {about['load average']} before and"
            f" {about.get('load average after', '?')} after"
        )

    lines = [
        "",
        HEADING,
        "",
        "Pending notification events (two per user) delivered by the relay run after run until"
        " none is left, median of 3 repeats; the RabbitMQ scenario publishes as production"
        " does (publisher confirms, persistent messages, mandatory) to a durable queue of the"
        " bench's own, which must then hold every event exactly once; the HTTP receiver runs"
        " in its own process. CPU per event: the relay processes' own (their clients"
        " included), the figure the machine's other load changes least, and the local"
        " RabbitMQ's. Machine:"
        f" {after['machine']['cpu']}, {after['machine']['nproc']} CPUs shared with other"
        f" sessions' test runs, PostgreSQL {after['machine']['postgresql']}, the broker, the"
        f" receiver and the relays on the same CPUs. Before: {measured(before)}."
        f" After: {measured(after)}.",
        "",
        "| scenario | events | relay processes | before events/s | after events/s | after"
        " repeats | relay CPU µs/event before → after | broker CPU µs/event before → after |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for key, figure in new.items():
        was = old.get(key, {})
        runs = ", ".join(f"{rate:.0f}" for rate in figure["events_per_second"])

        def change(field: str, was: dict[str, Any] = was, figure: dict[str, Any] = figure) -> str:
            return f"{was.get(field, '–')} → {figure.get(field, '–')}"

        lines.append(
            f"| {key[0]} | {figure.get('events', after['events'])} | {key[1]} |"
            f" {was.get('events_per_second_median', '–')} |"
            f" {figure['events_per_second_median']} | {runs} |"
            f" {change('relay_cpu_us_per_event_median')} |"
            f" {change('broker_cpu_us_per_event_median')} |"
        )
    amqp = [f for (name, _), f in new.items() if name.startswith("amqp")]
    if amqp:
        best = max(amqp, key=lambda figure: figure["events_per_second_median"])
        rate = best["events_per_second_median"]
        lines += [
            "",
            f"**RabbitMQ with publisher confirms: {rate:.0f} events/s"
            f" ({best.get('relays', 1)} relay process(es); target ≥ {TARGET}: "
            + ("met" if rate >= TARGET else "not met")
            + f"), {best['relay_cpu_us_per_event_median']} µs of relay CPU per event.**"
            ' What was tried: "Outbox relay" under "What was tried" below.',
        ]
    return lines


def write_section(markdown: Path) -> None:
    """Put the section into ``markdown`` in place of its last version (or before "What was
    tried", or at the end)."""
    text = markdown.read_text() if markdown.exists() else ""
    section = "\n".join(results_section()).strip("\n") + "\n"
    start = text.find(HEADING)
    if start < 0:
        tried = text.find("\n## What was tried")
        if tried < 0:
            markdown.write_text(text.rstrip("\n") + "\n\n" + section)
        else:
            markdown.write_text(text[: tried + 1] + section + text[tried:])
        return
    end = text.find("\n## ", start + len(HEADING))
    rest = "" if end < 0 else "\n" + text[end + 1 :]
    markdown.write_text(text[:start] + section + rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument(
        "--http-events", type=int, help="for the HTTP scenarios (default: --events)"
    )
    parser.add_argument("--sinks", default="http,amqp", help="http, amqp or both")
    parser.add_argument(
        "--latency-ms", default="0,5,20", help="HTTP receiver latencies, comma-separated"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--relays",
        default="1",
        help="relay processes at once (workers), comma-separated: the RabbitMQ scenario runs"
        " with each count, HTTP with the first",
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="uvloop",
        help="the relays' event loop: uvloop (``billing worker`` and ``billing serve``) or"
        " asyncio's",
    )
    parser.add_argument("--batch-size", type=int, help="the relay's lease (default: its own)")
    parser.add_argument("--server-url", default=server_url_from_env())
    parser.add_argument(
        "--amqp-url", default=os.environ.get("BILLING_BENCH_AMQP_URL", DEFAULT_AMQP_URL)
    )
    parser.add_argument("--profile", help="py-spy the first repeat of each scenario into FILE.*")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--code", help="what was measured, if not this checkout's src/")
    parser.add_argument(
        "--markdown", type=Path, help="write the recorded before/after section here and stop"
    )
    args = parser.parse_args()
    if args.markdown is not None:
        write_section(args.markdown)
        return
    exit_on_sigterm()
    sinks = args.sinks.split(",")
    results: dict[str, Any] = {
        "machine": machine(args.server_url),
        "events": args.events,
        "http_events": args.http_events or args.events,
    }
    if args.code:
        results["machine"]["code"] = args.code
    scenarios = []
    counts = [int(count) for count in args.relays.split(",")]
    with bench_database(args.server_url) as url:
        if "amqp" in sinks:
            for relays in counts:
                scenarios.append(
                    amqp_scenario(url, argparse.Namespace(**vars(args) | {"relays": relays}))
                )
        if "http" in sinks:
            http = {"relays": counts[0], "events": args.http_events or args.events}
            scenarios.extend(http_scenarios(url, argparse.Namespace(**vars(args) | http)))
    results["machine"]["load average after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    results["scenarios"] = scenarios
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as out:
            out.write(text + "\n")


if __name__ == "__main__":
    main()

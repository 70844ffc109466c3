"""The outbox relay's throughput to a real local HTTP receiver: events delivered per second.

For each receiver latency (``--latency-ms``: how long the receiver takes to answer, as a
network hop and the Notification service's own work would), ``--repeats`` times: empty the
outbox, write ``--events`` pending notification events (two per user, so the per-user order
check has rows to look at), then call ``deliver_outbox`` (the ``deliver-outbox`` job's relay)
again and again until every event is delivered, and report the events per second over all
runs (median of the repeats). The receiver is a ``ThreadingHTTPServer`` speaking HTTP/1.1
(keep-alive) in a separate process, so it does not compete with the relay for the GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


async def deliver_all(url: str, receiver: str, events: int) -> tuple[float, int]:
    import httpx

    from billing.db import create_engine, session_factory
    from billing.outbox.relay import deliver_outbox
    from billing.outbox.sinks import LogSink, NotifyHttpSink, Receiver, Sink

    now = datetime.now(UTC)
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        connection.execute("TRUNCATE outbox_events")
        connection.execute(EVENTS_SQL, {"now": now, "users": events // 2})
        connection.execute("VACUUM ANALYZE outbox_events")
    engine = create_engine(url)
    sessions = session_factory(engine)
    delivered = runs = 0
    # The app's outbound timeouts (billing.app.OUTBOUND_TIMEOUT).
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0)) as client:
        sinks: dict[Receiver, Sink] = {
            Receiver.NOTIFICATION: NotifyHttpSink(client, receiver),
            Receiver.AUTH: LogSink(Receiver.AUTH),
        }
        started = time.perf_counter()
        while delivered < events:
            report = await deliver_outbox(
                sessions,
                sinks,
                now=now,
                max_attempts=12,
                retry_ceiling=timedelta(hours=1),
            )
            if report.delivered == 0:
                raise RuntimeError(f"a run delivered nothing: {report}")
            delivered += report.delivered
            runs += 1
            # The next scheduled run sees a later clock; the events' due times do not matter.
            now += timedelta(seconds=10)
        seconds = time.perf_counter() - started
    await engine.dispose()
    return seconds, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument(
        "--latency-ms", default="0,5,20", help="receiver latencies, comma-separated"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--server-url", default=server_url_from_env())
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    exit_on_sigterm()
    results: dict[str, Any] = {"machine": machine(args.server_url), "events": args.events}
    scenarios = []
    with bench_database(args.server_url) as url:
        for latency_ms in (float(value) for value in args.latency_ms.split(",")):
            ports: Any = multiprocessing.Queue()
            receiver = multiprocessing.Process(
                target=serve, args=(ports, latency_ms / 1000), daemon=True
            )
            receiver.start()
            try:
                address = f"http://127.0.0.1:{ports.get(timeout=10)}/events"
                timings = [
                    asyncio.run(deliver_all(url, address, args.events)) for _ in range(args.repeats)
                ]
            finally:
                receiver.terminate()
                receiver.join()
            rates = [args.events / seconds for seconds, _ in timings]
            scenario = {
                "receiver_latency_ms": latency_ms,
                "events_per_second_median": round(median(rates), 1),
                "events_per_second": [round(rate, 1) for rate in rates],
                "relay_runs": [runs for _, runs in timings],
            }
            scenarios.append(scenario)
            print(json.dumps(scenario), file=sys.stderr)
    results["scenarios"] = scenarios
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as out:
            out.write(text + "\n")


if __name__ == "__main__":
    main()

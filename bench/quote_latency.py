"""Latency of the viewer's pricing path: ``POST /api/v1/quotes`` and ``GET /api/v1/tariffs``.

The whole HTTP stack of the app (routing, auth, validation, problem+json handling, metrics
middleware, one transaction per request on the machine's PostgreSQL) through an in-process
ASGI client (``httpx.ASGITransport`` on ``billing.app.create_app``): no sockets and no
uvicorn on the client's side, one request at a time. A baseline, not a capacity figure.

The database holds the demo data (tariffs basic, premium and an unpriced family; duration
discounts 5 % from 3 months, 10 % from 6, 20 % from 12; promo codes WELCOME10 and FILM500).
Scenarios, interleaved request by request so that the machine's noise hits all alike:

* ``GET /api/v1/tariffs`` (no auth);
* ``POST /api/v1/quotes`` premium × 3 months with ``WELCOME10`` (promo vs duration rule);
* ``POST /api/v1/quotes`` premium × 12 months, no code (duration rule only).

Every response must be 200. Reported: median, p95, p99 and mean per scenario over all the
measured requests, and the spread of the per-round medians (``--rounds``).
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from _common import (
    bench_database,
    exit_on_sigterm,
    machine,
    median,
    percentile,
    server_url_from_env,
)
from asgi_lifespan import LifespanManager

from billing.app import create_app
from billing.auth import issue_token
from billing.config import Settings
from billing.db import create_engine, session_factory, transaction
from billing.demo import create_demo_data

API = "/api/v1"


@dataclass(frozen=True)
class Scenario:
    name: str
    method: str
    path: str
    body: dict[str, Any] | None
    authenticated: bool


async def seed(url: str, currency: str) -> None:
    """The demo data, through the same function as ``billing demo-data``."""
    engine = create_engine(url)
    try:
        async with transaction(session_factory(engine)) as session:
            await create_demo_data(session, now=datetime.now(UTC), currency=currency)
    finally:
        await engine.dispose()


async def run(url: str, requests: int, warmup: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            database_url=url,
            data_dir=Path(data_dir),
            jwt_secret="bench-secret-that-is-long-enough-for-hs256",  # noqa: S106
            public_url="http://billing.bench",
        )
        await seed(url, settings.currency)
        app = create_app(settings)
        viewer = uuid.uuid4()
        auth = {"Authorization": f"Bearer {issue_token(settings, str(viewer))}"}
        async with (
            LifespanManager(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://billing.bench"
            ) as client,
        ):
            tariffs = (await client.get(f"{API}/tariffs")).json()
            premium = next(t["id"] for t in tariffs if t["code"] == "premium")
            scenarios = [
                Scenario("GET /tariffs", "GET", f"{API}/tariffs", None, False),
                Scenario(
                    "POST /quotes 3 months + WELCOME10",
                    "POST",
                    f"{API}/quotes",
                    {"tariff_id": premium, "months": 3, "promo_code": "welcome10"},
                    True,
                ),
                Scenario(
                    "POST /quotes 12 months, no code",
                    "POST",
                    f"{API}/quotes",
                    {"tariff_id": premium, "months": 12},
                    True,
                ),
            ]

            async def once(scenario: Scenario) -> float:
                started = time.perf_counter()
                response = await client.request(
                    scenario.method,
                    scenario.path,
                    json=scenario.body,
                    headers=auth if scenario.authenticated else None,
                )
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise SystemExit(
                        f"{scenario.name}: HTTP {response.status_code}: {response.text}"
                    )
                return elapsed

            # The scenarios price what they say they do (the winner of the discounts).
            for scenario, source in zip(scenarios[1:], ("promo", "duration"), strict=True):
                answer = await client.post(scenario.path, json=scenario.body, headers=auth)
                if answer.status_code != 200 or answer.json()["discount"]["source"] != source:
                    raise SystemExit(f"{scenario.name}: not a {source} discount: {answer.text}")
            for _ in range(warmup):
                for scenario in scenarios:
                    await once(scenario)
            samples: dict[str, list[list[float]]] = {s.name: [] for s in scenarios}
            started = time.perf_counter()
            for number in range(rounds):
                for scenario in scenarios:
                    samples[scenario.name].append([])
                for _ in range(requests // rounds + (number < requests % rounds)):
                    for scenario in scenarios:
                        samples[scenario.name][-1].append(await once(scenario))
            wall = time.perf_counter() - started
    results = []
    for name, by_round in samples.items():
        pooled = [value * 1000 for values in by_round for value in values]
        round_medians = [median(values) * 1000 for values in by_round]
        results.append(
            {
                "scenario": name,
                "requests": len(pooled),
                "median_ms": median(pooled),
                "p95_ms": percentile(pooled, 0.95),
                "p99_ms": percentile(pooled, 0.99),
                "mean_ms": statistics.fmean(pooled),
                "round_medians_ms": [round(value, 3) for value in round_medians],
            }
        )
    return {"wall_seconds": wall, "results": results}


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | requests | median ms | p95 ms | p99 ms | mean ms | round medians ms |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        rounds = ", ".join(f"{value:.2f}" for value in r["round_medians_ms"])
        lines.append(
            f"| {r['scenario']} | {r['requests']:,} | {r['median_ms']:.2f} | {r['p95_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['mean_ms']:.2f} | {rounds} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per scenario")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests first")
    parser.add_argument("--rounds", type=int, default=3, help="the requests split in rounds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--server-url",
        default=server_url_from_env(),
        help="PostgreSQL server (default: $BILLING_BENCH_SERVER_URL or %(default)s)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    exit_on_sigterm()
    about = machine(args.server_url)
    with bench_database(args.server_url) as url:
        outcome = asyncio.run(run(url, args.requests, args.warmup, args.rounds))
    print("Machine: " + "; ".join(f"{key} {value}" for key, value in about.items()))
    print(
        f"{args.warmup} warm-up requests per scenario, then the measured ones in "
        f"{args.rounds} rounds ({outcome['wall_seconds']:.1f} s)\n"
    )
    print(markdown(outcome["results"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": about, **outcome}, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""``/api/v1/admin/outbox``: parked events are visible, and an admin can send them again."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import FrozenClock
from billing.db import transaction
from billing.outbox.events import EventType, Receiver
from billing.outbox.relay import DeliveryReport, deliver_outbox
from billing.outbox.service import add_event
from billing.outbox.sinks import LogSink, NotifyHttpSink, Sink
from tests.outbox_events import example

Sessions = async_sessionmaker[AsyncSession]
Headers = Callable[..., dict[str, str]]
NOTICE = example(EventType.PAYMENT_SUCCEEDED, amount=100)
URL = "/api/v1/admin/outbox"
NOTIFY_URL = "http://notify.test/events"


@pytest.fixture
def ivan(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("ivan", "admin")


async def add_notices(sessions: Sessions, clock: FrozenClock, *users: uuid.UUID) -> list[str]:
    ids = []
    async with transaction(sessions) as session:
        for user in users:
            event = add_event(
                session,
                NOTICE,
                user_id=user,
                occurred_at=clock.now(),
            )
            await session.flush()
            ids.append(str(event.id))
    return ids


async def relay(
    sessions: Sessions, clock: FrozenClock, answer: Callable[[dict[str, Any]], int]
) -> DeliveryReport:
    """One relay run against a Notification service answering ``answer(body)``."""

    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(answer(json.loads(request.content)), text="no such template")

    async with httpx.AsyncClient(transport=httpx.MockTransport(respond)) as http:
        sinks: dict[Receiver, Sink] = {
            Receiver.NOTIFICATION: NotifyHttpSink(http, NOTIFY_URL),
            Receiver.AUTH: LogSink(Receiver.AUTH),
        }
        return await deliver_outbox(
            sessions, sinks, now=clock.now(), max_attempts=2, retry_ceiling=timedelta(hours=1)
        )


async def listed(client: httpx.AsyncClient, headers: dict[str, str], **query: Any) -> list[Any]:
    response = await client.get(URL, params=query, headers=headers)
    assert response.status_code == 200, response.text
    result: list[Any] = response.json()
    return result


async def test_parked_events_are_listed_and_an_admin_retry_delivers_them(
    client: httpx.AsyncClient, sessions: Sessions, clock: FrozenClock, ivan: dict[str, str]
) -> None:
    lost, found, fine = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    first, second, delivered = await add_notices(sessions, clock, lost, found, fine)
    await relay(sessions, clock, lambda body: 200 if body["user_id"] == str(fine) else 422)

    failed = await listed(client, ivan, status="failed")
    assert [event["id"] for event in failed] == [second, first]  # newest first
    assert failed[0] == {
        "id": second,
        "seq": 2,
        "type": "payment.succeeded",
        "user_id": str(found),
        "payload": NOTICE.payload(),
        "status": "failed",
        "attempts": 1,
        "next_attempt_at": failed[0]["next_attempt_at"],
        "last_error": f"HTTP 422 from POST {NOTIFY_URL}: no such template",
        "occurred_at": failed[0]["occurred_at"],
        "delivered_at": None,
    }
    assert [e["id"] for e in await listed(client, ivan)] == [delivered, second, first]
    assert [e["id"] for e in await listed(client, ivan, status="delivered")] == [delivered]
    assert [e["id"] for e in await listed(client, ivan, user_id=str(lost))] == [first]
    assert [e["id"] for e in await listed(client, ivan, limit=1, offset=1)] == [second]

    clock.advance(timedelta(minutes=3))
    response = await client.post(f"{URL}/{second}/retry", headers=ivan)

    assert response.status_code == 200, response.text
    retried = response.json()
    assert (retried["status"], retried["attempts"], retried["last_error"]) == (
        "pending",
        1,
        failed[0]["last_error"],
    )
    assert retried["next_attempt_at"] == clock.now().isoformat().replace("+00:00", "Z")
    audit = await client.get(
        "/api/v1/admin/audit-log", params={"entity_type": "outbox_events"}, headers=ivan
    )
    [entry] = audit.json()
    assert (entry["actor"], entry["action"], entry["entity_id"]) == ("ivan", "retry", second)
    assert entry["before"]["status"] == "failed"
    assert entry["after"] == {
        "status": "pending",
        "attempts": 1,
        "next_attempt_at": clock.now().isoformat(),
        "last_error": failed[0]["last_error"],
    }

    report = await relay(sessions, clock, lambda body: 200)  # the cause was fixed
    assert report.delivered == 1
    assert [e["id"] for e in await listed(client, ivan, status="failed")] == [first]
    [done] = [e for e in await listed(client, ivan) if e["id"] == second]
    assert (done["status"], done["attempts"]) == ("delivered", 2)


async def test_a_retried_event_that_fails_again_is_parked_after_one_more_try(
    client: httpx.AsyncClient, sessions: Sessions, clock: FrozenClock, ivan: dict[str, str]
) -> None:
    (event_id,) = await add_notices(sessions, clock, uuid.uuid4())
    await relay(sessions, clock, lambda body: 503)
    clock.advance(timedelta(seconds=10))
    await relay(sessions, clock, lambda body: 503)  # max_attempts=2: parked
    assert [e["id"] for e in await listed(client, ivan, status="failed")] == [event_id]

    response = await client.post(f"{URL}/{event_id}/retry", headers=ivan)
    assert response.status_code == 200
    report = await relay(sessions, clock, lambda body: 503)

    assert report.parked == 1
    [event] = await listed(client, ivan, status="failed")
    assert event["attempts"] == 3


async def test_refusals_change_nothing(
    client: httpx.AsyncClient,
    sessions: Sessions,
    clock: FrozenClock,
    ivan: dict[str, str],
    auth_headers: Headers,
) -> None:
    delivered, parked = await add_notices(sessions, clock, uuid.uuid4(), uuid.uuid4())
    await relay(sessions, clock, lambda body: 200 if body["id"] == delivered else 400)
    viewer = auth_headers(uuid.uuid4())
    marketing = auth_headers("marta", "marketing")  # the panel shows marketing no outbox

    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("POST", f"{URL}/{delivered}/retry", ivan, 409, "outbox_event_delivered"),
        ("POST", f"{URL}/{uuid.uuid4()}/retry", ivan, 404, "not_found"),
        ("POST", f"{URL}/not-a-uuid/retry", ivan, 422, "validation_error"),
        ("GET", f"{URL}?status=lost", ivan, 422, "validation_error"),
        ("GET", f"{URL}?user_id=x", ivan, 422, "validation_error"),
        ("GET", f"{URL}?limit=0", ivan, 422, "validation_error"),
        ("POST", f"{URL}/{parked}/retry", viewer, 403, "forbidden"),
        ("GET", URL, viewer, 403, "forbidden"),
        ("POST", f"{URL}/{parked}/retry", marketing, 403, "forbidden"),
        ("GET", URL, marketing, 403, "forbidden"),
        ("GET", f"{URL}?status=failed", marketing, 403, "forbidden"),
        ("POST", f"{URL}/{parked}/retry", {}, 401, "unauthorized"),
        ("GET", URL, {}, 401, "unauthorized"),
    ]
    for method, url, headers, status, code in cases:
        response = await client.request(method, url, headers=headers)
        assert (response.status_code, response.json()["code"]) == (status, code), url
        assert response.headers["content-type"] == "application/problem+json"

    assert [e["id"] for e in await listed(client, ivan, status="failed")] == [parked]
    assert [e["id"] for e in await listed(client, ivan, status="delivered")] == [delivered]
    audit = await client.get(
        "/api/v1/admin/audit-log", params={"entity_type": "outbox_events"}, headers=ivan
    )
    assert audit.json() == []

"""The outbox events as types: each event type has one model with its receiver, checked at
import; a model's payload is the JSON the call sites wrote before they were typed
(``jsonable_encoder`` of the same values); /openapi.json documents each as a webhook."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pydantic
import pytest
from fastapi.encoders import jsonable_encoder

from billing.app import create_app
from billing.config import Settings
from billing.outbox.events import (
    EVENTS,
    RECEIVER_OF,
    Event,
    EventType,
    Receiver,
    RoleRevoke,
    SubscriptionExpiring,
    registry,
)
from tests.outbox_events import EXAMPLES, PERIOD_END, example


@pytest.mark.parametrize("kind", list(EventType))
def test_a_payload_is_what_the_untyped_call_site_wrote(kind: EventType) -> None:
    assert example(kind).payload() == jsonable_encoder(EXAMPLES[kind])


def test_times_keep_their_offset_and_microseconds() -> None:
    payload = example(EventType.ROLE_GRANT).payload()
    assert payload["until"] == "2030-01-31T23:59:59.123456+03:00"
    assert payload["subscription_id"] == "00000000-0000-0000-0000-000000000002"


def test_a_reminder_carries_the_renewal_only_when_it_renews() -> None:
    renewal = {"auto_renew": True, "renewal_amount": 49900, "currency": "RUB"}
    renewal["renews_at"] = PERIOD_END - timedelta(days=1)
    renews = example(EventType.SUBSCRIPTION_EXPIRING, **renewal)
    ends = example(EventType.SUBSCRIPTION_EXPIRING, renewal_amount=None, currency=None)

    assert renews.payload() == jsonable_encoder(EXAMPLES[EventType.SUBSCRIPTION_EXPIRING] | renewal)
    assert ends.payload() == jsonable_encoder(EXAMPLES[EventType.SUBSCRIPTION_EXPIRING])
    assert "renewal_amount" not in ends.payload()


def test_nulls_that_receivers_expect_stay() -> None:
    free = example(EventType.PAYMENT_SUCCEEDED, payment_id=None)
    last = example(EventType.SUBSCRIPTION_RENEWAL_FAILED, next_attempt_at=None)
    assert free.payload()["payment_id"] is None
    assert last.payload()["next_attempt_at"] is None


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"until": datetime(2030, 1, 1)}, id="naive-time"),  # noqa: DTZ001
        pytest.param({"role": "premium", "tariff_id": "t-1"}, id="unknown-field"),
        pytest.param({"subscription_id": "not-a-uuid"}, id="bad-uuid"),
    ],
)
def test_a_wrong_payload_is_refused_where_it_is_built(fields: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        example(EventType.ROLE_GRANT, **fields)


def test_every_event_type_has_a_model_and_its_receiver() -> None:
    assert set(EVENTS) == set(EventType)
    assert {kind for kind, receiver in RECEIVER_OF.items() if receiver == Receiver.AUTH} == {
        EventType.ROLE_GRANT,
        EventType.ROLE_REVOKE,
    }


def test_the_import_check_refuses_a_model_without_a_receiver() -> None:
    class Unrouted(Event):
        type = EventType.ROLE_REVOKE

    others = [model for model in EVENTS.values() if model is not RoleRevoke]
    with pytest.raises(TypeError, match=r"Unrouted \(role.revoke\) names no Receiver"):
        registry([*others, Unrouted])


def test_the_import_check_refuses_an_event_type_without_a_model() -> None:
    others = [model for model in EVENTS.values() if model is not SubscriptionExpiring]
    with pytest.raises(TypeError, match=r"no event model for subscription\.expiring"):
        registry(others)


def test_the_import_check_refuses_a_model_without_a_type_or_a_second_model_of_one() -> None:
    class Untyped(Event):
        receiver = Receiver.AUTH

    class Twin(Event):
        type = EventType.ROLE_REVOKE
        receiver = Receiver.AUTH

    with pytest.raises(TypeError, match="Untyped names no EventType"):
        registry([*EVENTS.values(), Untyped])
    with pytest.raises(TypeError, match=r"role\.revoke has two models: RoleRevoke, Twin"):
        registry([*EVENTS.values(), Twin])


async def test_openapi_lists_every_event_type_as_a_webhook_with_its_data_schema() -> None:
    # The engine connects only when used: no database is needed to build the document.
    app = create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as http:
        document = (await http.get("/openapi.json")).json()

    assert set(document["webhooks"]) == {kind.value for kind in EventType}
    schemas = document["components"]["schemas"]
    for kind, model in EVENTS.items():
        body = document["webhooks"][kind.value]["post"]["requestBody"]["content"]
        message = schemas[body["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
        assert set(message["required"]) == {"id", "type", "user_id", "occurred_at", "data"}
        assert message["properties"]["type"]["const"] == kind.value
        data = schemas[message["properties"]["data"]["$ref"].rsplit("/", 1)[1]]
        assert set(data["properties"]) == set(model.model_fields), kind
        assert set(data["required"]) == set(example(kind).payload()), kind  # always sent

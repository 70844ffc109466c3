"""An example of each outbox event, with the values its call site passes (UUIDs, datetimes
with an offset, ints), for tests that need a valid event of some type."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from billing.outbox.events import EVENTS, Event, EventType

MOSCOW = timezone(timedelta(hours=3))
PERIOD_END = datetime(2030, 1, 31, 23, 59, 59, 123456, tzinfo=MOSCOW)
TARIFF = {"id": uuid.UUID(int=1), "name": "Премиум", "role": "premium"}
SUBSCRIPTION = uuid.UUID(int=2)

EXAMPLES: dict[EventType, dict[str, Any]] = {
    EventType.PAYMENT_SUCCEEDED: {
        "payment_id": uuid.UUID(int=3),
        "invoice_id": uuid.UUID(int=4),
        "tariff": TARIFF,
        "months": 3,
        "amount": 134730,
        "currency": "RUB",
        "discount": {"source": "duration", "amount": 14970},
        "subscription_id": SUBSCRIPTION,
        "current_period_end": PERIOD_END,
    },
    EventType.PAYMENT_REFUNDED: {
        "payment_id": uuid.UUID(int=3),
        "invoice_id": uuid.UUID(int=4),
        "tariff": TARIFF,
        "amount": 49900,
        "currency": "RUB",
        "reason": "requested",
    },
    EventType.SUBSCRIPTION_EXPIRING: {
        "subscription_id": SUBSCRIPTION,
        "tariff_id": TARIFF["id"],
        "role": "premium",
        "current_period_end": PERIOD_END,
        "auto_renew": False,
    },
    EventType.SUBSCRIPTION_EXPIRED: {
        "subscription_id": SUBSCRIPTION,
        "tariff_id": TARIFF["id"],
        "role": "premium",
        "current_period_end": PERIOD_END,
        "access_until": PERIOD_END + timedelta(days=2),
    },
    EventType.SUBSCRIPTION_RENEWED: {
        "subscription_id": SUBSCRIPTION,
        "payment_id": uuid.UUID(int=5),
        "tariff": TARIFF,
        "months": 1,
        "amount": 49900,
        "currency": "RUB",
        "current_period_end": PERIOD_END,
    },
    EventType.SUBSCRIPTION_RENEWAL_FAILED: {
        "subscription_id": SUBSCRIPTION,
        "tariff": TARIFF,
        "amount": 49900,
        "currency": "RUB",
        "reason": "insufficient_funds",
        "attempt": 1,
        "next_attempt_at": PERIOD_END - timedelta(hours=18),
        "pay_url": "http://127.0.0.1:8000/api/v1/checkout?sig=abc",
    },
    EventType.ROLE_GRANT: {"role": "premium", "subscription_id": SUBSCRIPTION, "until": PERIOD_END},
    EventType.ROLE_REVOKE: {"role": "premium", "subscription_id": SUBSCRIPTION},
}


def example(kind: EventType, **fields: Any) -> Event:
    """A valid event of ``kind``: the example, with ``fields`` replacing its values."""
    return EVENTS[kind].model_validate(EXAMPLES[kind] | fields)

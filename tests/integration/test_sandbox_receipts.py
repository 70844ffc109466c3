"""The ЮKassa sandbox as a shop that sends 54-FZ receipts (issue 12): a payment or a refund
without a valid ``receipt`` is ЮKassa's 400 naming the parameter and creates nothing; the
receipts it took are listed at ``/v3/receipts`` in ЮKassa's shape, read back by the official
SDK's models; with receipts off a receipt is optional (and still checked when given)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from yookassa.domain.response import ReceiptListResponse, ReceiptResponse

from billing.app import create_app
from billing.clock import FrozenClock
from billing.config import SANDBOX_SECRET_KEY, SANDBOX_SHOP_ID, Settings
from billing.sandbox.models import SandboxPayment, SandboxRefund
from tests.integration.test_sandbox import (
    AUTH,
    RETURN_URL,
    RecordingLoopback,
    Sessions,
    Webhooks,
    assert_yookassa_error,
    count,
    press,
    read_payment,
    receipt_for,
    serving,
    yookassa_time,
)


@pytest.fixture
def receipts() -> bool:
    return True


@pytest.fixture
def settings(settings: Settings, receipts: bool) -> Settings:
    return settings.model_copy(update={"receipts": receipts})


@pytest.fixture
def webhooks() -> Webhooks:
    return Webhooks()


@pytest.fixture
async def app(settings: Settings, clock: FrozenClock, webhooks: Webhooks) -> AsyncIterator[FastAPI]:
    loopback = RecordingLoopback("billing.test", webhooks)
    application = create_app(settings, clock=clock, outbound_transport=loopback)
    loopback.app = application
    async with LifespanManager(application):
        yield application


def payment_body(**changes: Any) -> dict[str, Any]:
    return {
        "amount": {"value": "499.00", "currency": "RUB"},
        "capture": True,
        "confirmation": {"type": "redirect", "return_url": RETURN_URL},
        "description": "Premium, 1 мес.",
        **changes,
    }


async def post(client: httpx.AsyncClient, path: str, body: Any, key: str | None = None
               ) -> httpx.Response:  # fmt: skip
    headers = {**AUTH, "Idempotence-Key": key or str(uuid.uuid4())}
    return await client.post(f"/sandbox/v3{path}", json=body, headers=headers)


async def paid(client: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    created = await post(client, "/payments", payment_body(receipt=receipt_for(), **changes))
    assert created.status_code == 200, created.text
    assert (await press(client, created.json()["id"], notify="0")).status_code == 303
    return await read_payment(client, created.json()["id"])


async def listed(client: httpx.AsyncClient, query: str) -> list[dict[str, Any]]:
    response = await client.get(f"/sandbox/v3/receipts?{query}", headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "list"
    items: list[dict[str, Any]] = body["items"]
    return items


def item(**changes: Any) -> dict[str, Any]:
    [only] = receipt_for()["items"]
    return {**only, **changes}


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("receipt", ["absent", None])
async def test_a_payment_without_a_receipt_is_refused_and_nothing_is_created(
    client: httpx.AsyncClient, sessions: Sessions, receipt: str | None
) -> None:
    body = payment_body() if receipt == "absent" else payment_body(receipt=None)

    response = await post(client, "/payments", body)

    answer = assert_yookassa_error(response, 400, "invalid_request")
    assert answer["parameter"] == "receipt"
    assert await count(sessions, SandboxPayment) == 0


TWO_ITEMS = [item(amount={"value": "200.00", "currency": "RUB"}, quantity="2"),
             item(amount={"value": "99.00", "currency": "RUB"})]  # fmt: skip


@pytest.mark.parametrize(
    ("receipt", "parameter"),
    [
        ({"items": [item()]}, "receipt.customer"),
        (receipt_for(customer={}), "receipt.customer"),
        (receipt_for(customer={"full_name": "Иван Петров"}), "receipt.customer"),
        (receipt_for(customer={"email": "not-an-address"}), "receipt.customer.email"),
        (receipt_for(customer={"phone": "call me"}), "receipt.customer.phone"),
        ({"customer": {"email": "v@example.com"}}, "receipt.items"),
        (receipt_for(items=[]), "receipt.items"),
        (receipt_for(items=[item(description="")]), "receipt.items[0].description"),
        (receipt_for(items=[item(description="d" * 129)]), "receipt.items[0].description"),
        (receipt_for(items=[item(quantity=0)]), "receipt.items[0].quantity"),
        (receipt_for(items=[item(quantity="-1")]), "receipt.items[0].quantity"),
        (receipt_for(items=[item(quantity="one")]), "receipt.items[0].quantity"),
        (receipt_for(items=[item(quantity=True)]), "receipt.items[0].quantity"),
        (receipt_for(items=[item(quantity="1e999999")]), "receipt.items[0].quantity"),
        (receipt_for(items=[{**item(), "amount": None}]), "receipt.items[0].amount"),
        (receipt_for(items=[item(amount={"value": "0.00", "currency": "RUB"})]),
         "receipt.items[0].amount.value"),
        (receipt_for(items=[item(amount={"value": "499.00", "currency": "USD"})]),
         "receipt.items[0].amount.currency"),
        (receipt_for(items=[item(vat_code=0)]), "receipt.items[0].vat_code"),
        (receipt_for(items=[item(vat_code=13)]), "receipt.items[0].vat_code"),
        (receipt_for(items=[item(vat_code="VAT20")]), "receipt.items[0].vat_code"),
        (receipt_for(items=[item(vat_code=True)]), "receipt.items[0].vat_code"),
        (receipt_for(items=[{k: v for k, v in item().items() if k != "vat_code"}]),
         "receipt.items[0].vat_code"),
        (receipt_for(items=[item(payment_subject="subscription")]),
         "receipt.items[0].payment_subject"),
        (receipt_for(items=[{k: v for k, v in item().items() if k != "payment_subject"}]),
         "receipt.items[0].payment_subject"),
        (receipt_for(items=[item(payment_mode="later")]), "receipt.items[0].payment_mode"),
        (receipt_for(items=[{k: v for k, v in item().items() if k != "payment_mode"}]),
         "receipt.items[0].payment_mode"),
        (receipt_for(items=[item(measure="bucket")]), "receipt.items[0].measure"),
        (receipt_for(items=[TWO_ITEMS[0], {**TWO_ITEMS[1], "vat_code": 99}]),
         "receipt.items[1].vat_code"),
        (receipt_for(tax_system_code=7), "receipt.tax_system_code"),
        (receipt_for(tax_system_code=0), "receipt.tax_system_code"),
        (receipt_for("498.99"), "receipt"),
        (receipt_for(items=[*TWO_ITEMS, item(amount={"value": "0.01", "currency": "RUB"})]),
         "receipt"),
        (receipt_for(items=[item(amount={"value": "166.33", "currency": "RUB"}, quantity=3)]),
         "receipt"),
        ("a receipt", "receipt"),
    ],
    ids=[
        "no-customer", "empty-customer", "customer-without-contact", "bad-email", "bad-phone",
        "no-items", "empty-items", "empty-description", "long-description", "zero-quantity",
        "negative-quantity", "quantity-not-a-number", "quantity-bool", "huge-quantity",
        "no-amount", "zero-amount", "other-currency", "vat-code-0", "vat-code-13",
        "vat-code-text", "vat-code-bool", "no-vat-code", "unknown-subject", "no-subject",
        "unknown-mode", "no-mode", "unknown-measure", "second-item", "tax-system-7",
        "tax-system-0", "short-by-a-kopeck", "over-by-a-kopeck", "quantity-times-price-short",
        "not-an-object",
    ],
)  # fmt: skip
async def test_an_unusable_payment_receipt_is_a_400_naming_the_parameter(
    client: httpx.AsyncClient, sessions: Sessions, receipt: Any, parameter: str
) -> None:
    response = await post(client, "/payments", payment_body(receipt=receipt))

    answer = assert_yookassa_error(response, 400, "invalid_request")
    assert answer["parameter"] == parameter
    assert await count(sessions, SandboxPayment) == 0


async def test_a_refund_without_a_valid_receipt_is_refused_and_refunds_nothing(
    client: httpx.AsyncClient, sessions: Sessions
) -> None:
    payment = await paid(client)
    amount = {"value": "100.00", "currency": "RUB"}
    cases = [
        ({"payment_id": payment["id"], "amount": amount}, "receipt"),
        ({"payment_id": payment["id"], "amount": amount, "receipt": receipt_for("499.00")},
         "receipt"),
        ({"payment_id": payment["id"], "amount": amount,
          "receipt": receipt_for(customer={})}, "receipt.customer"),
        ({"payment_id": payment["id"], "amount": amount,
          "receipt": receipt_for("100.00", "USD")}, "receipt.items[0].amount.currency"),
        ({"payment_id": payment["id"], "amount": amount,
          "receipt": receipt_for("100.00", items=[item(vat_code=13)])},
         "receipt.items[0].vat_code"),
    ]  # fmt: skip
    for body, parameter in cases:
        answer = assert_yookassa_error(await post(client, "/refunds", body), 400, "invalid_request")
        assert answer["parameter"] == parameter, body

    assert await count(sessions, SandboxRefund) == 0
    assert "refunded_amount" not in await read_payment(client, payment["id"])
    assert [receipt["type"] for receipt in await listed(client, f"payment_id={payment['id']}")] == [
        "payment"
    ]


# --- what is kept and listed -------------------------------------------------------------------


async def test_a_payment_s_receipt_is_listed_once_it_succeeded_with_what_was_sent(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    receipt = receipt_for(
        customer={"email": "viewer@example.com", "phone": "79001234567"},
        items=TWO_ITEMS, tax_system_code=2,
    )  # fmt: skip
    created = (await post(client, "/payments", payment_body(receipt=receipt))).json()
    assert created["receipt_registration"] == "pending"
    assert await listed(client, f"payment_id={created['id']}") == []  # not registered yet

    clock.advance(timedelta(minutes=3))
    await press(client, created["id"], notify="0")

    payment = await read_payment(client, created["id"])
    assert payment["receipt_registration"] == "succeeded"
    [kept] = await listed(client, f"payment_id={created['id']}")
    assert kept["id"].startswith("rt-")
    assert kept["fiscal_document_number"].isdigit() and kept["fiscal_attribute"].isdigit()
    assert kept["fiscal_storage_number"].isdigit() and len(kept["fiscal_storage_number"]) == 16
    uuid.UUID(kept["fiscal_provider_id"])
    assert kept == {
        "id": kept["id"],
        "type": "payment",
        "payment_id": created["id"],
        "status": "succeeded",
        "fiscal_document_number": kept["fiscal_document_number"],
        "fiscal_storage_number": kept["fiscal_storage_number"],
        "fiscal_attribute": kept["fiscal_attribute"],
        "registered_at": yookassa_time(clock.now()),
        "fiscal_provider_id": kept["fiscal_provider_id"],
        "items": [
            {"description": "Premium, 1 мес.", "quantity": 2.0,
             "amount": {"value": "200.00", "currency": "RUB"}, "vat_code": 1,
             "payment_subject": "service", "payment_mode": "full_payment", "measure": "piece"},
            {"description": "Premium, 1 мес.", "quantity": 1.0,
             "amount": {"value": "99.00", "currency": "RUB"}, "vat_code": 1,
             "payment_subject": "service", "payment_mode": "full_payment", "measure": "piece"},
        ],
        "settlements": [{"type": "cashless", "amount": {"value": "499.00", "currency": "RUB"}}],
        "customer": {"email": "viewer@example.com", "phone": "79001234567"},
        "tax_system_code": 2,
    }  # fmt: skip
    one = await client.get(f"/sandbox/v3/receipts/{kept['id']}", headers=AUTH)
    assert (one.status_code, one.json()) == (200, kept)
    model = ReceiptResponse(kept)  # the official SDK's model reads it
    assert (model.type, model.status, model.tax_system_code) == ("payment", "succeeded", 2)
    assert [i.quantity for i in model.items] == [Decimal("2.0"), Decimal("1.0")]


async def test_a_refund_s_receipt_is_listed_by_payment_and_by_refund(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    payment = await paid(client)
    clock.advance(timedelta(minutes=5))
    body = {"payment_id": payment["id"], "amount": {"value": "100.00", "currency": "RUB"},
            "receipt": receipt_for("100.00", customer={"email": "other@example.com"})}  # fmt: skip
    refund = (await post(client, "/refunds", body, key="refund-1")).json()
    again = await post(client, "/refunds", body, key="refund-1")  # the same request again
    assert again.json()["id"] == refund["id"]

    by_payment = await listed(client, f"payment_id={payment['id']}")
    assert [(r["type"], r.get("refund_id")) for r in by_payment] == [
        ("refund", refund["id"]), ("payment", None),
    ]  # newest first; the repeat kept no second receipt  # fmt: skip
    [by_refund] = await listed(client, f"refund_id={refund['id']}")
    assert by_refund == by_payment[0]
    assert by_refund["payment_id"] == payment["id"]
    assert by_refund["registered_at"] == yookassa_time(clock.now())
    assert by_refund["customer"] == {"email": "other@example.com"}
    assert by_refund["items"] == [{**item(), "quantity": 1.0,
                                   "amount": {"value": "100.00", "currency": "RUB"}}]  # fmt: skip
    assert by_refund["settlements"][0]["amount"] == {"value": "100.00", "currency": "RUB"}
    assert "tax_system_code" not in by_refund
    one = await client.get(f"/sandbox/v3/receipts/{by_refund['id']}", headers=AUTH)
    assert (one.status_code, one.json()) == (200, by_refund)
    assert await listed(client, f"refund_id={uuid.uuid4()}") == []
    assert await listed(client, f"payment_id={uuid.uuid4()}") == []


async def test_a_declined_payment_is_never_receipted(client: httpx.AsyncClient) -> None:
    created = (await post(client, "/payments", payment_body(receipt=receipt_for()))).json()

    await press(client, created["id"], "decline", notify="0")

    assert (await read_payment(client, created["id"]))["receipt_registration"] == "canceled"
    assert await listed(client, f"payment_id={created['id']}") == []


async def test_concurrent_refunds_each_keep_their_receipt(
    client: httpx.AsyncClient, sessions: Sessions
) -> None:
    payment = await paid(client)
    body = {"payment_id": payment["id"], "amount": {"value": "100.00", "currency": "RUB"},
            "receipt": receipt_for("100.00")}  # fmt: skip

    answers = await asyncio.gather(*(post(client, "/refunds", body) for _ in range(4)))

    assert [answer.status_code for answer in answers] == [200] * 4
    refunds = {answer.json()["id"] for answer in answers}
    kept = await listed(client, f"payment_id={payment['id']}")
    assert {r["refund_id"] for r in kept if r["type"] == "refund"} == refunds
    assert await count(sessions, SandboxRefund) == 4


async def test_receipts_are_listed_in_pages_and_filtered(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    first = await paid(client)
    clock.advance(timedelta(minutes=1))
    second = await paid(client)
    clock.advance(timedelta(minutes=1))
    body = {"payment_id": second["id"], "amount": {"value": "1.00", "currency": "RUB"},
            "receipt": receipt_for("1.00")}  # fmt: skip
    assert (await post(client, "/refunds", body)).status_code == 200

    page = await client.get("/sandbox/v3/receipts?limit=2", headers=AUTH)
    parsed = ReceiptListResponse(page.json())
    assert [(r.type, r.payment_id) for r in parsed.items] == [
        ("refund", second["id"]), ("payment", second["id"]),
    ]  # fmt: skip
    rest = await client.get(f"/sandbox/v3/receipts?limit=2&cursor={parsed.next_cursor}",
                            headers=AUTH)  # fmt: skip
    assert [r["payment_id"] for r in rest.json()["items"]] == [first["id"]]
    assert "next_cursor" not in rest.json()
    since = yookassa_time(clock.now())
    assert [r["type"] for r in await listed(client, f"created_at.gte={since}")] == ["refund"]
    assert await listed(client, "status=pending") == []
    for query, parameter in (("refund_id=../x", "refund_id"), ("payment_id=%20", "payment_id"),
                             ("status=done", "status"), ("limit=101", "limit")):  # fmt: skip
        bad = await client.get(f"/sandbox/v3/receipts?{query}", headers=AUTH)
        assert assert_yookassa_error(bad, 400, "invalid_request")["parameter"] == parameter
    unknown = await client.get(f"/sandbox/v3/receipts/rt-{uuid.uuid4()}", headers=AUTH)
    assert_yookassa_error(unknown, 404, "not_found")
    assert_yookassa_error(await client.get("/sandbox/v3/receipts"), 401, "invalid_credentials")


async def test_taking_part_of_a_receipted_payment_needs_the_receipt_of_that_part(
    client: httpx.AsyncClient,
) -> None:
    two_stage = payment_body(capture=False, receipt=receipt_for())
    created = (await post(client, "/payments", two_stage)).json()
    await press(client, created["id"], notify="0")
    part = {"amount": {"value": "300.00", "currency": "RUB"}}
    capture = f"/payments/{created['id']}/capture"

    refused = await post(client, capture, part)
    wrong = await post(client, capture, {**part, "receipt": receipt_for("499.00")})
    assert assert_yookassa_error(refused, 400, "invalid_request")["parameter"] == "receipt"
    assert assert_yookassa_error(wrong, 400, "invalid_request")["parameter"] == "receipt"
    assert (await read_payment(client, created["id"]))["status"] == "waiting_for_capture"

    taken = await post(client, capture, {**part, "receipt": receipt_for("300.00")})

    assert taken.status_code == 200, taken.text
    [kept] = await listed(client, f"payment_id={created['id']}")
    assert kept["items"][0]["amount"] == {"value": "300.00", "currency": "RUB"}


# --- receipts off ----------------------------------------------------------------------------


@pytest.mark.parametrize("receipts", [False])
async def test_with_receipts_off_a_receipt_is_optional_but_still_checked(
    client: httpx.AsyncClient, sessions: Sessions
) -> None:
    without = await post(client, "/payments", payment_body())
    assert without.status_code == 200, without.text
    assert "receipt_registration" not in without.json()
    await press(client, without.json()["id"], notify="0")
    refunded = await post(
        client,
        "/refunds",
        {"payment_id": without.json()["id"], "amount": {"value": "1.00", "currency": "RUB"}},
    )
    assert refunded.status_code == 200, refunded.text  # fmt: skip
    assert await listed(client, f"payment_id={without.json()['id']}") == []

    bad = await post(client, "/payments", payment_body(receipt=receipt_for(customer={})))
    assert assert_yookassa_error(bad, 400, "invalid_request")["parameter"] == "receipt.customer"
    assert await count(sessions, SandboxPayment) == 1

    given = await paid(client)
    assert [r["type"] for r in await listed(client, f"payment_id={given['id']}")] == ["payment"]
    me = (await client.get("/sandbox/v3/me", headers=AUTH)).json()
    assert (me["fiscalization_enabled"], me["fiscalization"]) == (False, {"enabled": False})


async def test_me_tells_the_shop_sends_receipts(client: httpx.AsyncClient) -> None:
    me = (await client.get("/sandbox/v3/me", headers=AUTH)).json()
    assert me["fiscalization_enabled"] is True
    assert me["fiscalization"] == {"enabled": True, "provider": "avanpost"}


# --- the official ЮKassa SDK ------------------------------------------------------------------


def test_the_official_sdk_is_refused_without_a_receipt_and_lists_the_ones_it_sent(
    database_url: str, tmp_path: Path, clock: FrozenClock, webhooks: Webhooks
) -> None:
    import yookassa
    from yookassa.domain.exceptions import BadRequestError

    with serving(database_url, tmp_path, clock, webhooks) as public_url:
        yookassa.Configuration.configure(
            SANDBOX_SHOP_ID, SANDBOX_SECRET_KEY, api_url=f"{public_url}/sandbox/v3"
        )
        try:
            request = payment_body()
            with pytest.raises(BadRequestError) as refused:
                yookassa.Payment.create(request)
            error = refused.value.args[0]
            assert (error["type"], error["code"], error["parameter"]) == (
                "error", "invalid_request", "receipt",
            )  # fmt: skip
            assert yookassa.Payment.list({"limit": 10}).items == []  # nothing was created

            receipt = receipt_for(items=TWO_ITEMS, tax_system_code=1)
            created = yookassa.Payment.create({**request, "receipt": receipt})
            assert created.receipt_registration == "pending"
            assert httpx.post(created.confirmation.confirmation_url,
                              data={"action": "pay", "notify": "0"}).status_code == 303  # fmt: skip
            clock.advance(timedelta(minutes=1))
            with pytest.raises(BadRequestError) as refund_refused:
                yookassa.Refund.create(
                    {"payment_id": created.id, "amount": {"value": "99.00", "currency": "RUB"}}
                )
            assert refund_refused.value.args[0]["parameter"] == "receipt"  # fmt: skip
            refund = yookassa.Refund.create({
                "payment_id": created.id, "amount": {"value": "99.00", "currency": "RUB"},
                "receipt": receipt_for("99.00"),
            })  # fmt: skip

            listed = yookassa.Receipt.list({"payment_id": created.id})
            assert isinstance(listed, ReceiptListResponse)
            assert [(r.type, r.refund_id) for r in listed.items] == [
                ("refund", refund.id), ("payment", None),
            ]  # fmt: skip
            sale = listed.items[1]
            assert (sale.payment_id, sale.status, sale.tax_system_code) == (
                created.id, "succeeded", 1,
            )  # fmt: skip
            assert sale.registered_at is not None and sale.fiscal_document_number.isdigit()
            assert [(i.description, i.quantity, i.amount.value, i.vat_code, i.payment_subject,
                     i.payment_mode, i.measure) for i in sale.items] == [
                ("Premium, 1 мес.", Decimal("2.0"), Decimal("200.00"), 1, "service",
                 "full_payment", "piece"),
                ("Premium, 1 мес.", Decimal("1.0"), Decimal("99.00"), 1, "service",
                 "full_payment", "piece"),
            ]  # fmt: skip
            [refund_receipt] = yookassa.Receipt.list({"refund_id": refund.id}).items
            assert refund_receipt.items[0].amount.value == Decimal("99.00")
            assert yookassa.Receipt.find_one(sale.id).id == sale.id
        finally:
            yookassa.Configuration.configure(None, None)

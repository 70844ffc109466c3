"""54-FZ fiscal receipts as a ЮKassa shop with receipts enabled has them: the ``receipt`` of a
payment, of a refund or of a partial capture is checked against what is paid (its fields are
checked in ``schemas``), kept on the payment's record, and shown as ЮKassa's receipt objects
(``GET /v3/receipts``, the SDK's ``ReceiptResponse``).

Where they are kept: on the payment's record, in the sandbox's state (``models.STATE_KEY``) —
``receipt`` for the sale, ``refund_receipts`` for its refunds — written in the same
transaction as the payment or the refund, so a refused request keeps nothing. A payment's
receipt is registered when the payment succeeds, as ЮKassa registers it: until then it is
not listed, and a payment canceled is never receipted.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.money import format_amount, parse_amount
from billing.sandbox.models import SandboxPayment, SandboxPaymentStatus, state_of
from billing.sandbox.schemas import ReceiptIn, YooKassaError, invalid_request, money, timestamp

# The sandbox's one online cash register: its fiscal storage (a test one: 9999…) and the
# receipts service ЮKassa names in ``/me``.
FISCAL_STORAGE_NUMBER = "9999078900012345"
FISCAL_PROVIDER = "avanpost"
PAYMENT = "payment"
REFUND = "refund"
REGISTERED = "succeeded"  # the sandbox's register never fails


def receipt_missing() -> YooKassaError:
    return invalid_request(
        "Receipt is missing or illegal: this shop sends 54-FZ receipts, so every payment"
        " and refund needs one",
        "receipt",
    )


def check_receipt(
    receipt: ReceiptIn | None, *, amount: int, currency: str, required: bool, what: str
) -> None:
    """What ЮKassa checks across a receipt's fields: it is there when the shop needs one, and
    its items, in the payment's currency, add up to exactly ``amount`` (minor units) of
    ``what`` ("payment", "refund", "capture")."""
    if receipt is None:
        if required:
            raise receipt_missing()
        return
    for index, item in enumerate(receipt.items):
        if item.amount.currency != currency:
            raise invalid_request(
                f"The item's currency differs from the {what}'s ({currency})",
                f"receipt.items[{index}].amount.currency",
            )
    total = sum(item.amount.value * item.quantity for item in receipt.items)
    if total != amount:
        raise invalid_request(
            f"The receipt's items add up to {_units(total)} {currency}, the {what} is"
            f" {format_amount(amount)} {currency}: the sum of amount × quantity must equal it",
            "receipt",
        )


def _units(minor: Decimal | int) -> str:
    return str((Decimal(minor) / 100).quantize(Decimal("0.01")))


def new_receipt(
    receipt: ReceiptIn,
    *,
    refund_id: str | None = None,
    registered_at: datetime | None = None,
) -> dict[str, Any]:
    """The receipt as kept (JSON): what was asked, and the numbers the register gives it."""
    kept: dict[str, Any] = {
        "id": f"rt-{uuid.uuid4()}",
        "fiscal_document_number": str(secrets.randbelow(99_999) + 1),
        "fiscal_attribute": str(secrets.randbelow(9_000_000_000) + 1_000_000_000),
        "fiscal_provider_id": str(uuid.uuid4()),
        "customer": receipt.customer.model_dump(exclude_none=True),
        "items": [
            {
                "description": item.description,
                "quantity": str(item.quantity),  # exact; shown as ЮKassa's number
                "amount": money(item.amount.value, item.amount.currency),
                "vat_code": item.vat_code,
                "payment_subject": item.payment_subject,
                "payment_mode": item.payment_mode,
                **({"measure": item.measure} if item.measure is not None else {}),
            }
            for item in receipt.items
        ],
    }
    if receipt.tax_system_code is not None:
        kept["tax_system_code"] = receipt.tax_system_code
    if refund_id is not None:
        kept["refund_id"] = refund_id
    if registered_at is not None:
        kept["registered_at"] = registered_at.isoformat()
    return kept


def payment_receipt(payment: SandboxPayment) -> dict[str, Any] | None:
    kept = state_of(payment.merchant_metadata).get("receipt")
    return kept if isinstance(kept, dict) else None


def refund_receipts(payment: SandboxPayment) -> list[dict[str, Any]]:
    kept = state_of(payment.merchant_metadata).get("refund_receipts")
    return kept if isinstance(kept, list) else []


def receipt_registration(payment: SandboxPayment) -> str | None:
    """The payment's ``receipt_registration``: where its receipt stands, if it has one."""
    if payment_receipt(payment) is None:
        return None
    if payment.status == SandboxPaymentStatus.SUCCEEDED:
        return REGISTERED
    if payment.status == SandboxPaymentStatus.CANCELED:
        return "canceled"
    return "pending"


@dataclass(frozen=True)
class Registered:
    """A registered receipt: its id and time (``created_at``: what lists are ordered and
    paged by) and the object ЮKassa shows."""

    id: str
    created_at: datetime
    body: dict[str, Any]


def registered_receipts(payment: SandboxPayment) -> list[Registered]:
    """The payment's receipts the register holds: its sale's once it succeeded, its refunds'."""
    found: list[Registered] = []
    sale = payment_receipt(payment)
    succeeded = payment.status == SandboxPaymentStatus.SUCCEEDED
    if sale is not None and succeeded and payment.captured_at is not None:
        found.append(_registered(sale, PAYMENT, payment, payment.captured_at))
    for kept in refund_receipts(payment):
        moment = datetime.fromisoformat(kept["registered_at"])
        found.append(_registered(kept, REFUND, payment, moment))
    return found


def _number(quantity: str) -> float:
    """``quantity`` is a JSON number in ЮKassa's receipt object. Never money, and within
    ``schemas``' bounds (9 digits, 6 decimals) a float gives back exactly its digits."""
    return float(quantity)


def _registered(
    kept: dict[str, Any], kind: str, payment: SandboxPayment, registered_at: datetime
) -> Registered:
    body: dict[str, Any] = {"id": kept["id"], "type": kind, "payment_id": payment.id}
    if kind == REFUND:
        body["refund_id"] = kept["refund_id"]
    # Exact: ``check_receipt`` accepted only items adding up to whole kopecks.
    total = sum(
        parse_amount(item["amount"]["value"]) * Decimal(item["quantity"]) for item in kept["items"]
    )
    body |= {
        "status": REGISTERED,
        "fiscal_document_number": kept["fiscal_document_number"],
        "fiscal_storage_number": FISCAL_STORAGE_NUMBER,
        "fiscal_attribute": kept["fiscal_attribute"],
        "registered_at": timestamp(registered_at),
        "fiscal_provider_id": kept["fiscal_provider_id"],
        "items": [{**item, "quantity": _number(item["quantity"])} for item in kept["items"]],
        "settlements": [{"type": "cashless", "amount": money(int(total), payment.currency)}],
        # Not in ЮKassa's receipt object, which keeps the buyer's contact to itself: shown
        # here so that a test can see where the receipt went.
        "customer": kept["customer"],
    }
    if "tax_system_code" in kept:
        body["tax_system_code"] = kept["tax_system_code"]
    return Registered(kept["id"], registered_at, body)

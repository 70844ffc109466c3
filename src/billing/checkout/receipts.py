"""54-FZ fiscal receipts: what billing tells the tax service it sold (pure)."""

from __future__ import annotations

from billing.checkout.providers.base import Receipt, ReceiptItem

DESCRIPTION_LIMIT = 128  # characters, ЮKassa's limit for an item's description


def sale_receipt(
    *,
    tariff_name: str,
    months: int,
    amount: int,
    currency: str,
    customer_email: str,
    vat_code: int,
    tax_system_code: int | None,
) -> Receipt:
    """One item: the tariff for N months at the invoice's total (discount included), as a
    service paid in full. A refund's receipt repeats it: the whole sale is returned."""
    return Receipt(
        customer_email=customer_email,
        currency=currency,
        items=(
            ReceiptItem(
                description=f"{tariff_name}, {months} мес."[:DESCRIPTION_LIMIT],
                amount=amount,
                vat_code=vat_code,
            ),
        ),
        tax_system_code=tax_system_code,
    )

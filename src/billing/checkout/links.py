"""Signed links for the browser, which carries no token: the invoice's checkout link and
the page a viewer returns to from the provider's.

Each link carries an HMAC (keyed from the server's JWT signing secret, for its own purpose)
over what it names, so it cannot be altered or made up; the checkout link also covers the
invoice's expiry and stops working with it.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import datetime
from urllib.parse import urlencode

from billing.config import Settings


def _sign(settings: Settings, purpose: str, *parts: str) -> str:
    key = hmac.new(
        settings.jwt_signing_secret.encode(), f"billing {purpose} link".encode(), hashlib.sha256
    ).digest()
    return hmac.new(key, "\n".join(parts).encode(), hashlib.sha256).hexdigest()


def checkout_signature(settings: Settings, invoice_id: uuid.UUID, expires_at: datetime) -> str:
    return _sign(settings, "checkout", str(invoice_id), str(int(expires_at.timestamp())))


def checkout_url(settings: Settings, invoice_id: uuid.UUID, expires_at: datetime) -> str:
    signature = checkout_signature(settings, invoice_id, expires_at)
    return f"{settings.public_url}/api/v1/invoices/{invoice_id}/checkout?sig={signature}"


def return_signature(settings: Settings, payment_id: uuid.UUID) -> str:
    return _sign(settings, "return", str(payment_id))


def return_url(settings: Settings, payment_id: uuid.UUID) -> str:
    """Where the provider sends the viewer back (``BILLING_RETURN_URL``, by default billing's
    own page), naming the payment."""
    query = urlencode(
        {"payment_id": str(payment_id), "sig": return_signature(settings, payment_id)}
    )
    separator = "&" if "?" in settings.checkout_return_url else "?"
    return f"{settings.checkout_return_url}{separator}{query}"


def is_valid(signature: str | None, expected: str) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters (a 500 for `?sig=é`).
    return signature is not None and hmac.compare_digest(signature.encode(), expected.encode())

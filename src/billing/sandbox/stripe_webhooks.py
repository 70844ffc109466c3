"""Events the sandbox's Stripe mode sends to billing's ``POST /api/v1/webhooks/stripe``,
signed as Stripe signs them (https://docs.stripe.com/webhooks#verify-manually):
``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the
endpoint's signing secret>``, over the exact bytes sent.

``t`` is the real time, never the app's clock: the receiver compares it with its own real
clock (the SDK's 300 s tolerance), and a moved test clock must not make events stale.
Delivery is the ЮKassa sandbox's: logged, never raised; later ones after the response.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx

from billing.sandbox.notifications import Notifier

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/v1/webhooks/stripe"


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class StripeNotifier(Notifier):
    """The ЮKassa sandbox's notifier (``send_later``, ``drain``), sending signed events."""

    def __init__(self, client: httpx.AsyncClient, public_url: str, secret: str) -> None:
        super().__init__(client, public_url)
        self.url = f"{public_url}{WEBHOOK_PATH}"
        self._secret = secret

    async def send(self, body: dict[str, Any]) -> bool:
        """POST one event now; answers whether billing accepted it (2xx)."""
        payload = json.dumps(body, indent=2).encode()  # Stripe sends its events indented
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(payload, self._secret, int(time.time())),
        }
        try:
            response = await self._client.post(self.url, content=payload, headers=headers)
        except Exception as error:  # an event must never break the sandbox's answer
            log.warning("sandbox: Stripe event %s not delivered: %r", body.get("type"), error)
            return False
        if not response.is_success:
            log.warning(
                "sandbox: Stripe event %s answered %d", body.get("type"), response.status_code
            )
            return False
        return True

"""Notifications the sandbox sends to billing's ``POST /api/v1/webhooks/yookassa``.

A notification that fails (billing down, a non-2xx) is logged, never raised: ЮKassa would
retry, and billing's scheduler reconciles pending payments anyway.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/v1/webhooks/yookassa"
DRAIN_SECONDS = 15.0


class Notifier:
    def __init__(self, client: httpx.AsyncClient, public_url: str) -> None:
        self._client = client
        self.url = f"{public_url}{WEBHOOK_PATH}"
        self._pending: set[asyncio.Task[bool]] = set()

    async def send(self, body: dict[str, Any]) -> bool:
        """POST one notification now; answers whether billing accepted it (2xx)."""
        try:
            response = await self._client.post(self.url, json=body)
        except Exception as error:  # a notification must never break the sandbox's answer
            log.warning("sandbox: notification %s not delivered: %r", body.get("event"), error)
            return False
        if not response.is_success:
            log.warning(
                "sandbox: notification %s answered %d", body.get("event"), response.status_code
            )
            return False
        return True

    def send_later(self, body: dict[str, Any]) -> None:
        """Send after the current request has answered, as ЮKassa does.

        Needed for refunds: billing asks for a refund while holding its payment row, and its
        webhook handler would wait for that same row — a notification sent inside the refund
        request would wait forever for the request it is part of.
        """
        task = asyncio.create_task(self.send(body))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for the notifications still on their way (at shutdown, and in tests); each is
        bounded by the client's timeouts, the whole by ``DRAIN_SECONDS``."""
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending), timeout=DRAIN_SECONDS)
        for task in late:
            task.cancel()

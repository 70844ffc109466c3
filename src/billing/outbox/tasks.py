"""The ``deliver-outbox`` job: one relay run with the sinks the configuration names."""

from __future__ import annotations

from datetime import datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.config import Settings
from billing.outbox.relay import deliver_outbox
from billing.outbox.sinks import open_sinks


async def run_deliver_outbox(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    client: httpx.AsyncClient,
    now: datetime,
) -> dict[str, int]:
    """Deliver the due events; answers the counts ``delivered``, ``retried``, ``parked`` and
    ``deferred`` (not tried: their service was unreachable earlier in the run)."""
    async with open_sinks(settings, client) as sinks:
        report = await deliver_outbox(
            sessions,
            sinks,
            now=now,
            max_attempts=settings.outbox_max_attempts,
            retry_ceiling=settings.outbox_retry_ceiling,
        )
    return report.as_dict()

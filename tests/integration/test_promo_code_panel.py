"""The panel's promo-code edit over HTTP (Russian, the default): a form sent back with an
ended code's end unchanged keeps it, and the list's Deactivate / Reactivate actions say
what they did and what they refused. The browser test is tests/e2e/test_admin_promo_edit.py."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from billing.db import transaction
from billing.models import PromoCode
from tests.integration.test_admin_panel_http import audit, marta
from tests.integration.test_promo_codes import Sessions, add_tariff, promo_row, reserve

__all__ = ["marta"]  # the fixture: marketing's browser, logged in


async def add_promo(sessions: Sessions, code: str, **terms: object) -> uuid.UUID:
    promo = PromoCode(id=uuid.uuid4(), code=code, percent=10, **terms)
    async with transaction(sessions) as session:
        session.add(promo)
    return promo.id


def shown_value(page: str, name: str) -> str:
    """What the form's box shows (and a browser sends back untouched)."""
    box = re.search(rf'<input[^>]*name="{name}"[^>]*>', page)
    assert box is not None, name
    value = re.search(r'value="([^"]*)"', box.group(0))
    return "" if value is None else html.unescape(value.group(1))


async def test_an_ended_code_gets_a_new_limit_with_its_end_sent_back_as_shown(
    marta: httpx.AsyncClient, sessions: Sessions
) -> None:
    # Shown to the second: sent back, it is not the stored instant, yet means "keep it".
    ended = datetime.now(UTC).replace(microsecond=123_456) - timedelta(days=3)
    promo_id = await add_promo(
        sessions, "ENDED", valid_until=ended, max_redemptions=5, is_active=False
    )
    form = (await marta.get(f"/admin/promo-code/edit/{promo_id}")).text

    response = await marta.post(
        f"/admin/promo-code/edit/{promo_id}",
        data={
            "valid_from": shown_value(form, "valid_from"),
            "valid_until": shown_value(form, "valid_until"),
            "max_redemptions": "10",
            "save": "Сохранить",
        },
    )

    assert response.status_code == 302, response.text
    row = await promo_row(sessions, "ENDED")
    assert row is not None and (row.max_redemptions, row.valid_until) == (10, ended)
    [entry] = await audit(sessions)
    assert (entry.actor, entry.action) == ("marta", "update")
    assert (entry.before["max_redemptions"], entry.after["max_redemptions"]) == (5, 10)


async def test_the_list_s_actions_say_what_they_did_and_what_they_refused(
    marta: httpx.AsyncClient, sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions)
    used_up = await add_promo(sessions, "USEDUP", max_redemptions=1)
    await reserve(sessions, "USEDUP", tariff, uuid.uuid4(), datetime.now(UTC))
    paused = await add_promo(sessions, "PAUSED", is_active=False)
    async with transaction(sessions) as session:
        (await session.get_one(PromoCode, used_up)).is_active = False

    pks = f"{used_up},{paused},not-an-id"
    response = await marta.get(
        f"/admin/promo-code/action/reactivate?pks={pks}", follow_redirects=True
    )

    assert response.status_code == 200
    shown = html.unescape(response.text)
    assert "Снова включено промокодов: 1" in shown
    assert "USEDUP закончился или исчерпан: сначала продлите срок или поднимите лимит" in shown
    assert "промокод не найден" in shown
    assert [(p.code, p.is_active) for p in await rows(sessions)] == [
        ("PAUSED", True),
        ("USEDUP", False),
    ]
    assert [(e.action, e.entity_id) for e in await audit(sessions)] == [("reactivate", str(paused))]

    again = await marta.get(f"/admin/promo-code/action/deactivate?pks={paused}")
    assert again.status_code == 302
    assert [e.action for e in await audit(sessions)] == ["reactivate", "deactivate"]


async def rows(sessions: Sessions) -> list[PromoCode]:
    async with sessions() as session:
        return list(await session.scalars(select(PromoCode).order_by(PromoCode.code)))

"""The browser's checkout, which carries no token: the invoice's signed checkout link, and
the page the provider sends the viewer back to, which finds out and says what happened."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.checkout import links
from billing.clock import FrozenClock
from billing.config import Settings
from tests.integration.checkout_helpers import (
    CHECKOUT_PAGES,
    add_tariff,
    both_providers,
    make_viewer,
)

Sessions = async_sessionmaker[AsyncSession]
AuthHeaders = Callable[..., dict[str, str]]
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
pytestmark = both_providers


async def test_the_checkout_link_needs_no_header_and_the_return_page_says_paid(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, provider_name: str
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id, months=3)

    to_provider = await client.get(invoice["checkout_url"], headers=BROWSER)
    assert to_provider.status_code == 303
    page_url = to_provider.headers["location"]
    assert page_url.startswith(CHECKOUT_PAGES[provider_name])
    # Pay without the provider telling billing: the return page has to find out itself.
    paid = await client.post(page_url, data={"action": "pay", "notify": "0"})
    assert paid.status_code == 303
    back = paid.headers["location"]
    assert back.startswith("http://billing.test/api/v1/checkout/return?payment_id=")

    landed = await client.get(back, headers=BROWSER)
    assert landed.status_code == 200
    assert landed.headers["content-type"].startswith("text/html")
    assert 'data-outcome="succeeded"' in landed.text
    assert "Оплачено" in landed.text and "«Premium»" in landed.text
    [subscription] = await viewer.subscriptions()
    assert subscription["status"] == "active"
    payment_id = parse_qs(urlsplit(back).query)["payment_id"][0]
    assert (await viewer.payment(payment_id))["status"] == "succeeded"

    english = await client.get(back, headers={**BROWSER, "Accept-Language": "en-GB,en;q=0.9"})
    assert "Paid" in english.text and "“Premium” access is open until" in english.text
    assert 'lang="en"' in english.text


async def test_a_declined_payment_s_page_offers_to_try_again(
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    provider_name: str,
    settings: Settings,
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id)
    page_url = (await client.get(invoice["checkout_url"])).headers["location"]
    declined = await client.post(page_url, data={"action": "decline"})
    back = declined.headers.get("location")
    if back is None:  # Stripe keeps the viewer on its page after a declined card
        assert provider_name == "stripe"
        payment = (await client.get("/api/v1/payments", headers=viewer.headers)).json()[0]
        back = links.return_url(settings, uuid.UUID(payment["id"]))  # the session's cancel_url
        landed = await client.get(back, headers={**BROWSER, "Accept-Language": "en"})
        assert 'data-outcome="pending"' in landed.text  # still open for another card
        return
    landed = await client.get(back, headers={**BROWSER, "Accept-Language": "en"})
    assert 'data-outcome="canceled"' in landed.text
    assert "Payment declined" in landed.text
    assert f'href="{invoice["checkout_url"]}"' in landed.text  # try again: a new payment
    again = await client.get(invoice["checkout_url"])
    assert again.status_code == 303
    assert again.headers["location"] != page_url


async def test_an_altered_or_expired_link_opens_nothing(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id)
    other = await viewer.issue_invoice(tariff.id)
    forged = invoice["checkout_url"][:-4] + "0000"
    borrowed = invoice["checkout_url"].replace(invoice["id"], other["id"])

    for url in (forged, borrowed, invoice["checkout_url"].split("?")[0]):
        as_api = await client.get(url)
        assert as_api.status_code == 403
        assert as_api.json()["code"] == "forbidden"
        as_browser = await client.get(url, headers=BROWSER)
        assert as_browser.status_code == 403
        assert "Ссылка недействительна" in as_browser.text
    assert (await client.get("/api/v1/payments", headers=viewer.headers)).json() == []

    clock.advance(timedelta(minutes=31))
    expired = await client.get(invoice["checkout_url"])
    assert expired.status_code == 409
    assert expired.json()["code"] == "invoice_expired"
    expired_page = await client.get(invoice["checkout_url"], headers=BROWSER)
    assert expired_page.status_code == 409
    assert "Счёт истёк" in expired_page.text

    tampered = await client.get(
        "/api/v1/checkout/return",
        params={"payment_id": invoice["id"], "sig": "0" * 64},
        headers=BROWSER,
    )
    assert tampered.status_code == 403
    assert "Ссылка недействительна" in tampered.text

"""/metrics labels every request by the full template of the route that answered it (API
routes with their /api/v1 prefix, the sandbox's apart under /sandbox, the docs, the admin
panel's own routes); ``unmatched`` is only for requests no route answers.

The counters belong to the process, so each test compares two scrapes."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.integration.checkout_helpers import add_tariff, make_viewer

Sessions = async_sessionmaker[AsyncSession]
Headers = Callable[..., dict[str, str]]
Key = tuple[str, str, str]  # method, route, status


async def scrape(client: httpx.AsyncClient) -> Counter[Key]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    counts: Counter[Key] = Counter()
    for family in text_string_to_metric_families(response.text):
        if family.name != "billing_http_requests":
            continue
        for sample in family.samples:
            if sample.name == "billing_http_requests_total":
                labels = sample.labels
                counts[(labels["method"], labels["route"], labels["status"])] = sample.value
    return counts


def routes_of(counts: Counter[Key]) -> set[str]:
    return {route for _, route, _ in counts}


async def test_api_routes_are_labelled_with_their_prefix_and_the_sandbox_apart(
    client: httpx.AsyncClient, sessions: Sessions, auth_headers: Headers
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    before = await scrape(client)

    invoice = await viewer.issue_invoice(tariff.id)
    payment = await viewer.start_payment(invoice["id"])  # billing calls the sandbox's API
    await viewer.press(payment, "pay", notify=False)  # the sandbox's checkout page
    missing = await client.get(f"/api/v1/invoices/{uuid.uuid4()}", headers=viewer.headers)
    other = await client.get(f"/api/v1/invoices/{uuid.uuid4()}", headers=viewer.headers)

    after = await scrape(client)
    delta = after - before
    assert missing.status_code == other.status_code == 404
    assert delta[("POST", "/api/v1/invoices", "201")] == 1
    assert delta[("POST", "/api/v1/invoices/{invoice_id}/payments", "201")] == 1
    # A 404 answered by a route is that route's, whatever the id: one label for both.
    assert delta[("GET", "/api/v1/invoices/{invoice_id}", "404")] == 2
    sandbox_calls = {
        key: n for key, n in delta.items() if key[:2] == ("POST", "/sandbox/v3/payments")
    }
    assert sum(sandbox_calls.values()) == 1, delta
    assert delta[("POST", "/sandbox/checkout/{payment_id}", "303")] == 1
    # The prefix-less templates of before are gone, and no raw id is a label.
    labels = routes_of(after)
    assert not labels & {"/invoices", "/invoices/{invoice_id}", "/v3/payments", "/tariffs",
                         "/checkout/{payment_id}"}  # fmt: skip
    assert not any(invoice["id"] in label or payment["id"] in label for label in labels)


async def test_docs_openapi_metrics_and_health_have_their_own_labels(
    client: httpx.AsyncClient,
) -> None:
    before = await scrape(client)

    for path in ("/docs", "/redoc", "/openapi.json", "/health"):
        assert (await client.get(path)).status_code == 200, path
    await scrape(client)

    delta = (await scrape(client)) - before
    for path in ("/docs", "/redoc", "/openapi.json", "/health"):
        assert delta[("GET", path, "200")] == 1, (path, delta)
    # A scrape is counted once it has answered: the first two show in the last.
    assert delta[("GET", "/metrics", "200")] == 2
    assert delta[("GET", "unmatched", "200")] == 0


async def test_the_admin_panel_is_labelled_by_its_own_routes(client: httpx.AsyncClient) -> None:
    before = await scrape(client)

    login = await client.get("/admin/login")
    index = await client.get("/admin/")
    stylesheet = await client.get("/admin/statics/css/main.css")

    delta = (await scrape(client)) - before
    assert (login.status_code, stylesheet.status_code) == (200, 200)
    assert delta[("GET", "/admin/login", "200")] == 1
    assert delta[("GET", "/admin/", str(index.status_code))] == 1  # to the login page
    assert delta[("GET", "/admin/statics", "200")] == 1


async def test_unmatched_is_only_for_paths_no_route_answers(
    client: httpx.AsyncClient,
) -> None:
    before = await scrape(client)

    nowhere = await client.get("/no/such/page")
    no_api = await client.get("/api/v1/no-such-thing")
    wrong_method = await client.delete("/api/v1/tariffs")
    slash = await client.get("/api/v1/tariffs/")  # redirected to the route

    delta = (await scrape(client)) - before
    assert (nowhere.status_code, no_api.status_code) == (404, 404)
    assert delta[("GET", "unmatched", "404")] == 2
    assert wrong_method.status_code == 405
    assert delta[("DELETE", "/api/v1/tariffs", "405")] == 1
    assert delta[("GET", "/api/v1/tariffs", str(slash.status_code))] == 1
    labels = routes_of(await scrape(client))
    assert not labels & {"/no/such/page", "/api/v1/no-such-thing"}

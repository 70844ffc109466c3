"""/docs and /redoc work with no internet: a real `billing serve` serves Swagger UI and ReDoc
with their assets itself, and Debian's Chromium, with every request off this machine
refused, renders the operation list from billing's own OpenAPI document."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
from playwright.async_api import Browser, Page, Route

from tests.e2e.test_admin_panel import browser, chromium, server

__all__ = ["browser", "chromium", "server"]  # the fixtures, shared with the admin-panel tests

FOREIGN = re.compile(r"cdn\.|jsdelivr|unpkg|googleapis|gstatic|fastapi\.tiangolo", re.IGNORECASE)
REDOC_BADGE = "https://cdn.redoc.ly/redoc/logo-mini.svg"
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "json"}


class _References(HTMLParser):
    """Every URL a page loads by itself: src and href attributes, and the spec's URL."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [
            value for name, value in attrs if name in {"src", "href", "spec-url"} and value
        ]

    def handle_data(self, data: str) -> None:  # Swagger UI's inline script: url: '/openapi.json'
        self.urls += re.findall(r"""url:\s*['"]([^'"]+)['"]""", data)


def references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


def test_the_docs_pages_load_only_billing_s_own_assets(server: str) -> None:
    for page in ("/docs", "/redoc"):
        response = httpx.get(f"{server}{page}", timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert not FOREIGN.search(response.text), FOREIGN.search(response.text)

        urls = references(response.text)
        assert any(url.endswith("/openapi.json") for url in urls), urls
        assert len(urls) >= 3, urls  # the script, the favicon and the document, at least
        for url in urls:
            absolute = urljoin(f"{server}{page}", url)
            assert urlsplit(absolute).netloc == urlsplit(server).netloc, url  # billing's own
            asset = httpx.get(absolute, timeout=10)
            assert asset.status_code == 200, url
            suffix = re.search(r"\.\w+$", urlsplit(absolute).path)
            expected = CONTENT_TYPES[suffix.group() if suffix else ".json"]
            assert expected in asset.headers["content-type"], (url, asset.headers)
            assert len(asset.content) > 100, url


async def offline_page(browser: Browser, server: str) -> tuple[Page, list[str]]:
    """A page whose every request to anywhere but billing is refused (and remembered)."""
    context = await browser.new_context()
    page = await context.new_page()
    refused: list[str] = []

    async def only_billing(route: Route) -> None:
        if urlsplit(route.request.url).netloc == urlsplit(server).netloc:
            await route.continue_()
        else:
            refused.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_billing)
    return page, refused


async def test_swagger_ui_renders_the_operations_offline(server: str, browser: Browser) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        document = (await http.get(f"{server}/openapi.json")).json()
    page, refused = await offline_page(browser, server)

    await page.goto(f"{server}/docs")
    await page.wait_for_selector(".opblock-summary-path", timeout=30_000)

    shown = await page.locator(".opblock-summary-path").all_inner_texts()
    # Every path of the document is listed (Swagger UI breaks long ones with zero-width
    # spaces), and every event billing sends, under its webhooks.
    assert {path.replace("\u200b", "") for path in shown} == set(document["paths"]) | set(
        document["webhooks"]
    )
    assert "/api/v1/invoices/{invoice_id}/payments" in document["paths"]
    assert refused == []


async def test_redoc_renders_the_operations_offline(server: str, browser: Browser) -> None:
    page, refused = await offline_page(browser, server)

    await page.goto(f"{server}/redoc")
    await page.wait_for_selector("h1", timeout=30_000)
    await page.wait_for_selector("[data-section-id^='tag/']", timeout=30_000)

    assert "Billing" in await page.locator("h1").first.inner_text()
    body = await page.locator("body").inner_text()
    assert "/api/v1/quotes" in body
    # All it asked of the internet is the "API docs by Redocly" badge's image, a decoration.
    assert set(refused) <= {REDOC_BADGE}, refused

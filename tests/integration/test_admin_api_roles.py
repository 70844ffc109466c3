"""The Admin API lets each role do what the admin panel lets it do: ``marketing`` everything
but what the panel keeps for ``admin`` (its ``admin_only`` views), checked over every
route under /api/v1/admin, so a new route cannot slip past."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from billing.admin.panel import ADMIN_ONLY
from billing.app import ADMIN_PREFIX

Headers = Callable[..., dict[str, str]]
# The panel's admin-only views, and the Admin API routes that show or change the same.
ADMIN_ONLY_ROUTES = {
    "outbox-event": re.compile(r"^/outbox(/|$)"),
    "admin-user": re.compile(r"^/admin-users(/|$)"),  # the panel's accounts: no API route yet
}


def admin_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) of the Admin API as its OpenAPI document lists them, path
    parameters filled with harmless values."""
    filled = {"months": "3", "code": "NOSUCHCODE"}
    found = []
    for path, operations in app.openapi()["paths"].items():
        if path.startswith(ADMIN_PREFIX):
            concrete = re.sub(
                r"\{(\w+)\}", lambda m: filled.get(m.group(1), str(uuid.uuid4())), path
            )
            found += [(method.upper(), concrete) for method in sorted(operations)]
    return found


def admin_only(path: str) -> bool:
    inside = path.removeprefix(ADMIN_PREFIX)
    return any(pattern.search(inside) for pattern in ADMIN_ONLY_ROUTES.values())


def test_the_admin_only_routes_are_the_panels_admin_only_views() -> None:
    assert set(ADMIN_ONLY_ROUTES) == set(ADMIN_ONLY)


async def test_marketing_is_refused_exactly_what_the_panel_keeps_for_admins(
    app: FastAPI, client: httpx.AsyncClient, auth_headers: Headers
) -> None:
    routes = admin_routes(app)
    assert ("GET", f"{ADMIN_PREFIX}/outbox") in routes
    assert len(routes) > 15
    for role in ("admin", "marketing"):
        headers = auth_headers(f"someone-{role}", role)
        for method, path in routes:
            # Empty bodies: a route that admits the role answers 404/409/422, not 403.
            response = await client.request(method, path, headers=headers, json={})
            refused = response.status_code == 403
            assert refused == (role == "marketing" and admin_only(path)), (
                role, method, path, response.status_code, response.text[:200],
            )  # fmt: skip
            if refused:
                assert response.json()["code"] == "forbidden"


@pytest.mark.parametrize("roles", [(), ("viewer",), ("service",)])
async def test_other_tokens_get_no_admin_route(
    app: FastAPI, client: httpx.AsyncClient, auth_headers: Headers, roles: tuple[str, ...]
) -> None:
    headers = auth_headers(uuid.uuid4(), *roles)
    for method, path in admin_routes(app):
        response = await client.request(method, path, headers=headers, json={})
        assert (response.status_code, response.json()["code"]) == (403, "forbidden"), path

"""/openapi.json documents every error each operation can answer as application/problem+json,
with the codes possible there, from the same declarations the code raises."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from billing.app import create_app
from billing.catalog import errors as catalog_errors
from billing.checkout import errors as checkout_errors
from billing.config import Settings
from billing.errors import PROBLEM_JSON, ApiError
from billing.outbox import errors as outbox_errors
from billing.pricing import errors as pricing_errors

Operation = tuple[str, str, dict[str, Any]]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    # The engine connects only when used: no database is needed to build the document.
    app = create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))
    schema: dict[str, Any] = app.openapi()
    return schema


def operations(document: dict[str, Any]) -> Iterator[Operation]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def codes(operation: dict[str, Any], status: int) -> list[str]:
    schema = operation["responses"][str(status)]["content"][PROBLEM_JSON]["schema"]
    enum: list[str] = schema["properties"]["code"]["enum"]
    return enum


def test_every_error_status_is_problem_json_with_its_codes(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            where = f"{method} {path} {status}"
            if _is_html_page(operation) and list(response["content"]) == ["text/html"]:
                continue  # a page for a browser, which says what went wrong in words
            # The browser's checkout link also answers a browser its refusals as pages.
            media = list(response["content"])
            assert media in ([PROBLEM_JSON], [PROBLEM_JSON, "text/html"]), where
            schema = response["content"][PROBLEM_JSON]["schema"]
            (base,) = schema["allOf"]
            assert base["$ref"] in (
                "#/components/schemas/ProblemDetails",
                "#/components/schemas/ValidationProblemDetails",
            ), where
            assert schema["properties"]["status"] == {"const": int(status)}, where
            assert schema["properties"]["code"]["enum"], where
            for code in schema["properties"]["code"]["enum"]:
                assert f"`{code}`" in response["description"], where


def _is_html_page(operation: dict[str, Any]) -> bool:
    return "text/html" in operation["responses"].get("200", {}).get("content", {})


def test_fastapi_s_own_validation_schema_is_gone(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    assert "HTTPValidationError" not in text
    assert '"#/components/schemas/ValidationError"' not in text
    problem = document["components"]["schemas"]["ProblemDetails"]
    assert set(problem["required"]) == {"type", "title", "status", "code", "detail", "instance"}
    validation = document["components"]["schemas"]["ValidationProblemDetails"]
    assert "errors" in validation["properties"]


def test_what_every_route_can_give_is_on_each_route_that_can_give_it(
    document: dict[str, Any],
) -> None:
    for method, path, operation in operations(document):
        responses = operation["responses"]
        where = f"{method} {path}"
        if operation.get("security"):
            assert "unauthorized" in codes(operation, 401), where
        if path.startswith("/api/v1/admin/") or path.endswith("/entitlements"):
            assert "forbidden" in codes(operation, 403), where
        elif operation.get("security"):  # a viewer's token: no role to lack
            assert "403" not in responses, where
        if "requestBody" in operation:
            assert "payload_too_large" in codes(operation, 413), where
        if "requestBody" in operation or operation.get("parameters"):
            assert "validation_error" in codes(operation, 422), where
        if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", ())):
            assert "idempotency_key_reused" in codes(operation, 409), where
        if path != "/health":
            assert "database_unavailable" in codes(operation, 503), where
    assert "503" not in document["paths"]["/health"]["get"]["responses"]


def test_routes_list_their_domain_s_errors(document: dict[str, Any]) -> None:
    paths = document["paths"]
    refund = paths["/api/v1/payments/{payment_id}/refund"]["post"]
    assert codes(refund, 404) == ["not_found"]
    assert set(codes(refund, 409)) == {
        "payment_not_refundable",
        "refund_window_expired",
        "idempotency_key_reused",
    }
    assert "provider_unavailable" in codes(refund, 503)
    invoice = paths["/api/v1/invoices"]["post"]
    assert set(codes(invoice, 404)) == {"tariff_not_found", "promo_code_not_found"}
    assert set(codes(invoice, 422)) == {
        "validation_error",
        "promo_code_expired",
        "promo_code_not_applicable",
        "promo_code_exhausted",
        "promo_code_already_used",
    }
    assert "provider_unavailable" not in codes(invoice, 503)  # no provider is asked
    quote = paths["/api/v1/quotes"]["post"]
    assert "409" in quote["responses"] and "tariff_inactive" in codes(quote, 409)
    webhook = paths["/api/v1/webhooks/{provider_name}"]["post"]
    assert codes(webhook, 400) == ["invalid_notification"]
    assert "401" not in webhook["responses"]  # providers call it without a token


def declared(module: ModuleType) -> list[ApiError]:
    return [value for value in vars(module).values() if isinstance(value, ApiError)]


@pytest.mark.parametrize(
    "module", [catalog_errors, pricing_errors, checkout_errors, outbox_errors], ids=str
)
def test_every_declared_error_is_documented_somewhere(
    document: dict[str, Any], module: ModuleType
) -> None:
    documented = {
        (int(status), line)
        for _, _, operation in operations(document)
        for status, response in operation["responses"].items()
        if int(status) >= 400
        for line in response["description"].splitlines()
    }
    for error in declared(module):
        assert (error.status, f"- `{error.code}`: {error.title}") in documented, error

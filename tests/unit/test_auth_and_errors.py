"""JWT authentication and problem+json errors, on a small app using the real dependencies."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from pydantic import BaseModel, Field

from billing.auth import AdminPrincipal, CurrentPrincipal, ServicePrincipal, ViewerId, issue_token
from billing.config import Settings
from billing.errors import Problem, install_error_handlers

SECRET = "unit-test-secret-unit-test-secret"
USER = uuid.UUID("5b0f4b43-2a3e-4c53-9d53-7c1f5f0c9a11")


class Body(BaseModel):
    months: int = Field(ge=1, le=12)


def build_app(settings: Settings) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings
    install_error_handlers(app)

    @app.get("/whoami")
    async def whoami(principal: CurrentPrincipal) -> dict[str, object]:
        return {"sub": principal.subject, "roles": sorted(principal.roles)}

    @app.get("/viewer")
    async def viewer(user_id: ViewerId) -> dict[str, str]:
        return {"user_id": str(user_id)}

    @app.get("/admin-only")
    async def admin_only(principal: AdminPrincipal) -> dict[str, str]:
        return {"sub": principal.subject}

    @app.get("/service-only")
    async def service_only(principal: ServicePrincipal) -> dict[str, str]:
        return {"sub": principal.subject}

    @app.post("/echo")
    async def echo(body: Body) -> Body:
        return body

    @app.get("/conflict")
    async def conflict() -> None:
        raise Problem(409, "invoice_not_open", "invoice is paid")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret database password in a stack trace")

    return app


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(jwt_secret=SECRET, data_dir=tmp_path)


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(settings), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims(**overrides: object) -> dict[str, object]:
    now = datetime.now(UTC)
    base: dict[str, object] = {
        "sub": str(USER),
        "roles": ["subscriber"],
        "exp": now + timedelta(minutes=5),
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


async def test_a_valid_token_is_accepted(http: httpx.AsyncClient, settings: Settings) -> None:
    response = await http.get(
        "/whoami", headers=bearer(issue_token(settings, str(USER), ["premium"]))
    )
    assert response.status_code == 200
    assert response.json() == {"sub": str(USER), "roles": ["premium"]}
    viewer = await http.get("/viewer", headers=bearer(jwt.encode(claims(), SECRET)))
    assert viewer.json() == {"user_id": str(USER)}


def _unsigned(payload: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        raw = json.dumps(data, default=str).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("expired", jwt.encode(claims(exp=datetime.now(UTC) - timedelta(seconds=1)), SECRET)),
        ("wrong key", jwt.encode(claims(), "another-secret-another-secret-another")),
        ("alg none", _unsigned({"sub": str(USER), "roles": ["admin"], "exp": 4102444800})),
        ("missing sub", jwt.encode(claims(sub=None), SECRET)),
        ("missing exp", jwt.encode(claims(exp=None), SECRET)),
        ("roles not a list", jwt.encode(claims(roles="admin"), SECRET)),
        ("garbage", "not-a-jwt"),
    ],
)
async def test_bad_tokens_are_refused(http: httpx.AsyncClient, name: str, token: str) -> None:
    response = await http.get("/whoami", headers=bearer(token))
    assert response.status_code == 401, name
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthorized"


async def test_no_token_is_unauthorized(http: httpx.AsyncClient) -> None:
    response = await http.get("/whoami")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


async def test_a_service_subject_cannot_act_as_a_viewer(http: httpx.AsyncClient) -> None:
    token = jwt.encode(claims(sub="movie-api", roles=["service"]), SECRET)
    assert (await http.get("/service-only", headers=bearer(token))).status_code == 200
    response = await http.get("/viewer", headers=bearer(token))
    assert response.status_code == 401


async def test_roles_are_checked(http: httpx.AsyncClient) -> None:
    viewer = bearer(jwt.encode(claims(roles=["subscriber"]), SECRET))
    marketing = bearer(jwt.encode(claims(roles=["marketing"]), SECRET))
    refused = await http.get("/admin-only", headers=viewer)
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert (await http.get("/admin-only", headers=marketing)).status_code == 200
    assert (await http.get("/service-only", headers=marketing)).status_code == 403


async def test_rs256_tokens_verify_with_the_public_key(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = Settings(jwt_algorithm="RS256", jwt_public_key=public_pem, data_dir=tmp_path)
    transport = httpx.ASGITransport(app=build_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        good = jwt.encode(claims(), key, algorithm="RS256")
        assert (await http.get("/whoami", headers=bearer(good))).status_code == 200
        # An HS256 token "signed" with the public key must not pass (algorithm confusion).
        forged = jwt.encode(claims(), "forged-with-a-guessable-secret-value", algorithm="HS256")
        assert (await http.get("/whoami", headers=bearer(forged))).status_code == 401


async def test_errors_are_problem_json_with_a_stable_code(http: httpx.AsyncClient) -> None:
    missing = await http.get("/no-such-thing")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "not_found"
    assert missing.json()["instance"] == "/no-such-thing"

    wrong_method = await http.delete("/echo")
    assert (wrong_method.status_code, wrong_method.json()["code"]) == (405, "method_not_allowed")

    conflict = await http.get("/conflict")
    assert conflict.status_code == 409
    assert conflict.json() == {
        "type": "urn:billing:problem:invoice_not_open",
        "title": "Conflict",
        "status": 409,
        "code": "invoice_not_open",
        "detail": "invoice is paid",
        "instance": "/conflict",
    }


@pytest.mark.parametrize(
    "content",
    ["", "{", "[]", '{"months": 0}', '{"months": "many"}', '{"months": 1.5}', "null"],
)
async def test_bad_bodies_are_validation_errors(http: httpx.AsyncClient, content: str) -> None:
    response = await http.post(
        "/echo", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["errors"]


async def test_an_unexpected_error_is_a_500_without_internals(http: httpx.AsyncClient) -> None:
    response = await http.get("/boom")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "secret" not in response.text


def _signed(payload: dict[str, object]) -> str:
    """Signed with the secret, whatever the claims hold (``jwt.encode`` refuses a list
    ``iss``, which another issuer may still send)."""
    raw = json.dumps(payload, default=lambda moment: int(moment.timestamp())).encode()
    return jwt.PyJWS().encode(raw, SECRET, algorithm="HS256")


def _with_claims_checked(settings: Settings, audience: str | None, issuer: str | None) -> Settings:
    return settings.model_copy(update={"jwt_audience": audience, "jwt_issuer": issuer})


# (configured audience, configured issuer, the token's aud, the token's iss, accepted?)
AUDIENCE_AND_ISSUER = [
    (None, None, None, None, True),
    (None, None, "billing", "https://auth.cinema", True),  # not configured: not checked
    (None, None, ["movies", "other"], None, True),
    ("billing", None, "billing", None, True),
    ("billing", None, ["movies", "billing"], None, True),
    ("billing", None, None, None, False),
    ("billing", None, "movies", None, False),
    ("billing", None, ["movies"], None, False),
    ("billing", None, "", None, False),
    (None, "https://auth.cinema", None, "https://auth.cinema", True),
    (None, "https://auth.cinema", "anything", "https://auth.cinema", True),
    (None, "https://auth.cinema", None, None, False),
    (None, "https://auth.cinema", None, "https://evil.example", False),
    (None, "https://auth.cinema", None, ["https://auth.cinema"], False),
    ("billing", "https://auth.cinema", "billing", "https://auth.cinema", True),
    ("billing", "https://auth.cinema", "billing", None, False),
    ("billing", "https://auth.cinema", None, "https://auth.cinema", False),
    ("billing", "https://auth.cinema", "movies", "https://auth.cinema", False),
]


@pytest.mark.parametrize(("audience", "issuer", "aud", "iss", "accepted"), AUDIENCE_AND_ISSUER)
async def test_audience_and_issuer_are_checked_only_when_configured(
    settings: Settings,
    audience: str | None,
    issuer: str | None,
    aud: object,
    iss: object,
    accepted: bool,
) -> None:
    app = build_app(_with_claims_checked(settings, audience, issuer))
    transport = httpx.ASGITransport(app=app)
    token = _signed(claims(aud=aud, iss=iss))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/whoami", headers=bearer(token))
    if accepted:
        assert response.status_code == 200, response.text
        assert response.json()["sub"] == str(USER)
    else:
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("audience", "issuer"), [(None, None), ("billing", None), (None, "auth"), ("billing", "auth")]
)
async def test_issued_tokens_carry_the_configured_audience_and_issuer(
    settings: Settings, audience: str | None, issuer: str | None
) -> None:
    configured = _with_claims_checked(settings, audience, issuer)
    token = issue_token(configured, str(USER), ["premium"])
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload.get("aud") == audience
    assert payload.get("iss") == issuer
    transport = httpx.ASGITransport(app=build_app(configured))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/whoami", headers=bearer(token))).status_code == 200
    # A token made for another audience or issuer is not accepted here.
    if audience or issuer:
        other = issue_token(_with_claims_checked(settings, "other", "other"), str(USER))
        transport = httpx.ASGITransport(app=build_app(configured))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.get("/whoami", headers=bearer(other))).status_code == 401

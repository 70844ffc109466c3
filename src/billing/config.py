"""Settings, read from the environment (prefix ``BILLING_``); see PRODUCT.md "Configuration"."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_SECONDS = re.compile(r"^\s*\d+(\.\d+)?\s*$")

SANDBOX_SHOP_ID = "sandbox-shop"
SANDBOX_SECRET_KEY = "sandbox-secret-key"  # noqa: S105 - the sandbox's well-known default
SANDBOX_STRIPE_SECRET_KEY = "sk_test_sandbox"  # noqa: S105
SANDBOX_STRIPE_WEBHOOK_SECRET = "whsec_sandbox"  # noqa: S105


def _seconds_or_iso(value: object) -> object:
    """Durations are ISO 8601 (``PT1H``) or a number of seconds (``3600``)."""
    if isinstance(value, str) and _SECONDS.match(value):
        return timedelta(seconds=float(value))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be a positive duration")
    return value


Duration = Annotated[timedelta, BeforeValidator(_seconds_or_iso), AfterValidator(_positive)]


def _durations(value: object) -> object:
    """A comma-separated list of durations: ``PT6H,P1D,P2D``."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _increasing(value: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
    if list(value) != sorted(set(value)):
        raise ValueError("must be increasing offsets, e.g. PT6H,P1D,P2D")
    return value


Durations = Annotated[
    tuple[Duration, ...], NoDecode, BeforeValidator(_durations), AfterValidator(_increasing)
]


def _http_url(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return value.rstrip("/")


HttpUrl = Annotated[str | None, AfterValidator(_http_url)]


def _postgres_url(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    scheme = urlsplit(value).scheme
    if scheme not in {"postgresql", "postgres", "postgresql+psycopg"}:
        raise ValueError("must be a postgresql:// URL")
    return value


PostgresUrl = Annotated[str | None, AfterValidator(_postgres_url)]

IpNetwork = IPv4Network | IPv6Network


def parse_networks(value: str) -> tuple[IpNetwork, ...]:
    """Comma-separated CIDRs (``185.71.76.0/27, 2a02:5180::/32``; a bare address is one
    host); a network with host bits set is refused as the typo it usually is."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        try:
            networks.append(ip_network(item))
        except ValueError:
            raise ValueError(f"{item!r} is not a CIDR network") from None
    return tuple(networks)


def _networks(value: object) -> object:
    if value is None or value == "":
        return None
    return parse_networks(value) if isinstance(value, str) else value


# Read as written (not as JSON, pydantic-settings' way with lists): "a/27, b/27".
Networks = Annotated[tuple[IpNetwork, ...] | None, NoDecode, BeforeValidator(_networks)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore", frozen=True)

    # Database: a PostgreSQL server, or an embedded one kept in data_dir when unset.
    database_url: PostgresUrl = None
    data_dir: Path = Path(".billing")

    # Viewer and service tokens issued by the Auth service.
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    # When set, a token must carry this `aud` / `iss`; unset (or empty), they are not checked.
    jwt_audience: str | None = None
    jwt_issuer: str | None = None

    # Payment provider; the API addresses default to the built-in sandbox.
    provider: Literal["yookassa", "stripe"] = "yookassa"
    yookassa_shop_id: str = SANDBOX_SHOP_ID
    yookassa_secret_key: str = SANDBOX_SECRET_KEY
    yookassa_api_url: HttpUrl = None
    # Where ЮKassa's notifications may come from; unset: its published networks while the
    # API address is ЮKassa's, anywhere otherwise (the sandbox). See checkout/trusted_networks.
    yookassa_trusted_networks: Networks = None
    # Reverse proxies whose X-Forwarded-For is believed; none by default.
    trusted_proxies: Networks = None
    stripe_secret_key: str = SANDBOX_STRIPE_SECRET_KEY
    stripe_webhook_secret: str = SANDBOX_STRIPE_WEBHOOK_SECRET
    stripe_api_base: HttpUrl = None
    public_url: Annotated[str, AfterValidator(_http_url)] = "http://127.0.0.1:8000"
    # Where a browser lands after the provider's page when the client gave no return_url
    # (billing's own page by default; ``?payment_id=…&sig=…`` is appended).
    return_url: HttpUrl = None

    # Other services of the cinema; unset means "write to the log instead".
    auth_url: HttpUrl = None
    auth_token: str | None = None
    notify_url: HttpUrl = None
    notify_amqp_url: str | None = None

    # Business rules.
    # 54-FZ fiscal receipts: on by default with ЮKassa (a shop with receipts enabled refuses
    # payments without one); the VAT code and tax system are the shop accountant's values.
    receipts: bool | None = None
    receipt_vat_code: int = Field(default=1, ge=1, le=12)  # ЮKassa's vat_code, 1–12
    receipt_tax_system: int | None = Field(default=None, ge=1, le=6)  # tax_system_code

    # The admin panel's language when the account has chosen none (each may, on the panel).
    admin_locale: Literal["ru", "en"] = "ru"
    max_months: int = Field(default=12, ge=1, le=120)
    currency: str = Field(default="RUB", pattern=r"^[A-Z]{3}$")
    refund_window: Duration = timedelta(hours=1)
    grace_period: Duration = timedelta(days=2)
    remind_before: Duration = timedelta(days=3)
    invoice_ttl: Duration = timedelta(minutes=30)
    # Auto-renewal: charge a saved method this long before the period ends; retry a soft
    # decline at these offsets from the first declined attempt (never after access ends).
    renew_before: Duration = timedelta(days=1)
    renew_retry: Durations = (timedelta(hours=6), timedelta(days=1), timedelta(days=2))

    # Outbox delivery: attempts before an event is parked, and the longest wait between two.
    outbox_max_attempts: int = Field(default=12, ge=1, le=100)
    outbox_retry_ceiling: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _rs256_needs_a_key(self) -> Settings:
        if self.jwt_algorithm == "RS256" and not self.jwt_public_key:
            raise ValueError("jwt_public_key: RS256 needs BILLING_JWT_PUBLIC_KEY")
        return self

    @property
    def receipts_on(self) -> bool:
        """Whether every payment and refund carries a fiscal receipt (and so needs the
        viewer's e-mail): ``BILLING_RECEIPTS``, by default on with ЮKassa."""
        return self.receipts if self.receipts is not None else self.provider == "yookassa"

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def yookassa_base_url(self) -> str:
        return self.yookassa_api_url or f"{self.public_url}/sandbox/v3"

    @property
    def stripe_base_url(self) -> str:
        return self.stripe_api_base or f"{self.public_url}/sandbox/stripe"

    @property
    def checkout_return_url(self) -> str:
        return self.return_url or f"{self.public_url}/api/v1/checkout/return"

    @property
    def sandbox_serves_yookassa(self) -> bool:
        """The ЮKassa address points at the built-in sandbox (the default)."""
        return self.yookassa_base_url.startswith(f"{self.public_url}/sandbox/")

    @property
    def sandbox_serves_stripe(self) -> bool:
        return self.stripe_base_url.startswith(f"{self.public_url}/sandbox/")

    @cached_property
    def jwt_signing_secret(self) -> str:
        """The HS256 secret; without one configured, a random one kept in the data directory,
        so that ``billing token`` and ``billing serve`` on this machine agree."""
        if self.jwt_secret:
            return self.jwt_secret
        path = self.data_dir / "jwt-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    @property
    def jwt_verification_key(self) -> str:
        if self.jwt_algorithm == "RS256":
            assert self.jwt_public_key is not None
            return self.jwt_public_key
        return self.jwt_signing_secret


def describe_error(error: ValidationError) -> str:
    """One line naming the first offending setting, e.g.
    ``BILLING_REFUND_WINDOW: must be a positive duration``."""
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    message = str(first["msg"]).removeprefix("Value error, ")
    if not field and ":" in message:  # model-level checks name their field first
        field, message = (part.strip() for part in message.split(":", 1))
    return f"BILLING_{field.upper()}: {message}" if field else message

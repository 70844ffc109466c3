"""Configuration: every setting of PRODUCT.md with its default; bad values named in one line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from billing.config import Settings, describe_error


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("BILLING_"):
            monkeypatch.delenv(name)


def test_defaults_run_a_laptop_with_nothing_set() -> None:
    settings = Settings()
    assert settings.uses_embedded_database
    assert settings.data_dir == Path(".billing")
    assert settings.provider == "yookassa"
    assert settings.yookassa_base_url == "http://127.0.0.1:8000/sandbox/v3"
    assert settings.stripe_base_url == "http://127.0.0.1:8000/sandbox/stripe"
    assert settings.refund_window == timedelta(hours=1)
    assert settings.grace_period == timedelta(days=2)
    assert settings.remind_before == timedelta(days=3)
    assert settings.invoice_ttl == timedelta(minutes=30)
    assert settings.max_months == 12
    assert settings.currency == "RUB"
    assert settings.jwt_algorithm == "HS256"
    assert (settings.auth_url, settings.notify_url, settings.notify_amqp_url) == (None,) * 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [("PT1H", timedelta(hours=1)), ("P2D", timedelta(days=2)), ("PT90M", timedelta(minutes=90)),
     ("3600", timedelta(hours=1)), ("1.5", timedelta(seconds=1.5))],
)  # fmt: skip
def test_durations_accept_iso_8601_or_seconds(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: timedelta
) -> None:
    monkeypatch.setenv("BILLING_REFUND_WINDOW", value)
    assert Settings().refund_window == expected


def test_provider_addresses_follow_the_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_PUBLIC_URL", "https://billing.example.com/")
    monkeypatch.setenv("BILLING_STRIPE_API_BASE", "https://api.stripe.com")
    settings = Settings()
    assert settings.yookassa_base_url == "https://billing.example.com/sandbox/v3"
    assert settings.stripe_base_url == "https://api.stripe.com"


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        (
            "BILLING_REFUND_WINDOW",
            "soon",
            "BILLING_REFUND_WINDOW: Input should be a valid timedelta",
        ),
        ("BILLING_GRACE_PERIOD", "0", "BILLING_GRACE_PERIOD: must be a positive duration"),
        ("BILLING_INVOICE_TTL", "-PT5M", "BILLING_INVOICE_TTL: must be a positive duration"),
        (
            "BILLING_MAX_MONTHS",
            "0",
            "BILLING_MAX_MONTHS: Input should be greater than or equal to 1",
        ),
        ("BILLING_MAX_MONTHS", "twelve", "BILLING_MAX_MONTHS: Input should be a valid integer"),
        ("BILLING_CURRENCY", "rubles", "BILLING_CURRENCY: String should match pattern"),
        ("BILLING_PROVIDER", "paypal", "BILLING_PROVIDER: Input should be 'yookassa' or 'stripe'"),
        (
            "BILLING_DATABASE_URL",
            "mysql://x/y",
            "BILLING_DATABASE_URL: must be a postgresql:// URL",
        ),
        ("BILLING_NOTIFY_URL", "ftp://notify", "BILLING_NOTIFY_URL: must be an http(s) URL"),
        (
            "BILLING_JWT_ALGORITHM",
            "RS256",
            "BILLING_JWT_PUBLIC_KEY: RS256 needs BILLING_JWT_PUBLIC_KEY",
        ),
        # ЮKassa's lists: vat_code 1–12, tax_system_code 1–6.
        ("BILLING_RECEIPT_VAT_CODE", "13", "BILLING_RECEIPT_VAT_CODE: Input should be less"),
        ("BILLING_RECEIPT_VAT_CODE", "0", "BILLING_RECEIPT_VAT_CODE: Input should be greater"),
        ("BILLING_RECEIPT_TAX_SYSTEM", "7", "BILLING_RECEIPT_TAX_SYSTEM: Input should be less"),
        ("BILLING_RECEIPTS", "maybe", "BILLING_RECEIPTS: Input should be a valid boolean"),
    ],
)
def test_a_bad_setting_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, line: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = describe_error(caught.value)
    assert message.startswith(line)
    assert "\n" not in message


def test_without_a_jwt_secret_one_is_made_once_and_kept(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).jwt_signing_secret
    second = Settings(data_dir=tmp_path).jwt_signing_secret
    assert first == second
    assert len(first) >= 32
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o777 == 0o600
    assert Settings(data_dir=tmp_path, jwt_secret="configured").jwt_signing_secret == "configured"


def test_jwt_audience_and_issuer_are_unset_by_default_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (Settings().jwt_audience, Settings().jwt_issuer) == (None, None)
    monkeypatch.setenv("BILLING_JWT_AUDIENCE", "billing")
    monkeypatch.setenv("BILLING_JWT_ISSUER", "https://auth.cinema")
    settings = Settings()
    assert (settings.jwt_audience, settings.jwt_issuer) == ("billing", "https://auth.cinema")


def test_receipts_are_on_with_yookassa_unless_said_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().receipts_on is True
    assert (Settings().receipt_vat_code, Settings().receipt_tax_system) == (1, None)
    monkeypatch.setenv("BILLING_PROVIDER", "stripe")
    assert Settings().receipts_on is False
    monkeypatch.setenv("BILLING_RECEIPTS", "on")
    assert Settings().receipts_on is True
    monkeypatch.setenv("BILLING_PROVIDER", "yookassa")
    monkeypatch.setenv("BILLING_RECEIPTS", "off")
    assert Settings().receipts_on is False

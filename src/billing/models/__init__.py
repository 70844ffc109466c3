"""SQLAlchemy models: the whole schema of the product (created only through migrations)."""

from billing.models.base import Base
from billing.models.catalog import Tariff, TariffPrice
from billing.models.checkout import (
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundReason,
    RefundStatus,
)
from billing.models.operations import (
    AdminLoginFailure,
    AdminRole,
    AdminSession,
    AdminUser,
    AuditEntry,
    IdempotencyKey,
)
from billing.models.outbox import OutboxEvent, OutboxStatus
from billing.models.payment_methods import (
    PaymentMethod,
    ProviderCustomer,
    RenewalAttempt,
    RenewalAttemptStatus,
)
from billing.models.pricing import (
    DurationDiscount,
    PromoCode,
    PromoRedemption,
    RedemptionStatus,
    UserDiscount,
    promo_code_tariffs,
)
from billing.models.subscriptions import Subscription, SubscriptionStatus
from billing.models.webhooks import ProcessedWebhookEvent
from billing.pricing.rules import DiscountSource

__all__ = [
    "AdminLoginFailure",
    "AdminRole",
    "AdminSession",
    "AdminUser",
    "AuditEntry",
    "Base",
    "DiscountSource",
    "DurationDiscount",
    "IdempotencyKey",
    "Invoice",
    "InvoiceKind",
    "InvoiceStatus",
    "OutboxEvent",
    "OutboxStatus",
    "Payment",
    "PaymentMethod",
    "PaymentStatus",
    "ProcessedWebhookEvent",
    "PromoCode",
    "PromoRedemption",
    "ProviderCustomer",
    "RedemptionStatus",
    "Refund",
    "RefundReason",
    "RefundStatus",
    "RenewalAttempt",
    "RenewalAttemptStatus",
    "Subscription",
    "SubscriptionStatus",
    "Tariff",
    "TariffPrice",
    "UserDiscount",
    "promo_code_tariffs",
]

"""The errors of checkout: invoices, payments, refunds, provider notifications."""

from __future__ import annotations

from billing.errors import ApiError

INVOICE_NOT_FOUND = ApiError(404, "not_found", "no such invoice of this viewer")
INVOICE_EXPIRED = ApiError(409, "invoice_expired", "the invoice has expired; issue a new one")
INVOICE_NOT_OPEN = ApiError(409, "invoice_not_open", "the invoice is paid or canceled")
CUSTOMER_EMAIL_REQUIRED = ApiError(
    422, "customer_email_required", "a fiscal receipt needs the viewer's e-mail: give `email`"
)
PAYMENT_NOT_FOUND = ApiError(404, "not_found", "no such payment of this viewer")
PAYMENT_NOT_REFUNDABLE = ApiError(
    409, "payment_not_refundable", "the payment is not paid, or the provider declined"
)
REFUND_WINDOW_EXPIRED = ApiError(409, "refund_window_expired", "the refund window has closed")
PROVIDER_UNAVAILABLE = ApiError(
    503, "provider_unavailable", "the payment provider is unavailable; try again"
)
PROVIDER_NOT_FOUND = ApiError(404, "not_found", "no such payment provider")
INVALID_NOTIFICATION = ApiError(400, "invalid_notification", "not a notification of this provider")

# What starting (or resuming) an invoice's payment can answer, whichever route starts it.
PAYMENT_START_ERRORS = (
    INVOICE_NOT_FOUND,
    INVOICE_EXPIRED,
    INVOICE_NOT_OPEN,
    CUSTOMER_EMAIL_REQUIRED,
)
CHECKOUT_LINK_INVALID = ApiError(
    403, "forbidden", "the checkout link is not valid (altered, or for another invoice)"
)

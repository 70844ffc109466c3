"""Checkout: invoices, payments at a provider, confirmation, refunds, webhooks."""

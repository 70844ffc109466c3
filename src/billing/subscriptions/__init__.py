"""Subscriptions: access to a tariff's role, extended by payments, ended by time or refund."""

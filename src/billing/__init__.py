"""Billing: subscription billing service of the online cinema."""

"""HTTP layer of pricing: quotes, and the admin API for discounts and promo codes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["quotes"])
admin_router = APIRouter(tags=["admin: discounts and promo codes"])

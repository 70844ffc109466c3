"""HTTP layer of the catalogue."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["tariffs"])
admin_router = APIRouter(tags=["admin: tariffs"])

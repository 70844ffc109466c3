"""Admin API: the audit log."""

from __future__ import annotations

from fastapi import APIRouter

admin_router = APIRouter(tags=["admin: audit log"])

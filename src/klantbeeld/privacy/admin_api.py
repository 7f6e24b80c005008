"""Keys, audit trail and retention routes (admin keys; the audit trail also privacy keys)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["privacy"])

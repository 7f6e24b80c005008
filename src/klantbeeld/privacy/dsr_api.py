"""Data-subject request routes (OpenDSR-style): privacy or admin keys."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["privacy"])

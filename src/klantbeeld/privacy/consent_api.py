"""Consent routes: read a profile's consent (admin, read, privacy keys); record consent given
outside an event stream — a signed form, a call centre — (privacy and admin keys)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from ..collect.sources import Principal
from ..http import ApiError, json_response, refuse_unstorable, require
from ..identity.persist import audit
from ..profiles.lookup import ProfileNotFound, resolve_ref
from . import consent

router = APIRouter(tags=["privacy"])
readers = require("admin", "read", "privacy")
writers = require("admin", "privacy")


class ConsentBody(BaseModel):
    identifier: str = Field(description="TYPE:VALUE or id:PROFILE_ID")
    purposes: dict[str, Literal["granted", "denied", "withdrawn"]] = Field(min_length=1)
    lawful_basis: str = "consent"
    proof: Any = Field(None, description="What shows the person gave it (form id, recording…).")


def _pid(ws, ref: str) -> str:
    refuse_unstorable(ref)
    try:
        return resolve_ref(ws, ref)
    except ProfileNotFound as exc:
        raise ApiError(404, "profile_not_found", str(exc)) from None
    except ValueError as exc:
        raise ApiError(400, "invalid_identifier", str(exc)) from None


def consent_view(ws, pid: str) -> dict[str, Any]:
    purposes = {p: c.requires_consent for p, c in ws.privacy_config.purposes.items()}
    with ws.engine.session() as s:
        return {"profile_id": pid, "purposes": consent.current(s, pid, purposes),
                "history": consent.history(s, pid)}


def set_consent(ws, pid: str, purposes: dict[str, str], actor: str, lawful_basis: str = "consent",
                proof: Any = None) -> dict[str, Any]:
    for purpose in purposes:
        ws.privacy_config.check_purpose(purpose)
    now = datetime.now(timezone.utc)
    with ws.engine.transaction() as s:
        consent.record(s, consent.now_entries(pid, purposes, now, lawful_basis=lawful_basis,
                                              proof={"recorded_by": actor, "proof": proof}))
        audit(s, actor, "consent.update", pid, orjson.dumps(
            {"purposes": purposes, "lawful_basis": lawful_basis}).decode(), now)
    return consent_view(ws, pid)


@router.get("/v1/profiles/{ref:path}/consent", operation_id="profile_consent",
            dependencies=[Depends(readers)])
def get_consent(ref: str, request: Request):
    """Per purpose: the status now, whether activation is allowed, since when; and the history."""
    ws = request.app.state.workspace
    return json_response(consent_view(ws, _pid(ws, ref)))


@router.post("/v1/privacy/consent", operation_id="record_consent")
def post_consent(body: ConsentBody, request: Request, who: Principal = Depends(writers)):
    ws = request.app.state.workspace
    pid = _pid(ws, body.identifier)
    refuse_unstorable(body.lawful_basis, body.proof)
    try:
        view = set_consent(ws, pid, body.purposes, who.actor, body.lawful_basis,
                           body.proof)
    except ValueError as exc:
        raise ApiError(400, "invalid_purpose", str(exc)) from None
    ws.segments.reevaluate([pid])   # a consent leaf may move the profile in or out
    return json_response(view)

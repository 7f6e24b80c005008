"""Keys, audit trail and retention routes (admin keys; the audit trail also privacy keys)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ..collect.sources import Principal, SourceError
from ..http import ApiError, json_response, refuse_unstorable, require
from .audit import KeyConflict, KeyNotFound, list_audit, list_keys, new_key, revoke_key

router = APIRouter(tags=["privacy"])
admin = require("admin")
auditors = require("admin", "privacy")



class KeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["admin", "read", "privacy", "write"]
    source: str | None = Field(None, description="Write keys only: the source name.")
    label: str | None = Field(None, max_length=200)


class RetentionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dry_run: bool = False


@router.get("/v1/audit", operation_id="list_audit")
def audit_trail(request: Request, action: str | None = Query(
        None, description="An action, or a prefix ending in '.' (identity.)"),
        actor: str | None = None,
        since: str | None = Query(None, description="ISO date or date-time."),
        after: int | None = Query(None, ge=0, description="Cursor: the previous next_after."),
        limit: int = Query(100, ge=1, le=10_000),
        who: Principal = Depends(auditors)):
    """Who did what, when, oldest first; pass ``next_after`` back as ``after``."""
    refuse_unstorable(action, actor, since)
    try:
        page = list_audit(request.app.state.workspace.engine, action=action, actor=actor,
                          since=since, limit=limit, after=after)
    except ValueError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    return json_response(page)


@router.get("/v1/keys", operation_id="list_keys", dependencies=[Depends(admin)])
def keys(request: Request):
    """Every key: id, role, source, label, created, revoked — never the key or its hash."""
    return json_response({"keys": list_keys(request.app.state.workspace.engine)})


@router.post("/v1/keys", operation_id="create_key", status_code=201)
def create(body: KeyBody, request: Request, who: Principal = Depends(admin)):
    """Make a key; the answer holds it (``key``) — the only time it is shown."""
    refuse_unstorable(body.source, body.label)
    try:
        made = new_key(request.app.state.workspace.engine, body.role, body.source, body.label,
                       who.actor)
    except KeyNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except SourceError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    return json_response(made, status=201)


@router.delete("/v1/keys/{key_id}", operation_id="revoke_key")
def revoke(key_id: str, request: Request, who: Principal = Depends(admin)):
    """Revoke a key: from now on it gets 401. A key cannot revoke itself (409)."""
    refuse_unstorable(key_id)
    try:
        row = revoke_key(request.app.state.workspace.engine, key_id, who.actor,
                         current_key_id=who.key_id)
    except KeyNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except KeyConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    request.app.state.keyring.forget()   # this process at once; others within the cache TTL
    return json_response(row)


@router.get("/v1/retention", operation_id="retention_rules", dependencies=[Depends(admin)])
def retention_rules(request: Request):
    """The retention rules in effect, in the order they apply."""
    from .retention import describe

    ws = request.app.state.workspace
    return json_response({"rules": [describe(r) for r in ws.privacy_config.retention]})


@router.post("/v1/retention/run", operation_id="run_retention")
def retention_run(request: Request, body: RetentionBody | None = None,
                  who: Principal = Depends(admin)):
    """Apply the retention rules now (``dry_run``: count only) → counts per rule."""
    from .retention import run

    ws = request.app.state.workspace
    try:
        report = run(ws, dry_run=body.dry_run if body else False, actor=who.actor)
    except ValueError as exc:
        raise ApiError(400, "invalid_retention", str(exc)) from None
    return json_response(report)

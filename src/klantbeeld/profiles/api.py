"""Profile routes: the single customer view by any identifier, its timeline, search.

Admin and read keys may read profiles; write keys (what a website or app holds) may not.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from ..collect.sources import Principal
from ..http import ApiError, json_response, refuse_unstorable, require
from ..privacy.audit import audit_read
from .lookup import ProfileNotFound, get_profile, profile_events, resolve_ref, search_profiles

router = APIRouter(tags=["profiles"])
reader = Depends(require("admin", "read"))


def _pid(request: Request, ref: str) -> str:
    refuse_unstorable(ref)
    try:
        return resolve_ref(request.app.state.workspace, ref)
    except ProfileNotFound as exc:
        raise ApiError(404, "profile_not_found", str(exc)) from None
    except ValueError as exc:
        raise ApiError(400, "invalid_identifier", str(exc)) from None


@router.get("/v1/profiles", operation_id="search_profiles")
def search(request: Request, identifier: str | None = Query(
        None, description="TYPE:PREFIX, e.g. email:jan@"),
        limit: int = Query(50, ge=1, le=500), who: Principal = reader):
    """Search by trait (``trait.city=Utrecht``, repeatable, all must match) and identifier prefix."""
    traits = {k[len("trait."):]: v for k, v in request.query_params.items()
              if k.startswith("trait.") and len(k) > len("trait.")}
    refuse_unstorable(identifier, traits)
    try:
        found = search_profiles(request.app.state.workspace, traits, identifier, limit)
    except ValueError as exc:
        raise ApiError(400, "invalid_search", str(exc)) from None
    audit_read(request.app.state.workspace, who.actor,
               [p["profile_id"] for p in found], "search")
    return json_response({"profiles": found, "count": len(found)})


@router.get("/v1/profiles/{ref:path}/events", operation_id="profile_events")
def events(ref: str, request: Request, limit: int = Query(50, ge=1, le=1000),
           cursor: str | None = None, channel: str | None = None,
           type: str | None = Query(None, description="identify, track, page, …"),
           event: str | None = Query(None, description="A track event name."),
           who: Principal = reader):
    """The cross-channel timeline, newest first; pass ``next_cursor`` back as ``cursor``."""
    ws = request.app.state.workspace
    pid = _pid(request, ref)
    try:
        page = profile_events(ws, pid, limit=limit, cursor=cursor, channel=channel, type=type,
                              event=event)
    except ValueError as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
    audit_read(ws, who.actor, pid, "events")
    return json_response(page)


@router.get("/v1/profiles/{ref:path}", operation_id="get_profile")
def profile(ref: str, request: Request, who: Principal = reader):
    """A profile by any identifier (``email:jan@example.nl``, ``user_id:42``) or ``id:p_…``."""
    pid = _pid(request, ref)
    try:
        found = get_profile(request.app.state.workspace, pid)
    except ProfileNotFound as exc:
        raise ApiError(404, "profile_not_found", str(exc)) from None
    audit_read(request.app.state.workspace, who.actor, found["profile_id"], "profile")
    return json_response(found)

"""Profile routes: the single customer view by any identifier, its timeline, search.

Admin and read keys may read profiles; write keys (what a website or app holds) may not.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from ..http import ApiError, json_response, require
from .lookup import ProfileNotFound, get_profile, profile_events, resolve_ref, search_profiles

router = APIRouter(tags=["profiles"])
reader = Depends(require("admin", "read"))


def _pid(request: Request, ref: str) -> str:
    try:
        return resolve_ref(request.app.state.workspace, ref)
    except ProfileNotFound as exc:
        raise ApiError(404, "profile_not_found", str(exc)) from None
    except ValueError as exc:
        raise ApiError(400, "invalid_identifier", str(exc)) from None


@router.get("/v1/profiles", operation_id="search_profiles", dependencies=[reader])
def search(request: Request, identifier: str | None = Query(
        None, description="TYPE:PREFIX, e.g. email:jan@"),
        limit: int = Query(50, ge=1, le=500)):
    """Search by trait (``trait.city=Utrecht``, repeatable, all must match) and identifier prefix."""
    traits = {k[len("trait."):]: v for k, v in request.query_params.items()
              if k.startswith("trait.") and len(k) > len("trait.")}
    try:
        found = search_profiles(request.app.state.workspace, traits, identifier, limit)
    except ValueError as exc:
        raise ApiError(400, "invalid_search", str(exc)) from None
    return json_response({"profiles": found, "count": len(found)})


@router.get("/v1/profiles/{ref:path}/events", operation_id="profile_events",
            dependencies=[reader])
def events(ref: str, request: Request, limit: int = Query(50, ge=1, le=1000),
           cursor: str | None = None, channel: str | None = None,
           type: str | None = Query(None, description="identify, track, page, …"),
           event: str | None = Query(None, description="A track event name.")):
    """The cross-channel timeline, newest first; pass ``next_cursor`` back as ``cursor``."""
    ws = request.app.state.workspace
    pid = _pid(request, ref)
    try:
        page = profile_events(ws, pid, limit=limit, cursor=cursor, channel=channel, type=type,
                              event=event)
    except ValueError as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
    return json_response(page)


@router.get("/v1/profiles/{ref:path}", operation_id="get_profile", dependencies=[reader])
def profile(ref: str, request: Request):
    """A profile by any identifier (``email:jan@example.nl``, ``user_id:42``) or ``id:p_…``."""
    pid = _pid(request, ref)
    try:
        return json_response(get_profile(request.app.state.workspace, pid))
    except ProfileNotFound as exc:
        raise ApiError(404, "profile_not_found", str(exc)) from None

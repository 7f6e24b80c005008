"""Identity routes (admin keys): manual operations, rebuild, probabilistic matching, review queue."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from ..collect.sources import Principal
from ..http import ApiError, json_response, refuse_unstorable, require
from .manage import IdentityError, block_value, merge_profiles, split_identifier
from .matching import decide_review, list_reviews, run_matching
from .rebuild import rebuild

router = APIRouter(tags=["identity"])
admin = require("admin")


class IdentifierBody(BaseModel):
    identifier: str = Field(description="TYPE:VALUE, e.g. anonymous_id:c-12ab")
    reason: str | None = None


class MergeBody(BaseModel):
    a: str = Field(description="TYPE:VALUE or id:PROFILE_ID")
    b: str
    reason: str = "manual merge"


class Decision(BaseModel):
    decision: Literal["accept", "reject"]



def _run(fn, *args):
    refuse_unstorable(args)
    try:
        return fn(*args)
    except LookupError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except ValueError as exc:  # IdentityError, a malformed TYPE:VALUE
        raise ApiError(409 if isinstance(exc, IdentityError) else 400,
                       "identity_refused" if isinstance(exc, IdentityError)
                       else "invalid_identifier", str(exc)) from None


@router.post("/v1/identity/block", operation_id="block_identifier")
def block(body: IdentifierBody, request: Request, who: Principal = Depends(admin)):
    """Block a value: it links nothing from now on, nor in the past (profiles are re-resolved)."""
    return json_response(_run(block_value, request.app.state.workspace, body.identifier,
                              who.actor, body.reason))


@router.post("/v1/identity/split", operation_id="split_identifier")
def split(body: IdentifierBody, request: Request, who: Principal = Depends(admin)):
    """Split an identifier off its profile for good."""
    return json_response(_run(split_identifier, request.app.state.workspace, body.identifier,
                              who.actor, body.reason))


@router.post("/v1/identity/merge", operation_id="merge_profiles")
def merge(body: MergeBody, request: Request, who: Principal = Depends(admin)):
    """Merge two profiles (subject to the identifier limits; refusals are reported)."""
    return json_response(_run(merge_profiles, request.app.state.workspace, body.a, body.b,
                              who.actor, body.reason))


@router.post("/v1/identity/rebuild", operation_id="rebuild_identity",
             dependencies=[Depends(admin)])
def rebuild_all(request: Request):
    """Recompute every profile from the event history and the rules."""
    ws = request.app.state.workspace
    figures = rebuild(ws.engine, ws.resolver)
    ws.update_segments()
    return json_response(figures)


@router.post("/v1/identity/match", operation_id="match_profiles")
def match(request: Request, who: Principal = Depends(admin)):
    """Probabilistic matching: merge sure pairs, queue doubtful ones for review."""
    return json_response(_run(run_matching, request.app.state.workspace, who.actor))


@router.get("/v1/identity/reviews", operation_id="list_reviews", dependencies=[Depends(admin)])
def reviews(request: Request, status: Literal["pending", "accepted", "rejected"] = "pending",
            limit: int = Query(100, ge=1, le=1000)):
    """Pairs of profiles the matcher was not sure of, most probable first."""
    return json_response({"reviews": list_reviews(request.app.state.workspace, status, limit)})


@router.post("/v1/identity/reviews/{review_id}", operation_id="decide_review")
def decide(review_id: int, body: Decision, request: Request, who: Principal = Depends(admin)):
    """Accept (merge) or reject (keep apart, remembered) one queued pair."""
    return json_response(_run(decide_review, request.app.state.workspace, review_id,
                              body.decision == "accept", who.actor))

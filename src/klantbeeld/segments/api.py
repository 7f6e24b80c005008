"""Segment and computed-trait routes.

Read and admin keys may read segments, their members, previews, overlap and exports; only admin
keys define, change or delete segments and traits (a SQL trait runs the query it holds).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from ..collect.sources import Principal
from ..http import ApiError, json_response, refuse_unstorable, require
from ..identity.persist import audit
from ..profiles.computed import InvalidDefinition
from ..profiles.trait_defs import TraitExists, TraitNotFound
from .service import SegmentConflict, SegmentNotFound
from .tree import InvalidTree

router = APIRouter(tags=["segments"])
reader = require("admin", "read")
admin = require("admin")
MEDIA = {"csv": "text/csv", "jsonl": "application/x-ndjson",
         "parquet": "application/vnd.apache.parquet"}


class SegmentBody(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    definition: dict[str, Any] = Field(description="The condition tree (docs/segments.md).")
    id: str | None = Field(None, description="Default: made from the name (loyal-customers).")
    description: str | None = None


class SegmentPatch(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    definition: dict[str, Any] | None = None
    description: str | None = None


class TreeBody(BaseModel):
    definition: dict[str, Any]


class OverlapBody(BaseModel):
    segments: list[str] = Field(min_length=2, max_length=20)


class RefreshBody(BaseModel):
    segments: list[str] | None = Field(None, description="Default: every segment.")
    traits: bool = Field(True, description="Recompute computed traits first.")



def _run(fn, *args, **kwargs):
    refuse_unstorable(args, kwargs)
    try:
        return fn(*args, **kwargs)
    except (InvalidTree, InvalidDefinition) as exc:
        raise ApiError(422, "invalid_definition", str(exc),
                       errors=[{"path": e.path or "/", "message": e.message}
                               for e in exc.errors]) from None
    except (SegmentNotFound, TraitNotFound) as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except (SegmentConflict, TraitExists) as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except (ValueError, OverflowError) as exc:   # OverflowError: a date outside years 1-9999
        raise ApiError(400, "invalid_request", str(exc)) from None


def _segments(request: Request):
    return request.app.state.workspace.segments


@router.post("/v1/segments", operation_id="create_segment", status_code=201)
def create(body: SegmentBody, request: Request, who: Principal = Depends(admin)):
    """Save a segment and compute its members."""
    seg = _run(_segments(request).create, body.definition, body.name, segment_id=body.id,
               description=body.description, actor=who.actor)
    return json_response(seg, status=201)


@router.get("/v1/segments", operation_id="list_segments", dependencies=[Depends(reader)])
def list_segments(request: Request):
    return json_response({"segments": _segments(request).list()})


@router.post("/v1/segments/preview", operation_id="preview_segment",
             dependencies=[Depends(reader)])
def preview(body: TreeBody, request: Request):
    """The size of an unsaved tree, for a segment builder."""
    return json_response(_run(_segments(request).preview, body.definition))


@router.post("/v1/segments/overlap", operation_id="segment_overlap",
             dependencies=[Depends(reader)])
def overlap(body: OverlapBody, request: Request):
    """Sizes, shared members and Jaccard index of two or more segments."""
    from .audience import overlap as compute

    return json_response(_run(compute, request.app.state.workspace.engine, body.segments))


@router.post("/v1/segments/refresh", operation_id="refresh_segments")
def refresh(body: RefreshBody, request: Request, who: Principal = Depends(admin)):
    """Recompute computed traits and segments now (time-windowed conditions change by
    themselves)."""
    return json_response(_run(_segments(request).refresh, body.segments, traits=body.traits))


@router.get("/v1/segments/{segment_id}", operation_id="get_segment",
            dependencies=[Depends(reader)])
def get(segment_id: str, request: Request):
    """Definition, size, last computed."""
    return json_response(_run(_segments(request).get, segment_id))


@router.patch("/v1/segments/{segment_id}", operation_id="update_segment")
def update(segment_id: str, body: SegmentPatch, request: Request,
           who: Principal = Depends(admin)):
    return json_response(_run(_segments(request).update, segment_id, definition=body.definition,
                              name=body.name, description=body.description, actor=who.actor))


@router.delete("/v1/segments/{segment_id}", operation_id="delete_segment", status_code=204)
def delete(segment_id: str, request: Request, who: Principal = Depends(admin)):
    _run(_segments(request).delete, segment_id, actor=who.actor)
    return json_response(None, status=204)


@router.get("/v1/segments/{segment_id}/members", operation_id="segment_members",
            dependencies=[Depends(reader)])
def members(segment_id: str, request: Request, limit: int = Query(100, ge=1, le=10_000),
            cursor: str | None = None,
            traits: str | None = Query(None, description="Comma-separated trait names.")):
    """Members in profile id order; pass ``next_cursor`` back as ``cursor``."""
    return json_response(_run(_segments(request).members, segment_id, limit=limit,
                              cursor=cursor, traits=_names(traits)))


@router.get("/v1/segments/{segment_id}/changes", operation_id="segment_changes",
            dependencies=[Depends(reader)])
def changes(segment_id: str, request: Request, after: int = Query(0, ge=0),
            limit: int = Query(1000, ge=1, le=10_000)):
    """Entered/exited events after a cursor (``next_after``), oldest first."""
    return json_response(_run(_segments(request).changes, segment_id, after, limit))


@router.get("/v1/segments/{segment_id}/export", operation_id="export_segment")
def export(segment_id: str, request: Request,
           format: Literal["csv", "jsonl", "parquet"] = "csv",
           traits: str | None = Query(None, description="Comma-separated trait names."),
           identifiers: str | None = Query(None, description="Comma-separated identifier types."),
           purpose: str = Query(description="What the export is for (email_marketing, "
                                "advertising, …): only members whose consent allows it."),
           destination: Literal["google", "meta"] | None = Query(
               None, description="Hash the identifiers as this ad platform requires."),
           third_party: bool = Query(False, description="Add the column third_party_segments "
                                     "(only where consent allows third_party_enrichment)."),
           who: Principal = Depends(reader)):
    """Stream the members whose consent allows the purpose (restricted profiles never), with the
    chosen traits and identifiers."""
    from ..privacy.consent import activation_filter
    from .audience import export_chunks

    ws = request.app.state.workspace
    _run(ws.segments.get, segment_id)
    allowed, params = _run(activation_filter, ws.privacy_config, purpose)
    trait_names, id_types = _names(traits), _names(identifiers)
    enrich = (ws.privacy_config, datetime.now(timezone.utc)) if third_party else None
    chunks = _run(export_chunks, ws.engine, segment_id, format, trait_names, id_types,
                  only_profiles=allowed, only_params=params, destination=destination,
                  third_party=enrich)
    with ws.engine.transaction() as tx:
        audit(tx, who.actor, "segment.export", segment_id, orjson.dumps(
            {"format": format, "purpose": purpose, "destination": destination,
             "traits": trait_names, "identifiers": id_types, "third_party": third_party}).decode(),
            datetime.now(timezone.utc))
    return StreamingResponse(chunks, media_type=MEDIA[format], headers={
        "Content-Disposition": f'attachment; filename="{segment_id}.{format}"'})


# -- computed traits -----------------------------------------------------------------------------

@router.get("/v1/traits", operation_id="list_traits", dependencies=[Depends(reader)])
def list_traits(request: Request):
    return json_response({"traits": _segments(request).traits.list()})


@router.post("/v1/traits", operation_id="define_trait", status_code=201)
def define_trait(body: dict[str, Any], request: Request, who: Principal = Depends(admin)):
    """Define a computed trait (docs/segments.md) and compute it for every profile."""
    trait = _run(_segments(request).define_trait, body, actor=who.actor)
    return json_response(trait, status=201)


@router.get("/v1/traits/{name}", operation_id="get_trait", dependencies=[Depends(reader)])
def get_trait(name: str, request: Request):
    return json_response(_run(_segments(request).traits.get, name))


@router.delete("/v1/traits/{name}", operation_id="delete_trait", status_code=204)
def delete_trait(name: str, request: Request, who: Principal = Depends(admin)):
    _run(_segments(request).delete_trait, name, actor=who.actor)
    return json_response(None, status=204)


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]

"""Admin routes of the collection layer: sources, tracking plans, status, failed events."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from ..http import ApiError, json_response, refuse_unstorable, require
from . import failed as failed_store
from .plans import PlanError, validate_plan
from .sources import CHANNELS, SourceError, create_source, get_source, list_sources, set_tracking_plan
from .status import processing_status, source_status

router = APIRouter(tags=["sources"])
admin = Depends(require("admin"))


class NewSource(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    channel: Literal[CHANNELS]  # type: ignore[valid-type]
    rate_limit: float | None = Field(None, gt=0, description="Events per second; none = unlimited.")


class ReplayRequest(BaseModel):
    ids: list[int] | None = Field(None, description="Failed-event ids; none = all pending matching.")
    source: str | None = None
    reason: str | None = Field(None, description="Only entries with this reason code.")
    payload: dict[str, Any] | None = Field(None, description="A corrected message (one id only).")


def _source_json(source) -> dict[str, Any]:
    return {"source_id": source.source_id, "name": source.name, "channel": source.channel,
            "rate_limit": source.rate_limit, "tracking_plan": source.tracking_plan,
            "disabled": source.disabled}


@router.get("/v1/sources", operation_id="list_sources", dependencies=[admin])
def get_sources(request: Request):
    return json_response([_source_json(s) for s in list_sources(request.app.state.engine)])


@router.post("/v1/sources", operation_id="create_source", status_code=201, dependencies=[admin])
def post_source(body: NewSource, request: Request):
    refuse_unstorable(body.name)
    try:
        source, key = create_source(request.app.state.engine, body.name, body.channel,
                                    body.rate_limit)
    except SourceError as exc:
        raise ApiError(409, "source_exists", str(exc)) from None
    return json_response({**_source_json(source), "write_key": key}, 201)


@router.put("/v1/sources/{name}/tracking-plan", operation_id="set_tracking_plan",
            dependencies=[admin])
def put_plan(name: str, plan: dict[str, Any], request: Request):
    refuse_unstorable(name, plan)
    engine = request.app.state.engine
    source = _source(engine, name)
    try:
        validate_plan(plan)
    except PlanError as exc:
        raise ApiError(400, "invalid_tracking_plan", str(exc)) from None
    set_tracking_plan(engine, source, plan)
    request.app.state.keyring.forget()
    return json_response(_source_json(get_source(engine, source.source_id)))


@router.delete("/v1/sources/{name}/tracking-plan", operation_id="delete_tracking_plan",
               dependencies=[admin])
def delete_plan(name: str, request: Request):
    engine = request.app.state.engine
    source = _source(engine, name)
    set_tracking_plan(engine, source, None)
    request.app.state.keyring.forget()
    return json_response(_source_json(get_source(engine, source.source_id)))


@router.get("/v1/status", operation_id="status", dependencies=[admin])
def get_status(request: Request):
    engine = request.app.state.engine
    return json_response({"sources": source_status(engine),
                          "processing": processing_status(engine)})


@router.get("/v1/failed-events", operation_id="list_failed_events", dependencies=[admin])
def get_failed_events(request: Request, source: str | None = None, reason: str | None = None,
                      status: Literal["failed", "replayed"] | None = "failed",
                      limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0)):
    refuse_unstorable(source, reason)
    engine = request.app.state.engine
    try:
        items = failed_store.list_failed(engine, source, reason, status, limit, offset)
        total = failed_store.count_failed(engine, source, reason, status)
    except SourceError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    return json_response({"total": total, "limit": limit, "offset": offset, "items": items})


@router.get("/v1/failed-events/{failed_id}", operation_id="get_failed_event", dependencies=[admin])
def get_failed_event(failed_id: int, request: Request):
    row = failed_store.get_failed(request.app.state.engine, failed_id)
    if row is None:
        raise ApiError(404, "not_found", f"no failed event {failed_id}")
    return json_response(row)


@router.post("/v1/failed-events/replay", operation_id="replay_failed_events", dependencies=[admin])
async def post_replay(body: ReplayRequest, request: Request):
    state = request.app.state
    try:
        totals = await run_in_threadpool(
            failed_store.replay, state.engine, state.ingestor, body.ids, body.source, body.reason,
            body.payload,
        )
    except (ValueError, SourceError) as exc:
        raise ApiError(400, "invalid_replay", str(exc)) from None
    return json_response(totals)


def _source(engine, name: str):
    try:
        return get_source(engine, name)
    except SourceError as exc:
        raise ApiError(404, "not_found", str(exc)) from None

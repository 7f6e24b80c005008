"""DMP routes: segment feeds and ID syncs pushed over HTTP, cookie profiles, status, expiry and the
taxonomy.

A DMP pushes with the write key of a source whose channel is dmp, as an SDK pushes events with its
source's key; reading cookie profiles and the status takes a read or admin key, and replacing the
taxonomy or expiring now takes an admin key. A malformed entry in a push is rejected with its
reason (its position in the list, counted from 0) and the rest lands.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from ..collect.sources import Principal, Source
from ..http import ApiError, json_response, read_body, refuse_unstorable, require
from ..identity.persist import audit
from .config import DMPConfigError, workspace_config
from .feeds import FeedError, chunk_from_objects
from .store import MODES, CookieNotFound, DMPError

router = APIRouter(tags=["dmp"])
writer = require("write")
reader = require("admin", "read")
admin = require("admin")
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_ENTRIES = 10_000

_ENTRY = {"type": "object", "properties": {
    "id": {"type": "string", "description": "Cookie or device id (a partner's id with partner)."},
    "segments": {"type": "array", "items": {"type": "string"}},
    "removed": {"type": "array", "items": {"type": "string"}}}, "required": ["id"]}
_SEGMENTS_DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["cookies"], "properties": {
        "mode": {"type": "string", "enum": list(MODES), "default": "incremental"},
        "partner": {"type": "string"},
        "cookies": {"type": "array", "maxItems": MAX_ENTRIES, "items": _ENTRY}}}}}}}
_SYNC_DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["partner", "pairs"], "properties": {
        "partner": {"type": "string"},
        "pairs": {"type": "array", "maxItems": MAX_ENTRIES, "items": {
            "type": "object", "properties": {"partner_id": {"type": "string"},
                                             "cookie_id": {"type": "string"}}}}}}}}}}
_TAXONOMY_DOC = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string", "description": "id,parent_id,name,tier (or the "
                                                            "IAB's own columns)"}},
    "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}}


def _dmp_source(who: Principal) -> Source:
    source = who.source
    if source is None or source.channel != "dmp":
        raise ApiError(403, "forbidden", f"the key's source {source.name if source else '?'!r} "
                       "is not a DMP source; use the write key of a source with the channel dmp")
    if source.disabled:
        raise ApiError(403, "source_disabled", f"the source {source.name!r} is disabled")
    return source


async def _object(request: Request, list_key: str, allowed: set[str]) -> dict[str, Any]:
    try:
        data = orjson.loads(await read_body(request, MAX_BODY_BYTES))
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", f"expected an object with {list_key!r}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown field {unknown[0]!r}; allowed: "
                       f"{', '.join(sorted(allowed))}")
    entries = data.get(list_key)
    if not isinstance(entries, list):
        raise ApiError(400, "invalid_request", f"{list_key!r} must be a list")
    if len(entries) > MAX_ENTRIES:
        raise ApiError(413, "payload_too_large", f"at most {MAX_ENTRIES} {list_key} per request; "
                       "send more requests or a feed file")
    for key in ("mode", "partner"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ApiError(400, "invalid_request", f"{key!r} must be text")
    refuse_unstorable(data.get("mode"), data.get("partner"))
    return data


def _indexed(rejections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rejections by position in the request's list (0 = first) instead of line."""
    return [{"index": r["line"] - 1, "reason": r["reason"], "message": r["message"]}
            for r in rejections]


def _refused(exc: Exception) -> ApiError:
    if isinstance(exc, DMPConfigError):
        return ApiError(403, "partner_not_allowed", str(exc))
    return ApiError(400, "invalid_request", str(exc))


@router.post("/v1/dmp/segments", operation_id="dmp_push_segments", openapi_extra=_SEGMENTS_DOC)
async def push_segments(request: Request, who: Principal = Depends(writer)):
    """Third-party segments for cookies: add (``segments``) and remove (``removed``); ``mode``
    full makes the list the source's complete state."""
    from .store import apply_feed

    source = _dmp_source(who)
    data = await _object(request, "cookies", {"mode", "partner", "cookies"})
    mode = data.get("mode") or "incremental"
    ws = request.app.state.workspace
    chunk = chunk_from_objects(((n, c) for n, c in enumerate(data["cookies"], start=1)),
                               id_key="id")
    try:
        report = await run_in_threadpool(
            apply_feed, ws.engine, source.name, [chunk], mode=mode, partner=data.get("partner"),
            config=workspace_config(ws), name="http")
    except (DMPError, DMPConfigError, FeedError) as exc:
        raise _refused(exc) from None
    out = report.to_dict()
    out["rejections"] = _indexed(out["rejections"])
    return json_response(out)


@router.post("/v1/dmp/sync", operation_id="dmp_sync", openapi_extra=_SYNC_DOC)
async def sync(request: Request, who: Principal = Depends(writer)):
    """ID sync pairs of a partner: its id for one of our cookies."""
    from .idsync import load_pairs

    _dmp_source(who)
    data = await _object(request, "pairs", {"partner", "pairs"})
    if not data.get("partner"):
        raise ApiError(400, "invalid_request", "'partner' is required: whose ids these are")
    ws = request.app.state.workspace
    try:
        result = await run_in_threadpool(load_pairs, ws.engine, data["partner"], data["pairs"],
                                         config=workspace_config(ws))
    except (DMPError, DMPConfigError) as exc:
        raise _refused(exc) from None
    result["rejections"] = _indexed(result["rejections"])
    return json_response(result)


@router.get("/v1/dmp/cookies/{cookie_id}", operation_id="dmp_cookie")
def cookie(cookie_id: str, request: Request, who: Principal = Depends(reader)):
    """A cookie's live third-party segments (with taxonomy names), partner ids and linked
    profile."""
    from .store import cookie_profile

    refuse_unstorable(cookie_id)
    ws = request.app.state.workspace
    try:
        found = cookie_profile(ws.engine, cookie_id)
    except CookieNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    with ws.engine.transaction() as tx:
        audit(tx, who.actor, "dmp.cookie.read", cookie_id,
              orjson.dumps({"linked_profile_id": found["linked_profile_id"]}).decode(),
              datetime.now(timezone.utc))
    return json_response(found)


@router.get("/v1/dmp/status", operation_id="dmp_status", dependencies=[Depends(reader)])
def status(request: Request):
    """Live cookies and rows (per source), expiring within 7 days, partners, recent feeds."""
    from .store import stats

    return json_response(stats(request.app.state.workspace.engine))


@router.post("/v1/dmp/expire", operation_id="dmp_expire")
def expire_now(request: Request, who: Principal = Depends(admin)):
    """Delete expired cookie segments and ID sync pairs now (the server also runs it on a
    schedule)."""
    from .store import expire

    result = expire(request.app.state.workspace.engine)
    return json_response(result)


@router.put("/v1/dmp/taxonomy", operation_id="dmp_put_taxonomy", openapi_extra=_TAXONOMY_DOC)
async def put_taxonomy(request: Request, who: Principal = Depends(admin)):
    """Replace the segment taxonomy: CSV/TSV text, or a JSON list of {id, parent_id, name,
    tier}."""
    from .taxonomy import TaxonomyError, nodes_from_json, parse_taxonomy, replace_taxonomy

    body = await read_body(request, MAX_BODY_BYTES)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if kind == "application/json":
            try:
                nodes = nodes_from_json(orjson.loads(body))
            except orjson.JSONDecodeError as exc:
                raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
        else:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(400, "invalid_request", "the taxonomy must be UTF-8 text") from None
            refuse_unstorable(text)
            nodes = parse_taxonomy(text)
        engine = request.app.state.workspace.engine
        result = await run_in_threadpool(replace_taxonomy, engine, nodes)
    except TaxonomyError as exc:
        raise ApiError(422, "invalid_taxonomy", str(exc)) from None
    with engine.transaction() as tx:
        audit(tx, who.actor, "dmp.taxonomy.replace", None,
              orjson.dumps({"nodes": result["nodes"]}).decode(), datetime.now(timezone.utc))
    return json_response(result)

"""Data-subject request routes (OpenDSR-style): privacy or admin keys. The server works through
pending requests every ``privacy_interval_minutes`` (see :mod:`klantbeeld.app`)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from ..collect.sources import Principal
from ..http import ApiError, json_response, refuse_unstorable, require
from . import dsr
from .access import archive_path


router = APIRouter(tags=["privacy"])
privacy = require("privacy", "admin")


class Identity(BaseModel):
    type: str = Field(description="An identifier type: email, phone, user_id, anonymous_id, …")
    value: str | None = Field(None, description="The raw value; normalised and hashed on arrival.")
    hash: str | None = Field(None, description="Or: SHA-256 (hex) of the normalised value.")


class RequestBody(BaseModel):
    type: Literal["access", "portability", "erasure", "rectification", "restriction",
                  "objection"]
    identities: list[Identity] = Field(min_length=1)
    detail: dict[str, Any] | None = Field(
        None, description='Rectification only: {"traits": {name: corrected value}}.')



def _run(fn, *args, **kwargs):
    refuse_unstorable(args, kwargs)
    try:
        return fn(*args, **kwargs)
    except dsr.RequestNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except dsr.RequestConflict as exc:
        raise ApiError(409, "request_conflict", str(exc)) from None
    except ValueError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None


@router.post("/v1/privacy/requests", operation_id="submit_privacy_request", status_code=201)
def submit(body: RequestBody, request: Request, who: Principal = Depends(privacy)):
    """Record a data-subject request → 201 with its id, received and expected completion time."""
    identities = [i.model_dump(exclude_none=True) for i in body.identities]
    made = _run(dsr.submit, request.app.state.workspace, body.type, identities, who.actor,
                body.detail)
    return json_response(made, status=201)


@router.get("/v1/privacy/requests", operation_id="list_privacy_requests",
            dependencies=[Depends(privacy)])
def list_all(request: Request,
             status: Literal["pending", "in_progress", "completed", "cancelled",
                             "failed"] | None = None,
             limit: int = Query(100, ge=1, le=1000)):
    """Requests, newest first."""
    return json_response({"requests": _run(dsr.list_requests, request.app.state.workspace,
                                           status, limit)})


@router.get("/v1/privacy/requests/{request_id}", operation_id="get_privacy_request",
            dependencies=[Depends(privacy)])
def show(request_id: str, request: Request):
    """One request: status, times, result."""
    return json_response(_run(dsr.get, request.app.state.workspace, request_id))


@router.delete("/v1/privacy/requests/{request_id}", operation_id="cancel_privacy_request")
def cancel(request_id: str, request: Request, who: Principal = Depends(privacy)):
    """Cancel a pending request (409 once it has started)."""
    return json_response(_run(dsr.cancel, request.app.state.workspace, request_id, who.actor))


@router.get("/v1/privacy/requests/{request_id}/download", operation_id="download_privacy_archive",
            dependencies=[Depends(privacy)])
def download(request_id: str, request: Request):
    """The ZIP of a completed access or portability request."""
    ws = request.app.state.workspace
    found = _run(dsr.get, ws, request_id)
    if found["type"] not in ("access", "portability"):
        raise ApiError(409, "request_conflict", f"privacy request {request_id} is an "
                       f"{found['type']} request: it has no archive")
    if found["status"] != "completed":
        raise ApiError(409, "request_conflict",
                       f"privacy request {request_id} is {found['status']}, not completed")
    path = archive_path(ws, request_id)
    if not (found["result"] or {}).get("file") or not path.exists():
        raise ApiError(404, "not_found", f"privacy request {request_id} has no archive here "
                       "(nothing matched, it was erased since, or it is on another server)")
    return FileResponse(path, media_type="application/zip", filename=path.name)


@router.post("/v1/privacy/process", operation_id="process_privacy_requests")
def process(request: Request, who: Principal = Depends(privacy)):
    """Carry out every pending request now → the requests as they ended."""
    return json_response({"requests": dsr.process_pending(request.app.state.workspace,
                                                          who.actor)})

"""DMP activation routes: audience insight, overlap and look-alike exports.

Read and admin keys may read insight and overlap (counts only, no profile or cookie leaves);
only admin keys train and download a look-alike audience, which hands cookie ids to an ad
platform. The look-alike answer is the file itself (so a script can pipe it straight to the
platform's upload), with the size and quality report in response headers.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..collect.sources import Principal
from ..http import ApiError, json_response, refuse_unstorable, require
from ..identity.persist import audit
from .lookalike import SeedTooSmall

router = APIRouter(tags=["dmp"])
reader = require("admin", "read")
admin = require("admin")
MEDIA = {"csv": "text/csv", "txt": "text/plain"}


class OverlapBody(BaseModel):
    audiences: list[str] = Field(min_length=1, max_length=20,
                                 description="DMP audiences: taxonomy node ids.")
    segments: list[str] = Field(min_length=1, max_length=20, description="CDP segment ids.")


class LookalikeBody(BaseModel):
    top_percent: float = Field(5.0, gt=0, le=100,
                               description="Export the best-scoring k % of unlinked cookies.")
    format: Literal["csv", "txt"] = Field(
        "csv", description="csv: cookie_id,score,rank; txt: one cookie id a line.")
    min_seed: int = Field(100, ge=2, description="Refuse seeds reaching fewer cookies.")
    holdout_share: float = Field(0.3, gt=0, lt=1)
    behaviour_features: int = Field(0, ge=0, le=500,
                                    description="Most common anonymous event names to learn "
                                    "from too (0: third-party segments only).")
    random_state: int = 0


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _run(fn, *args, **kwargs):
    refuse_unstorable(args, kwargs)
    try:
        return fn(*args, **kwargs)
    except SeedTooSmall as exc:
        raise ApiError(422, "seed_too_small", str(exc)) from None
    except LookupError as exc:          # SegmentNotFound, AudienceNotFound
        raise ApiError(404, "not_found", str(exc)) from None
    except ValueError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None


def _tier(tier: int | None = Query(None, ge=1, le=3,
                                   description="Only categories of this taxonomy tier.")):
    return tier


@router.get("/v1/segments/{segment_id}/insight", operation_id="segment_insight",
            dependencies=[Depends(reader)])
def segment_insight(segment_id: str, request: Request, tier: int | None = Depends(_tier)):
    """The segment's members by third-party category (through their linked cookies), with the
    share in the whole base and the index; profiles without third-party enrichment consent are
    left out."""
    from .insight import segment_composition

    ws = request.app.state.workspace
    with ws.engine.session() as s:
        return json_response(_run(segment_composition, s, segment_id, ws.privacy_config,
                                  _now(), tier))


@router.get("/v1/dmp/audiences/{segment_id}/insight", operation_id="dmp_audience_insight",
            dependencies=[Depends(reader)])
def audience_insight(segment_id: str, request: Request, tier: int | None = Depends(_tier)):
    """A DMP audience (cookies holding the taxonomy node or one below it) by category, against
    all cookie profiles."""
    from .insight import dmp_audience_composition

    ws = request.app.state.workspace
    with ws.engine.session() as s:
        return json_response(_run(dmp_audience_composition, s, segment_id, _now(), tier))


@router.post("/v1/dmp/overlap", operation_id="dmp_overlap", dependencies=[Depends(reader)])
def overlap(body: OverlapBody, request: Request):
    """Per DMP audience × CDP segment: sizes, shared known profiles, union and Jaccard."""
    from .insight import overlap as compute

    ws = request.app.state.workspace
    with ws.engine.session() as s:
        return json_response({"pairs": _run(compute, s, body.audiences, body.segments, _now(),
                                            ws.privacy_config)})


@router.post("/v1/segments/{segment_id}/lookalike", operation_id="segment_lookalike")
def lookalike(segment_id: str, body: LookalikeBody, request: Request,
              who: Principal = Depends(admin)):
    """Train a look-alike model on the segment's linked cookies and answer the top k % of
    unlinked cookies as a file; the report (size, held-out recall and lift) is in the headers
    ``X-Lookalike-Cookies``, ``X-Lookalike-Recall``, ``X-Lookalike-Lift`` and, in full as JSON,
    ``X-Lookalike-Report``."""
    from .lookalike import LookalikeExportConfig, build, render

    ws = request.app.state.workspace
    config = LookalikeExportConfig(min_seed=body.min_seed, holdout_share=body.holdout_share,
                                   top_percent=body.top_percent, random_state=body.random_state,
                                   max_behaviour_features=body.behaviour_features)
    now = _now()
    with ws.engine.session() as s:
        result = _run(build, s, segment_id, now, config, ws.privacy_config)
    data, report = _run(render, result, body.top_percent, body.format)
    with ws.engine.transaction() as tx:
        audit(tx, who.actor, "dmp.lookalike_export", segment_id, json.dumps(
            {k: report[k] for k in ("format", "top_percent", "cookies", "scored", "positives",
                                    "held_out_recall", "lift")}), now)
    name = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in segment_id)
    return Response(data, media_type=MEDIA[body.format], headers={
        "Content-Disposition": f'attachment; filename="lookalike-{name}.{body.format}"',
        "X-Lookalike-Cookies": str(report["cookies"]),
        "X-Lookalike-Recall": str(report["held_out_recall"]),
        "X-Lookalike-Lift": str(report["lift"]),
        "X-Lookalike-Report": json.dumps({**report, "model": {
            k: result.card[k] for k in ("seed_members", "positives", "scored", "features",
                                        "training_time_s")}}, ensure_ascii=True)})

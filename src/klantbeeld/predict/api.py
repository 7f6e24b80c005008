"""Predictive model routes: model cards for read and admin keys; starting a run for admin keys.

A run can take minutes on a large base, so ``POST /v1/predict/run`` starts it in the background
and answers 202; ``GET /v1/models`` shows each model's latest run as it lands.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from ..collect.sources import Principal
from ..http import ApiError, json_response, require
from .base import ModelNotFound, NoPurchases, PredictBusy, PredictConfigError

router = APIRouter(tags=["predict"])
reader = require("admin", "read")
admin = require("admin")


class RunBody(BaseModel):
    models: list[Literal["clv", "rfm", "churn", "affinity", "lookalike"]] | None = Field(
        None, description="Default: the models in predict.yaml.")


@router.get("/v1/models", operation_id="list_models")
def list_models(request: Request, _: Principal = Depends(reader)):
    """The latest run of every model, with its card."""
    ws = request.app.state.workspace
    return json_response({"models": ws.predict.models(), "running": ws.predict.running})


@router.get("/v1/models/{model}", operation_id="get_model")
def get_model(model: str, request: Request, _: Principal = Depends(reader)):
    """A model's latest card and its recent runs."""
    try:
        return json_response(request.app.state.workspace.predict.card(model))
    except ModelNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None


@router.post("/v1/predict/run", status_code=202, operation_id="run_predict")
def run_predict(request: Request, body: RunBody | None = None,
                principal: Principal = Depends(admin)):
    """Start retraining the models and rewriting their scores (in the background)."""
    models = body.models if body else None
    try:
        request.app.state.workspace.predict.start(models, actor=principal.actor)
    except PredictBusy as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except (NoPurchases, PredictConfigError) as exc:
        raise ApiError(422, "cannot_run", str(exc)) from None
    return json_response({"status": "started", "models": models}, status=202)

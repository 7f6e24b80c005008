"""The HTTP application: ``create_app(settings)`` assembles each capability's routes.

Nothing happens at import time. The store opens, migrates and starts its writer when the app starts
(the lifespan), and the writer drains its queue before the store closes on shutdown.
"""

from __future__ import annotations

import sys
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .collect.admin_api import router as collect_admin_router
from .collect.api import router as collect_router, serve_collection
from .collect.ratelimit import RateLimiter
from .collect.sources import KeyRing
from .collect.workers import IngestPool
from .dmp.store import expire as expire_dmp
from .http import ApiError, error_response, json_response
from .dmp.activation_api import router as dmp_activation_router
from .dmp.api import router as dmp_router
from .identity.api import router as identity_router
from .predict.api import router as predict_router
from .profiles.api import router as profiles_router
from .privacy.admin_api import router as privacy_admin_router
from .privacy.consent_api import router as consent_router
from .privacy.dsr_api import router as dsr_router
from .segments.api import router as segments_router
from .privacy.dsr import process_pending
from .privacy.retention import run as run_retention
from .schedule import Periodic
from .settings import Settings, load_settings
from .workspace import Workspace


def _scheduled_predict(ws: Workspace) -> object:
    from .predict.base import NoPurchases, PredictBusy

    try:
        return ws.predict.run(actor="schedule")
    except (NoPurchases, PredictBusy) as exc:   # nothing to learn from yet, or already running
        return str(exc)


class _App(FastAPI):
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and await serve_collection(self, scope, receive, send):
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, workspace: Workspace | None = None) -> FastAPI:
    """Build the app. Pass a workspace to share an open store (tests, embedding)."""
    settings = settings or (workspace.settings if workspace else load_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # The writer thread and the event loop hand the GIL back and forth: DuckDB's client takes it
        # again during a statement, and at Python's default 5 ms switch interval each hand-over can
        # stall a commit that long (DuckDB beside a busy Python thread ran 4x slower in a probe;
        # 3x faster again at 0.5 ms). Shorter intervals cost a little more switching, nothing else.
        previous_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(previous_interval, 0.0005))
        ws = workspace or Workspace.open(settings)
        app.state.workspace = ws
        app.state.settings = ws.settings
        app.state.engine = ws.engine
        app.state.keyring = KeyRing(ws.engine)
        app.state.ratelimiter = RateLimiter()
        app.state.ingestor = ws.ingestor
        app.state.ingest_pool = None
        if ws.settings.ingest_processes > 0:
            app.state.ingest_pool = IngestPool(ws.settings.ingest_processes)
            await app.state.ingest_pool.start()
        ws.ingestor.start()
        ws.segments  # built-in and declared traits and segments, in line with segments.yaml
        refresher = Periodic("segment-refresh", ws.settings.segment_refresh_minutes * 60,
                             ws.segments.refresh).start()
        retention = Periodic("retention", ws.settings.retention_interval_hours * 3600,
                             lambda: run_retention(ws, actor="schedule")).start()
        requests = Periodic("privacy-requests", ws.settings.privacy_interval_minutes * 60,
                            lambda: len(process_pending(ws, "schedule"))).start()
        expiry = Periodic("dmp-expiry", ws.settings.dmp_expiry_interval_hours * 3600,
                          lambda: expire_dmp(ws.engine)).start()
        predictions = Periodic("predict", ws.settings.predict_interval_hours * 3600,
                               lambda: _scheduled_predict(ws)).start()
        try:
            yield
        finally:
            predictions.stop()
            expiry.stop()
            requests.stop()
            retention.stop()
            refresher.stop()
            ws.ingestor.stop()
            if app.state.ingest_pool is not None:
                app.state.ingest_pool.close()
            if workspace is None:
                ws.close()
            sys.setswitchinterval(previous_interval)

    app = _App(
        title="Klantbeeld",
        version=__version__,
        description="Customer Data Platform: collection (Segment-compatible), sources, failed events, "
        "identity resolution, unified profiles, computed traits and segments, predictive scores, the DMP bridge.",
        lifespan=lifespan,
    )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers, exc.errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    @app.get("/health", operation_id="health", tags=["meta"])
    def health():
        return json_response({"status": "ok", "version": __version__})

    app.include_router(collect_router)
    app.include_router(collect_admin_router)
    app.include_router(consent_router)   # before profiles: /v1/profiles/{ref}/consent
    app.include_router(profiles_router)
    app.include_router(identity_router)
    app.include_router(segments_router)
    app.include_router(predict_router)
    app.include_router(dmp_router)
    app.include_router(dmp_activation_router)
    app.include_router(dsr_router)
    app.include_router(privacy_admin_router)
    return app

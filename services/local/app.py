"""The one-machine deployment: webhook receiver (and the search API) in one FastAPI process."""

import time
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.core.config import Settings
from services.core.logging import get_logger
from services.core.wiring import Storage, build_storage
from services.ingest.edge import error_body
from services.ingest.router import router as webhook_router
from services.ingest.service import Archiver, WebhookReceiver


@dataclass
class LocalServer:
    app: FastAPI
    storage: Storage


def create_local_app(settings: Settings, secrets: list[str], storage: Storage | None = None) -> FastAPI:
    storage = storage or build_storage(settings)
    archiver = Archiver(storage.blobs, storage.index, time.time, settings.default_region)
    app = FastAPI(
        title="CallVault",
        version="0.1.0",
        description="The archive for AI voice-agent calls: signed ElevenLabs webhooks in, searchable calls out.",
    )
    app.state.receiver = WebhookReceiver(archiver, secrets, settings.max_body_bytes)
    app.state.storage = storage
    app.state.logger = get_logger("callvault", settings.log_level)
    app.include_router(webhook_router)

    @app.get("/healthz", tags=["ops"], summary="Liveness: 200 once the server is ready")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    install_error_envelope(app)
    return app


def install_error_envelope(app: FastAPI) -> None:
    """Framework errors (404 route, 405, validation) in the same envelope as ours; never a trace."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail), ""), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        return JSONResponse(error_body("invalid_request", f"invalid parameters: {fields}", ""), status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body("internal", "internal error", ""), status_code=500)

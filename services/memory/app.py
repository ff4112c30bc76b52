"""Composing the memory routes into an app: ``mount_memory`` for an existing app (the local server),
``create_memory_app`` for the memory API on its own (the AWS memory function, benchmarks)."""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from fastapi import FastAPI, Request

from services.core.logging import get_logger
from services.web.auth import ApiKeys
from services.web.edge import RequestContextMiddleware, add_log_fields, install_error_handlers

from .router import MemoryContext, create_memory_router


def mount_memory(app: FastAPI, context: MemoryContext, require_api_key: Callable[..., Any]) -> None:
    """Add the three memory routes to ``app``; ``require_api_key`` guards ``/callers/...``."""
    app.state.memory = context
    app.include_router(create_memory_router(require_api_key))


def api_key_dependency(keys: ApiKeys) -> Callable[[Request], None]:
    """A bearer-key check over ``keys`` for apps that have no search context of their own."""

    def require_api_key(request: Request) -> None:
        principal = keys.check_header(request.headers.get("authorization"))  # any role may read memories
        # The key's id (never the key) for the log line and, on AWS, the access audit's actor.
        add_log_fields(request, key_id=principal.key_id, role=principal.role)

    return require_api_key


def create_memory_app(context: MemoryContext, api_keys: ApiKeys, logger: Logger | None = None) -> FastAPI:
    logger = logger or get_logger("callvault-memory-api")
    app = FastAPI(
        title="CallVault memory",
        version="0.1.0",
        description="What CallVault remembers about callers, for people (API key) and agents (shared secret).",
        docs_url=None,  # no CDN page: on AWS the search function serves /docs, locally `serve` does
        redoc_url=None,
    )
    mount_memory(app, context, api_key_dependency(api_keys))
    app.state.logger = logger

    @app.get("/healthz", tags=["ops"], include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, logger=logger)
    return app

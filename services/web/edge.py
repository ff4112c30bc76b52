"""The HTTP edge of every CallVault FastAPI app: request ids, one log line per request, and the error
envelope for every failure (ours, the framework's, and the unexpected ones).

Unexpected exceptions are caught by a pure ASGI middleware rather than an ``Exception`` handler:
Starlette re-raises from its ``ServerErrorMiddleware`` after answering, and the server would then
print the exception's text (which can quote keys, paths or phone numbers) to its log.
"""

import time
import traceback
import uuid
from typing import Any

from aws_lambda_powertools import Logger
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.domain.errors import (
    CallVaultError,
    RangeNotSatisfiable,
    StorageUnavailable,
    Unauthorized,
    http_status,
)
from services.core.http import error_body

REQUEST_ID_HEADER = "x-request-id"
LOG_FIELDS = "log_fields"  # routes put extra (already masked) log fields in request.state under this name
# Every answer may hold a transcript, a link or a caller's number: nothing is cached or sniffed, and no
# page is framed, unless a route says otherwise (documentation assets, the console's own policy).
SAFE_DEFAULT_HEADERS = (
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
)
_FRAMEWORK_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}


def documented_error(description: str, code: str, message: str) -> dict[str, Any]:
    """An entry of a route's OpenAPI ``responses``: the one error envelope, with an example."""
    example = error_body(code, message, "a1b2c3d4e5f60718")
    return {"description": description, "content": {"application/json": {"example": example}}}


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def add_log_fields(request: Request, **fields: Any) -> dict[str, Any]:
    """Let a route add fields to its request's log line. Callers mask phone numbers first. Returns the
    line's fields: a streamed body may update them until it ends (the line is written after it)."""
    state = request.scope.setdefault("state", {})
    log_fields: dict[str, Any] = state.setdefault(LOG_FIELDS, {})
    log_fields.update(fields)
    return log_fields


class RequestContextMiddleware:
    """Gives each request an id (API Gateway's own on Lambda), echoes it in ``x-request-id``, adds the
    safe default headers a route did not set, logs one line per request (route template, never the raw
    path or query), and turns any exception that no handler took into the 500 envelope."""

    def __init__(self, app: ASGIApp, logger: Logger) -> None:
        self.app = app
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _aws_request_id(scope) or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        started = time.perf_counter()
        outcome: dict[str, Any] = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome["status"], outcome["started"] = message["status"], True
                headers = MutableHeaders(scope=message)
                headers.append(REQUEST_ID_HEADER, rid)
                for name, value in SAFE_DEFAULT_HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            self.logger.error(
                "request failed",
                extra={"request_id": rid, "error_type": type(exc).__name__, "trace": _frames(exc)},
            )
            if not outcome["started"]:
                response = JSONResponse(error_body("internal", "internal error", rid), status_code=500)
                await response(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            self.logger.info(
                "request",
                extra={
                    "request_id": rid,
                    "method": scope.get("method"),
                    "route": getattr(route, "path", None) or "unmatched",
                    "status": outcome["status"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    **state.get(LOG_FIELDS, {}),
                },
            )


def _aws_request_id(scope: Scope) -> str | None:
    event = scope.get("aws.event")
    if isinstance(event, dict):
        context = event.get("requestContext")
        if isinstance(context, dict) and isinstance(context.get("requestId"), str):
            return str(context["requestId"])
    return None


def _frames(exc: BaseException) -> list[str]:
    # Where it failed, without the exception's message (which may quote a key or a phone number).
    return [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_tb(exc.__traceback__)]


def error_response(request: Request, exc: CallVaultError) -> JSONResponse:
    status = http_status(exc)
    message = exc.message
    headers: dict[str, str] = {}
    if isinstance(exc, StorageUnavailable):
        message = "storage is unavailable; retry"  # the adapter's message names an operation we keep to logs
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="callvault"'
    if isinstance(exc, RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{exc.size}"
    add_log_fields(request, error_code=exc.code)
    return JSONResponse(error_body(exc.code, message, request_id(request)), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Our errors by the one status table, the framework's in the same envelope; never a trace."""

    @app.exception_handler(CallVaultError)
    async def callvault_error(request: Request, exc: CallVaultError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _FRAMEWORK_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return JSONResponse(
            error_body(code, message, request_id(request)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Location and pydantic's message, never the input (it may be a phone number).
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p not in {'query', 'path', 'header'})}: {e.get('msg')}"
            for e in exc.errors()
        )
        add_log_fields(request, error_code="invalid_request")
        return JSONResponse(
            error_body("invalid_request", f"invalid parameters: {problems}", request_id(request)), status_code=422
        )

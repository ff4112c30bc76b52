"""The webhook route for the local FastAPI app (the Lambda path uses handler.py instead).

Bounded work per request: the signature header is checked before any of the body is read; the body
is then hashed as it streams in and kept in memory only up to ``BodyIntake.spool_bytes`` (beyond, in
an unnamed owner-only temp file), and at most ``BodyIntake.max_in_flight`` bodies are taken at once
(more get 503 with ``Retry-After``). Only an authenticated body is ever read back whole, to parse it.

Authenticated bodies of ordinary size are stored by one dedicated thread, one after another
(``BodyIntake.store``): use-case threads of one process mostly fight for the GIL, and each SQLite
connection (one per thread) re-reads the pages another one changed (docs/decisions.md, #10).
"""

import asyncio
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from aws_lambda_powertools import Logger
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from services.core.domain import signing
from services.core.domain.errors import CallVaultError, PayloadTooLarge
from services.core.domain.signing import HEADER
from services.web.edge import RequestContextMiddleware

from .edge import JsonBody, busy, error_body, handle_webhook, refuse
from .service import WebhookReceiver

router = APIRouter(tags=["webhooks"])
WEBHOOK_PATH = "/webhooks/elevenlabs"

DEFAULT_MAX_BODIES_IN_FLIGHT = 8
DEFAULT_SPOOL_BYTES = 1 << 20  # a transcript is ~10-200 KB: only audio bodies reach the disk
RETRY_AFTER_SECS = 5
T = TypeVar("T")
# Stores a verified in-memory body and answers ``(status, body)`` as ``handle_webhook`` does.
StoreElsewhere = Callable[[bytes, str | None, str], Awaitable[tuple[int, JsonBody]]]


@dataclass
class BodyIntake:
    """How webhook bodies are taken in. One per app; the event loop is its only user (no lock)."""

    max_in_flight: int = DEFAULT_MAX_BODIES_IN_FLIGHT
    spool_bytes: int = DEFAULT_SPOOL_BYTES
    spool_dir: Path | None = None  # None: the system temp dir; `serve` uses the data dir (a disk, not tmpfs)
    retry_after_secs: int = RETRY_AFTER_SECS
    # Where verified in-memory bodies are stored (``callvault serve``: another process); None: the
    # ingest thread below.
    store_elsewhere: StoreElsewhere | None = None
    in_flight: int = 0
    _writer: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)

    def try_acquire(self) -> bool:
        if self.in_flight >= self.max_in_flight:
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        self.in_flight -= 1

    def spooled_to_disk(self, size: int) -> bool:
        return size > self.spool_bytes  # SpooledTemporaryFile's own rollover rule

    async def store(self, work: Callable[[], T]) -> T:
        """Run ``work`` on the ingest thread (created on first use; queued work waits its turn).

        Like Starlette's thread-pool hop, a cancelled request (server shutdown) still waits for its write,
        so the body stays counted in flight until the write has ended."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callvault-ingest")
        done = asyncio.get_running_loop().run_in_executor(self._writer, work)
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            await asyncio.wait({done})
            raise

    @contextmanager
    def spool(self) -> Iterator[IO[bytes]]:
        # Rolled over to tempfile.TemporaryFile: mode 0600, unnamed (O_TMPFILE) or unlinked at once,
        # so a crash leaves nothing behind and no other user can read an unauthenticated body.
        folder = str(self.spool_dir) if self.spool_dir is not None else None
        with tempfile.SpooledTemporaryFile(max_size=self.spool_bytes, dir=folder) as spool:
            yield spool


def install_body_intake(app: FastAPI, intake: BodyIntake) -> None:
    """Set the app's limits (``callvault serve`` does, from settings); an app without gets the defaults."""
    app.state.body_intake = intake


def body_intake(app: FastAPI) -> BodyIntake:
    intake: BodyIntake | None = getattr(app.state, "body_intake", None)
    if intake is None:
        intake = BodyIntake()
        install_body_intake(app, intake)
    return intake


_WEBHOOK_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "An ElevenLabs post-call webhook envelope, signed with `ElevenLabs-Signature`.",
        "content": {
            "application/json": {
                "example": {
                    "type": "post_call_transcription",
                    "event_timestamp": 1751802025,
                    "data": {"conversation_id": "conv_01jzfrjvcce0vsea1fcbpp9p04", "agent_id": "agent_..."},
                }
            }
        },
    },
    "parameters": [
        {
            "name": HEADER,
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "t=<unix seconds>,v0=<hex HMAC-SHA256 of '<t>.<raw body>'>",
        }
    ],
}


@router.post(
    WEBHOOK_PATH,
    summary="Receive an ElevenLabs post-call webhook",
    description=(
        "Verifies the signature over the raw body, then archives the transcript, audio or initiation "
        "failure. 200 only once the event is durably stored; 503 asks the sender to retry (storage "
        "failed, or too many bodies in flight: see `Retry-After`)."
    ),
    openapi_extra=_WEBHOOK_DOC,
    responses={
        401: {"description": "bad signature"},
        400: {"description": "bad payload"},
        413: {"description": "body too large"},
        503: {"description": "storage unavailable, or too many bodies in flight (`Retry-After`)"},
    },
)
async def receive_elevenlabs_webhook(request: Request) -> JSONResponse:
    receiver: WebhookReceiver = request.app.state.receiver
    logger: Logger = request.app.state.logger
    intake = body_intake(request.app)
    # The app's middleware gives every request one id (echoed in x-request-id); reuse it in body and logs.
    request_id = str(request.scope.get("state", {}).get("request_id") or uuid.uuid4().hex)
    header = request.headers.get(HEADER)
    try:
        _check_declared_size(request, receiver.max_body_bytes)
        # Missing, malformed or expired: refused before a byte of the body is read.
        verification = signing.begin(header, receiver.secrets, receiver.archiver.clock())
    except CallVaultError as exc:
        return _json(*refuse(exc, request_id, None, logger))
    if not intake.try_acquire():
        status, body = busy(request_id, intake.retry_after_secs, intake.max_in_flight, logger)
        return _json(status, body, {"Retry-After": str(intake.retry_after_secs)})
    try:
        with intake.spool() as spool:
            try:
                await _stream_into(request, spool, verification, receiver.max_body_bytes)
                verification.finish()
            except CallVaultError as exc:
                content_type = request.headers.get("content-type")
                return _json(*refuse(exc, request_id, verification.size, logger, content_type=content_type))
            except ClientDisconnect:
                # Nobody is left to answer; the log line says what happened, the response goes nowhere.
                logger.info("webhook abandoned", extra={"request_id": request_id, "body_bytes": verification.size})
                return _json(400, error_body("incomplete_body", "the body ended before its length", request_id))
            # Authenticated from here on: only now is the body read back whole, to be parsed.
            if intake.spooled_to_disk(verification.size):
                # Audio of many megabytes: read and stored in the shared pool, so it never holds up
                # the transcripts queued for the ingest thread.
                status, body = await run_in_threadpool(
                    lambda: handle_webhook(receiver, _read_all(spool), header, request_id, logger, verified=True)
                )
            else:
                data = _read_all(spool)  # in memory: a copy, no I/O
                if intake.store_elsewhere is not None:
                    status, body = await intake.store_elsewhere(data, header, request_id)
                else:
                    status, body = await intake.store(
                        lambda: handle_webhook(receiver, data, header, request_id, logger, verified=True)
                    )
        return _json(status, body)
    finally:
        intake.release()


def _check_declared_size(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"webhook body is larger than the limit of {limit} bytes")


async def _stream_into(request: Request, spool: IO[bytes], verification: signing.Verification, limit: int) -> None:
    """Hash and spool the body as it arrives; refuse it as soon as it passes ``limit`` (chunked bodies)."""
    async for chunk in request.stream():
        if verification.size + len(chunk) > limit:
            raise PayloadTooLarge(f"webhook body is larger than the limit of {limit} bytes")
        verification.update(chunk)
        spool.write(chunk)


def _read_all(spool: IO[bytes]) -> bytes:
    spool.seek(0)
    return spool.read()


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


class WebhookFastPath:
    """In front of the composed app: ``POST /webhooks/elevenlabs`` goes straight to its endpoint.

    The composed app would first match the path against every search, console, memory and privacy
    route and pass it through seven middleware layers, none of which does anything for a webhook;
    skipping them saves about 0.2 ms of the event loop's CPU per webhook (docs/benchmarks.md, #10).
    The edge a webhook needs is kept: ``RequestContextMiddleware`` (request id, log line, the 500
    envelope) around the same endpoint function, so the app's own route (OpenAPI, in-process
    tests) and this path answer alike. Middleware added to the app later does not see webhooks.
    Every other request, and any other method or spelling of the path, goes to ``app``.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.route = _webhook_route()
        self.methods = frozenset(self.route.methods or ())
        self.direct = RequestContextMiddleware(self._endpoint, app.state.logger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == WEBHOOK_PATH and scope["method"] in self.methods:
            scope["app"], scope["route"] = self.app, self.route
            await self.direct(scope, receive, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        response = await receive_elevenlabs_webhook(Request(scope, receive))
        await response(scope, receive, send)


def _webhook_route() -> APIRoute:
    # The route itself (its methods, and its path template for the log line).
    for route in router.routes:
        if isinstance(route, APIRoute) and route.endpoint is receive_elevenlabs_webhook:
            return route
    raise AssertionError("services.ingest.router has no webhook route")

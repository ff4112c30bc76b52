"""The webhook route for the local FastAPI app (the Lambda path uses handler.py instead)."""

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from services.core.domain.errors import PayloadTooLarge
from services.core.domain.signing import HEADER

from .edge import error_body, handle_webhook

router = APIRouter(tags=["webhooks"])

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
    "/webhooks/elevenlabs",
    summary="Receive an ElevenLabs post-call webhook",
    description=(
        "Verifies the signature over the raw body, then archives the transcript, audio or initiation "
        "failure. 200 only once the event is durably stored; 503 asks the sender to retry."
    ),
    openapi_extra=_WEBHOOK_DOC,
    responses={401: {"description": "bad signature"}, 400: {"description": "bad payload"}},
)
async def receive_elevenlabs_webhook(request: Request) -> JSONResponse:
    receiver = request.app.state.receiver
    # The app's middleware gives every request one id (echoed in x-request-id); reuse it in body and logs.
    request_id = str(request.scope.get("state", {}).get("request_id") or uuid.uuid4().hex)
    try:
        raw = await _read_capped(request, receiver.max_body_bytes)
    except PayloadTooLarge as exc:
        return JSONResponse(error_body(exc.code, exc.message, request_id), status_code=413)
    status, body = await run_in_threadpool(
        handle_webhook, receiver, raw, request.headers.get(HEADER), request_id, request.app.state.logger
    )
    return JSONResponse(body, status_code=status)


async def _read_capped(request: Request, limit: int) -> bytes:
    """Refuse oversized bodies before holding them: by Content-Length, then while streaming (chunked)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"webhook body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"webhook body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)

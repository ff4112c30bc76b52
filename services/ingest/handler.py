"""Lambda entry for ``POST /webhooks/elevenlabs`` behind an API Gateway HTTP API (payload 2.0)."""

import base64
import binascii
import time
import uuid
from typing import Any

import orjson

from services.core.config import get_settings
from services.core.domain.errors import InvalidPayload
from services.core.logging import get_logger
from services.core.wiring import build_storage, webhook_secrets
from services.memory.jobs import MemoryJobs, status_sink_for
from services.memory.wiring import build_memory_queue

from .edge import error_body, handle_webhook, not_stored
from .service import WebhookReceiver
from .wiring import build_archiver

logger = get_logger("callvault-ingest")
_receiver: WebhookReceiver | None = None


def _get_receiver() -> WebhookReceiver:
    global _receiver  # built once per cold start: clients, secrets and settings are reused
    if _receiver is None:
        settings = get_settings()
        storage = build_storage(settings)
        # Memory jobs go to SQS (no mem0 import here); the worker Lambda writes the memories.
        queue = build_memory_queue(settings)
        jobs = (
            MemoryJobs(queue, status_sink_for(storage.index), time.time, logger, status_in_row=True) if queue else None
        )
        archiver = build_archiver(settings, storage, jobs)
        if archiver.analytics is None:
            logger.warning("CALLVAULT_ANALYTICS_BUCKET is not set: analytics tables are not written")
        _receiver = WebhookReceiver(archiver, webhook_secrets(settings), settings.max_body_bytes)
    return _receiver


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_id = str(event.get("requestContext", {}).get("requestId") or uuid.uuid4())
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    try:
        raw = _raw_body(event)
    except InvalidPayload as exc:
        return _response(400, error_body(exc.code, exc.message, request_id))
    try:
        receiver = _get_receiver()
    except Exception as exc:  # a cold start that cannot read its secret (SSM) or build its clients
        # 503 so the sender retries; nothing is cached, so the next event tries the cold start again.
        return _response(*not_stored(request_id, len(raw), logger, cause=type(exc).__name__))
    status, body = handle_webhook(receiver, raw, headers.get("elevenlabs-signature"), request_id, logger)
    return _response(status, body)


def _raw_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        # A text body is what the event's JSON escapes say, lone surrogates too: their bytes (CESU-8)
        # then fail the signature or the UTF-8 check like any other body that is not UTF-8.
        return body.encode("utf-8", "surrogatepass") if isinstance(body, str) else b""
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidPayload("request body is not valid base64") from None


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": orjson.dumps(body).decode(),
    }

"""Translation between HTTP and the ingest use case, shared by the Lambda handler and the local app.

No web framework here: the Lambda path must not import FastAPI.
"""

import traceback
from typing import Any

from aws_lambda_powertools import Logger

from services.core.domain import phone
from services.core.domain.errors import (
    CallVaultError,
    InvalidSignature,
    SignatureMismatch,
    StorageUnavailable,
    http_status,
)
from services.core.http import BUSY_CODE, JsonBody, error_body

from .service import WebhookReceiver

__all__ = ["BUSY_CODE", "JsonBody", "busy", "error_body", "handle_webhook", "not_stored", "refuse"]


def handle_webhook(
    receiver: WebhookReceiver,
    raw: bytes,
    signature: str | None,
    request_id: str,
    logger: Logger,
    *,
    verified: bool = False,
) -> tuple[int, JsonBody]:
    """Run the use case and map its result or error to ``(status, body)``; log one line either way.

    ``verified``: the edge already checked the signature over these bytes while they streamed.
    """
    fields: dict[str, Any] = {"request_id": request_id, "body_bytes": len(raw)}
    try:
        result = receiver.receive_verified(raw) if verified else receiver.receive(raw, signature)
    except StorageUnavailable as exc:
        # The cause's message may hold a path or key (which hold phone numbers): log its type only.
        return not_stored(request_id, len(raw), logger, cause=_cause_name(exc))
    except CallVaultError as exc:
        return refuse(exc, request_id, len(raw), logger)
    except Exception as exc:
        logger.error(
            "webhook failed",
            extra={**fields, "status": 500, "error_type": type(exc).__name__, "trace": _frames(exc)},
        )
        return 500, error_body("internal", "internal error; the event was not stored", request_id)
    logger.info(
        "webhook " + result.outcome,
        extra={
            **fields,
            "status": 200,
            "event_type": result.event_type,
            "conversation_id": result.conversation_id,
            "phone": phone.mask(result.phone),
            "metric": "ignored_event" if result.outcome == "ignored" else None,
            "unchanged": True if result.unchanged else None,  # a redelivery: the archive had this version
        },
    )
    return 200, {**result.body(), "request_id": request_id}


def not_stored(request_id: str, body_bytes: int | None, logger: Logger, *, cause: str | None) -> tuple[int, JsonBody]:
    """503 for an event that could not be stored (storage, or the receiver's own start: the webhook
    secret from SSM): nothing was acknowledged and the sender retries. ``cause`` is a type name, never
    a message (messages can hold keys, paths or parameter names)."""
    logger.error(
        "webhook not stored", extra={"request_id": request_id, "body_bytes": body_bytes, "status": 503, "cause": cause}
    )
    message = "storage is unavailable; the event was not stored, retry"
    return 503, error_body(StorageUnavailable.code, message, request_id)


# What to check when a signature does not match. Sent to an unauthenticated caller: names settings and
# files, never a secret or this machine's paths.
SIGNATURE_HINT = (
    "sign with this server's webhook secret (CALLVAULT_WEBHOOK_SECRET, else the webhook-secret file in the "
    "data dir `callvault serve` runs with: `callvault sign --data-dir DIR FILE` uses it; on AWS the SSM "
    "parameter) over the exact bytes sent: curl --data-binary @FILE, not -d (which drops newlines)"
)
FORM_BODY_HINT = (
    "the body arrived as a form (curl -d), and curl -d drops a file's newlines: "
    "send it unchanged with curl --data-binary @FILE -H 'content-type: application/json'"
)


def refuse(
    exc: CallVaultError,
    request_id: str,
    body_bytes: int | None,
    logger: Logger,
    *,
    content_type: str | None = None,
) -> tuple[int, JsonBody]:
    """A refused webhook (bad signature, size or payload): its status and envelope, logged as one line.

    ``body_bytes`` is None when the edge refused before reading the body. A signature that does not
    match gets a hint on what to check (``content_type`` tells a ``curl -d`` form body apart).
    """
    status = http_status(exc)
    level = logger.warning if isinstance(exc, InvalidSignature) else logger.info
    level(
        "webhook refused",
        extra={"request_id": request_id, "body_bytes": body_bytes, "status": status, "error_code": exc.code},
    )
    message = exc.message
    if isinstance(exc, SignatureMismatch):
        form = (content_type or "").split(";")[0].strip().lower() == "application/x-www-form-urlencoded"
        message = f"{message}: {FORM_BODY_HINT if form else SIGNATURE_HINT}"
    return status, error_body(exc.code, message, request_id)


def busy(request_id: str, retry_after_secs: int, limit: int, logger: Logger) -> tuple[int, JsonBody]:
    """503 for a webhook that arrived while ``limit`` bodies were already in flight; the sender retries."""
    logger.warning(
        "webhook refused: too many bodies in flight",
        extra={"request_id": request_id, "status": 503, "error_code": BUSY_CODE, "limit": limit},
    )
    message = f"too many webhook bodies in flight; nothing was stored, retry after {retry_after_secs} s"
    return 503, error_body(BUSY_CODE, message, request_id)


def _cause_name(exc: BaseException) -> str | None:
    return type(exc.__cause__).__name__ if exc.__cause__ else None


def _frames(exc: BaseException) -> list[str]:
    # Where it failed, without the exception's message (which may quote payload data).
    return [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_tb(exc.__traceback__)]

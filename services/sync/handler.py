"""Lambda entries of sync (docs/sync.md): the delayed audio fetch (SQS) and the scheduled sync (EventBridge).

``audio_fetch_handler``: each message (``{"conversation_id": ...}``, sent by the ingest function after
the grace period) streams the call's audio from the ElevenLabs API into the archive unless audio is in
place. Partial batch failure: a message whose fetch failed is reported in ``batchItemFailures`` and
comes back after the queue's visibility timeout, until the redrive policy moves it to the dead-letter
queue (alarmed). "gone" (404 upstream) is logged and the message deleted: retrying cannot help.

``sync_handler``: ``Syncer.run()`` from the watermark (an item in the calls table), then a merge of the
closed analytics days it wrote to (``ScheduledSync``, as ``callvault sync`` does). Calls that failed
are not an invocation error: the watermark stays before them, so the next run retries exactly those,
and a raised error would only make Lambda re-run the whole sync at once. They are logged in the
"sync done" line, whose ``failed`` count the template turns into a metric with an alarm. A wrong or
missing API key (``UpstreamRejected``) and an unreachable index do raise: the Errors alarm fires.
Two runs at once (a manual invoke beside the schedule) are safe: the write protocol archives each
call once whatever the interleaving; the function's reserved concurrency of 1 just avoids the waste.
"""

import time
from functools import cache
from typing import TYPE_CHECKING, Any

import orjson
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from services.core.config import get_settings
from services.core.domain.errors import InvalidPayload
from services.core.logging import get_logger

if TYPE_CHECKING:
    from .audio import AudioFetcher
    from .wiring import ScheduledSync

logger = get_logger("callvault-sync")
_FAILED_IDS_LOGGED = 50  # a bounded log line however many calls failed


@cache
def _fetcher() -> "AudioFetcher":
    from .wiring import build_audio_fetcher  # built once per cold start: clients and the key are reused

    return build_audio_fetcher(get_settings())


@cache
def _syncer() -> "ScheduledSync":
    from .wiring import build_scheduled_sync

    return build_scheduled_sync(get_settings())


def audio_fetch_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    processor = BatchProcessor(event_type=EventType.SQS)
    # A batch whose every fetch failed answers with every id too, rather than raising: the Errors
    # alarm stays about code errors, and messages that keep failing reach the alarmed DLQ.
    processor.raise_on_entire_batch_failure = False
    return dict(process_partial_response(event, _fetch_record, processor, context))


def _fetch_record(record: SQSRecord) -> str:
    conversation_id = conversation_id_of(record.body)  # a malformed body fails until the DLQ takes it
    attempt = int(record.attributes.approximate_receive_count or 1)
    try:
        outcome = _fetcher().fetch(conversation_id)
    except Exception as exc:
        code = getattr(exc, "code", None) or type(exc).__name__
        message = getattr(exc, "message", None)  # CallVaultErrors name no key, URL or phone number
        logger.warning(
            "audio fetch failed",
            extra={"conversation_id": conversation_id, "attempt": attempt, "error_code": code, "reason": message},
        )
        raise
    if outcome == "gone":
        logger.warning("audio fetch: not found upstream, dropped", extra={"conversation_id": conversation_id})
    else:
        logger.info("audio fetch done", extra={"conversation_id": conversation_id, "outcome": outcome})
    return outcome


def conversation_id_of(body: str) -> str:
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidPayload("the audio fetch message is not JSON") from None
    conversation_id = message.get("conversation_id") if isinstance(message, dict) else None
    if not isinstance(conversation_id, str) or not conversation_id:
        raise InvalidPayload("the audio fetch message has no conversation_id")
    return conversation_id


def sync_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = time.monotonic()
    summary = _syncer().run()
    result = summary.to_dict()
    # Counts and conversation ids only (never a phone number); "failed" feeds the SyncFailures metric.
    logger.info(
        "sync done",
        extra={
            "after": summary.after,
            "listed": summary.listed,
            "new": result["new"],
            "updated": result["updated"],
            "audio_fetched": summary.audio_fetched,
            "still_processing": result["still_processing"],
            "gone_upstream": len(summary.gone),
            "audio_gone_upstream": len(summary.audio_gone),
            "failed": summary.failed,
            "watermark": summary.watermark,
            "duration_ms": round((time.monotonic() - started) * 1000),
        },
    )
    if summary.failed:
        logger.warning(
            "sync left calls for the next run",
            extra={"failed": summary.failures_to_log(_FAILED_IDS_LOGGED)},
        )
    return result

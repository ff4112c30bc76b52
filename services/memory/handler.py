"""Lambda entry for the memory worker: batches from the SQS FIFO queue of memory jobs.

Partial batch failure: a job that fails is reported in ``batchItemFailures`` and only it (and the
later messages of its own conversation, which FIFO must keep in order) comes back; the other
conversations of the batch are done. A failed job's visibility is set to an exponential backoff
(``ChangeMessageVisibility``), so a Mem0 outage is retried after 5 s, 10 s, 20 s... rather than at
the queue's fixed timeout. After ``memory_max_attempts`` receives the queue's redrive policy moves
it to the dead-letter queue (alarmed); its row says ``memory_status = failed``.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from services.core.config import get_settings
from services.core.logging import get_logger

from .domain import STATUS_FAILED, MemoryJob
from .jobs import ERASED, JobOutcome, error_code
from .ports import MemoryStatusSink
from .worker import backoff_secs

logger = get_logger("callvault-memory")
_MAX_VISIBILITY_SECS = 43_200  # SQS's limit (12 h)


@dataclass
class SqsWorker:
    process: Callable[[MemoryJob], JobOutcome]
    status: MemoryStatusSink
    sqs: Any
    max_attempts: int = 8
    retry_base_secs: float = 5.0
    retry_max_secs: float = 3600.0
    clock: Callable[[], float] = time.time

    def handle_batch(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        processor = SqsFifoPartialProcessor(skip_group_on_error=True)
        # An all-failed batch answers with every id too, rather than raising: the visibility
        # backoffs set below then hold, and Lambda's error metric stays about code errors.
        processor.raise_on_entire_batch_failure = False
        response = process_partial_response(event, self.handle_record, processor, context)
        return dict(response)

    def handle_record(self, record: SQSRecord) -> None:
        job = MemoryJob.from_json(record.body)  # a malformed body fails until the DLQ takes it
        receives = int(record.attributes.approximate_receive_count or 1)
        try:
            outcome = self.process(job)
        except Exception as exc:
            last = receives >= self.max_attempts
            delay = backoff_secs(receives, self.retry_base_secs, self.retry_max_secs)
            if last:
                self.status.set_memory_status(job.conversation_id, STATUS_FAILED, int(self.clock()))
            else:
                self._delay(record, delay)
            logger.warning(
                "memory job failed",
                extra={
                    "conversation_id": job.conversation_id,
                    "attempt": receives,
                    "gives_up": last,
                    "retry_in_s": None if last else round(delay),
                    "error_code": error_code(exc),
                },
            )
            raise
        if outcome == ERASED:  # acknowledged, nothing written; logged without the erased call's id
            logger.info("memory job of an erased conversation dropped")
            return
        self.status.set_memory_status(job.conversation_id, outcome, int(self.clock()))
        logger.info("memory job done", extra={"conversation_id": job.conversation_id, "outcome": outcome})

    def _delay(self, record: SQSRecord, delay: float) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=record.queue_url,
                ReceiptHandle=record.receipt_handle,
                VisibilityTimeout=min(int(delay), _MAX_VISIBILITY_SECS),
            )
        except Exception as exc:  # the queue's own visibility timeout still brings it back
            logger.warning("memory job backoff not set", extra={"error_code": error_code(exc)})


_worker: SqsWorker | None = None


def _get_worker() -> SqsWorker:
    global _worker  # built once per cold start: clients, secrets and the Mem0 client are reused
    if _worker is None:
        import boto3

        from services.core.wiring import build_erased, build_storage

        from .jobs import JobProcessor, status_sink_for
        from .wiring import build_memory_store, memory_infer

        settings = get_settings()
        storage = build_storage(settings)
        store = build_memory_store(settings)
        _worker = SqsWorker(
            process=JobProcessor(
                storage.blobs,
                storage.index,
                store,
                settings.default_region,
                memory_infer(settings),
                erased=build_erased(settings),  # queued jobs of erased calls write nothing (#13)
            ),
            status=status_sink_for(storage.index),
            sqs=boto3.client("sqs"),
            max_attempts=settings.memory_max_attempts,
            retry_base_secs=settings.memory_retry_base_secs,
            retry_max_secs=settings.memory_retry_max_secs,
        )
    return _worker


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _get_worker().handle_batch(event, context)

"""Lambda entry for the memory worker: batches from the SQS FIFO queue of memory jobs.

Partial batch failure: a job that fails is reported in ``batchItemFailures`` and only it (and the
later messages of its own conversation, which FIFO must keep in order) comes back; the other
conversations of the batch are done. A failed job's visibility is set to an exponential backoff
(``ChangeMessageVisibility``), so a Mem0 outage is retried after 5 s, 10 s, 20 s... rather than at
the queue's fixed timeout. After ``memory_max_attempts`` receives the queue's redrive policy moves
it to the dead-letter queue (alarmed); its row says ``memory_status = failed``.

Time: a batch must end before the function's timeout, or Lambda sends no partial response, the
finished jobs come back and every job of the batch spends a delivery. Before each job after the
first, the worker checks the time left (``context.get_remaining_time_in_millis()``); below
``reserve_secs`` (the worst case of one job) it starts nothing more, and that job and the rest go
back as batch item failures, unstarted, to return after the queue's visibility timeout. The first job
always runs: handing it back too would only spend its delivery. A job handed back on its last
allowed delivery is marked failed, as a failed one is, since the dead-letter queue takes it next.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from services.core.config import get_settings
from services.core.logging import get_logger

from .domain import STATUS_FAILED, MemoryJob
from .jobs import ERASED, EXPIRED, JobOutcome, error_code
from .ports import MemoryStatusSink
from .worker import backoff_secs

logger = get_logger("callvault-memory")
_MAX_VISIBILITY_SECS = 43_200  # SQS's limit (12 h)
# The worst case of one Mem0 Platform request that times out on every attempt (10 s, retried
# 3 times, with backoff between) is about 45 s; S3, DynamoDB and the status write are milliseconds.
# A job makes several requests, so a slow Mem0 can still outlast the timeout: see handle_record.
JOB_RESERVE_SECS = 45.0


class NoTimeLeft(Exception):
    """The invocation has too little time left to start another job: it goes back to the queue."""


@dataclass
class SqsWorker:
    process: Callable[[MemoryJob], JobOutcome]
    status: MemoryStatusSink
    sqs: Any
    max_attempts: int = 8
    retry_base_secs: float = 5.0
    retry_max_secs: float = 3600.0
    clock: Callable[[], float] = time.time
    reserve_secs: float = JOB_RESERVE_SECS  # start no job after the first with less time than this left

    def handle_batch(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        processor = SqsFifoPartialProcessor(skip_group_on_error=True)
        # An all-failed batch answers with every id too, rather than raising: the visibility
        # backoffs set below then hold, and Lambda's error metric stays about code errors.
        processor.raise_on_entire_batch_failure = False
        started = 0
        handed_back = 0

        def within_time(record: SQSRecord) -> None:
            nonlocal started, handed_back
            if started and (handed_back or self._too_late(context)):
                handed_back += 1
                self._hand_back(record)
            started += 1
            self.handle_record(record)

        response = process_partial_response(event, within_time, processor, context)
        if handed_back:
            # Jobs of a conversation after a handed-back one go back too (FIFO), unasked: not counted.
            logger.info(
                "memory jobs handed back: too little time left",
                extra={"handed_back": handed_back, "remaining_ms": _remaining_ms(context)},
            )
        return dict(response)

    def _too_late(self, context: Any) -> bool:
        remaining = _remaining_ms(context)
        return remaining is not None and remaining < self.reserve_secs * 1000

    def _hand_back(self, record: SQSRecord) -> NoReturn:
        """Report ``record`` failed without starting it; on its last allowed delivery, mark the call
        failed first (the dead-letter queue takes the message next, as after a failed job)."""
        receives = int(record.attributes.approximate_receive_count or 1)
        if receives >= self.max_attempts:
            job = MemoryJob.from_json(record.body)
            self.status.set_memory_status(job.conversation_id, STATUS_FAILED, int(self.clock()))
            logger.warning(
                "memory job failed",
                extra={
                    "conversation_id": job.conversation_id,
                    "attempt": receives,
                    "gives_up": True,
                    "error_code": "no_time_left",
                },
            )
        raise NoTimeLeft("too little time left in this invocation to start the job")

    def handle_record(self, record: SQSRecord) -> None:
        job = MemoryJob.from_json(record.body)  # a malformed body fails until the DLQ takes it
        receives = int(record.attributes.approximate_receive_count or 1)
        last = receives >= self.max_attempts
        if last:
            # Marked before it runs: a job the function's timeout kills (Mem0 slow on every request)
            # says nothing, and its message then goes to the dead-letter queue with the row still
            # "pending". Success below overwrites the mark.
            self.status.set_memory_status(job.conversation_id, STATUS_FAILED, int(self.clock()))
        try:
            outcome = self.process(job)
        except Exception as exc:
            delay = backoff_secs(receives, self.retry_base_secs, self.retry_max_secs)
            if not last:
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
        if outcome == EXPIRED:  # acknowledged, nothing written; the row keeps saying expired
            logger.info(
                "memory job of an expired call's memories dropped", extra={"conversation_id": job.conversation_id}
            )
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


def _remaining_ms(context: Any) -> int | None:
    """The invocation's time left, or None without a Lambda context (a direct call: no limit)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return int(remaining()) if callable(remaining) else None


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

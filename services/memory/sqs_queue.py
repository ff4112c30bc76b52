"""``MemoryJobQueue`` on SQS (AWS). The queue is FIFO with ``MessageGroupId = conversation_id``.

FIFO because the worker's delete-then-add is effect-once only while two runs of one conversation
never overlap: a FIFO group hands out its next message only after the previous one is deleted.
Different conversations still run in parallel. ``MessageDeduplicationId`` is derived from the
conversation and its event timestamp, so SQS drops a retried send of the same delivery within
its 5-minute window (a later delivery, with a newer timestamp, is a new message).

The message holds ids only (no phone number, no transcript text): not the transcript's key either,
which starts with the caller's number (``16125550142/conv_....json``) and which the worker reads from
the call's row anyway. An erasure cannot take a message out of the queue or its dead-letter queue.
Timeouts and retries are short: this runs before the webhook's 200, and a slow SQS must not hold the
archive's answer for long (a send that fails is recorded as ``memory_status = failed`` and the call stays archived).
"""

import hashlib
from typing import Any

from .domain import MemoryJob


class SqsMemoryQueue:
    def __init__(self, queue_url: str, *, client: Any = None) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"})
            client = boto3.client("sqs", config=config)
        self.queue_url = queue_url
        self._sqs = client

    def enqueue(self, job: MemoryJob) -> None:
        body = MemoryJob(job.conversation_id, None, job.event_at).to_json()  # no key: it names the caller
        self._sqs.send_message(
            QueueUrl=self.queue_url,
            MessageBody=body,
            MessageGroupId=job.conversation_id,
            MessageDeduplicationId=hashlib.sha256(body.encode()).hexdigest(),
        )

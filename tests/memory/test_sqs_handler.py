"""The memory worker Lambda with realistic SQS events under moto: ingest (S3 + DynamoDB) sends jobs to
a FIFO queue, the test receives them as Lambda's event source would and hands them to the handler.
Partial batch failure, FIFO group ordering, backoff by visibility, and the entry point end to end."""

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from services.core.adapters.dynamo_call_index import DynamoCallIndex
from services.core.adapters.dynamo_tombstones import DynamoTombstones
from services.core.adapters.s3_blob_store import S3BlobStore
from services.core.config import get_settings
from services.core.domain import payload
from services.core.domain.models import MEMORY_EXPIRED
from services.core.erased import ErasedConversations
from services.ingest.service import Archiver
from services.memory import handler as memory_handler
from services.memory.domain import MemoryItem, MemoryJob
from services.memory.erasure import MemoryErasure
from services.memory.errors import MemoryUnavailable
from services.memory.handler import SqsWorker
from services.memory.jobs import JobProcessor, MemoryJobs
from services.memory.sqs_queue import SqsMemoryQueue
from services.privacy.service import Eraser
from tests.memory.fake_mem0_platform import API_KEY, fake_mem0_platform
from tests.memory.support import (
    CALLER,
    OTHER_CALLER,
    FakeMemoryStore,
    RecordingStatusSink,
    call_envelope,
    envelope_bytes,
)

BUCKET, TABLE, REGION = "callvault-archive-test", "callvault-calls-test", "us-east-1"
TURNS = [("agent", "Hello"), ("user", "I prefer calls after 5 pm")]


@dataclass
class Aws:
    sqs: Any
    queue_url: str
    queue_arn: str
    dlq_url: str
    blobs: S3BlobStore
    index: DynamoCallIndex
    archiver: Archiver

    def ingest(self, conversation_id: str, phone: str | None = CALLER, event_at: int = 1751802025) -> None:
        event = payload.parse_envelope(envelope_bytes(call_envelope(conversation_id, phone, TURNS, event_at=event_at)))
        assert self.archiver.archive(event).outcome == "stored"

    def receive(self, max_messages: int = 10) -> dict[str, Any]:
        """A Lambda SQS event built from ReceiveMessage, field for field as the event source maps them."""
        found = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max_messages,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        return {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m["Attributes"],
                    "messageAttributes": m.get("MessageAttributes", {}),
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": REGION,
                }
                for m in found
            ]
        }

    def delete_succeeded(self, event: dict[str, Any], response: dict[str, Any]) -> None:
        """What the event source mapping does with ReportBatchItemFailures: delete all but the failures."""
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for record in event["Records"]:
            if record["messageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"])


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Aws]:
    for name in list(os.environ):
        if name.startswith(("AWS_ENDPOINT_URL", "CALLVAULT_")) or name in {"AWS_PROFILE", "AWS_DEFAULT_PROFILE"}:
            monkeypatch.delenv(name)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        index = DynamoCallIndex(TABLE)
        index.create_table()
        sqs = boto3.client("sqs")
        dlq_url = sqs.create_queue(QueueName="callvault-memory-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_url = sqs.create_queue(
            QueueName="callvault-memory.fifo",
            Attributes={
                "FifoQueue": "true",
                "VisibilityTimeout": "120",
                "RedrivePolicy": f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": "3"}}',
            },
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        blobs = S3BlobStore(BUCKET)
        jobs = MemoryJobs(SqsMemoryQueue(queue_url, client=sqs), RecordingStatusSink(), time.time)
        archiver = Archiver(blobs, index, time.time, memory_jobs=jobs)
        yield Aws(sqs, queue_url, arn, dlq_url, blobs, index, archiver)


class FlakyStore(FakeMemoryStore):
    """Fails every write of the listed conversations."""

    def __init__(self, failing: set[str]) -> None:
        super().__init__()
        self.failing = failing

    def add_conversation(self, phone: str, conversation_id: str, items: Any) -> int:
        if conversation_id in self.failing:
            raise MemoryUnavailable("Mem0 Platform failed to add (HTTP 503)")
        return super().add_conversation(phone, conversation_id, items)


def _worker(aws: Aws, store: FakeMemoryStore, status: RecordingStatusSink, **options: Any) -> SqsWorker:
    return SqsWorker(JobProcessor(aws.blobs, aws.index, store), status, aws.sqs, **options)


def test_ingest_sends_a_fifo_job_with_ids_only(aws: Aws) -> None:
    """No number in the message, not even inside the transcript's key (``16125550142/conv_a.json``): an
    erasure cannot take a message out of the queue or the dead-letter queue, where it stays up to 14 days.
    The worker reads the key from the call's row."""
    aws.ingest("conv_a")
    event = aws.receive()
    (record,) = event["Records"]
    assert MemoryJob.from_json(record["body"]) == MemoryJob("conv_a", None, 1751802025)
    assert record["attributes"]["MessageGroupId"] == "conv_a"
    assert CALLER.lstrip("+") not in record["body"] and "prefer" not in record["body"]


def test_a_duplicate_send_of_the_same_delivery_is_deduplicated_by_sqs(aws: Aws) -> None:
    aws.ingest("conv_a")
    aws.ingest("conv_a")  # the same webhook delivered twice within five minutes
    assert len(aws.receive()["Records"]) == 1


def test_partial_batch_failure_reports_only_the_failed_message(aws: Aws) -> None:
    aws.ingest("conv_a", CALLER)
    aws.ingest("conv_b", OTHER_CALLER)
    aws.ingest("conv_c", CALLER)
    event = aws.receive()
    assert len(event["Records"]) == 3
    store, status = FlakyStore({"conv_b"}), RecordingStatusSink()
    response = _worker(aws, store, status, retry_base_secs=60).handle_batch(event)

    ids = {MemoryJob.from_json(r["body"]).conversation_id: r["messageId"] for r in event["Records"]}
    assert response == {"batchItemFailures": [{"itemIdentifier": ids["conv_b"]}]}
    assert store.count(CALLER) == 12 and store.count(OTHER_CALLER) == 0
    assert status.history == [("conv_a", "done"), ("conv_c", "done")]

    aws.delete_succeeded(event, response)
    # The failed job stays in flight (its visibility now set to its backoff, about 60 s)...
    attributes = aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert aws.receive()["Records"] == []  # ...and it is not handed out again before that


def test_after_the_backoff_the_job_comes_back_and_succeeds(aws: Aws) -> None:
    aws.ingest("conv_b", OTHER_CALLER)
    store, status = FlakyStore({"conv_b"}), RecordingStatusSink()
    worker = _worker(aws, store, status, retry_base_secs=1, retry_max_secs=1)
    first = aws.receive()
    aws.delete_succeeded(first, worker.handle_batch(first))
    time.sleep(1.3)
    second = aws.receive()
    (record,) = second["Records"]
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    store.failing.clear()  # Mem0 is back
    response = worker.handle_batch(second)
    assert response == {"batchItemFailures": []}
    aws.delete_succeeded(second, response)
    assert store.count(OTHER_CALLER, "conv_b") == 6 and status.last("conv_b") == "done"


def test_a_failure_holds_back_the_later_messages_of_its_own_conversation_only(aws: Aws) -> None:
    aws.ingest("conv_a", CALLER, event_at=1751802025)
    aws.ingest("conv_a", CALLER, event_at=1751802099)  # a newer delivery: a second message, same group
    aws.ingest("conv_b", OTHER_CALLER)
    event = aws.receive()
    groups = [r["attributes"]["MessageGroupId"] for r in event["Records"]]
    assert sorted(groups) == ["conv_a", "conv_a", "conv_b"]
    store = FlakyStore({"conv_a"})
    response = _worker(aws, store, RecordingStatusSink(), retry_base_secs=60).handle_batch(event)
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    assert failed == {r["messageId"] for r in event["Records"] if r["attributes"]["MessageGroupId"] == "conv_a"}
    assert store.count(OTHER_CALLER) == 6


def test_the_last_allowed_attempt_marks_the_call_failed_and_leaves_the_message_to_the_dlq(aws: Aws) -> None:
    aws.ingest("conv_b", OTHER_CALLER)
    event = aws.receive()
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "3"  # as on its third delivery
    status = RecordingStatusSink()
    response = _worker(aws, FlakyStore({"conv_b"}), status, max_attempts=3).handle_batch(event)
    assert len(response["batchItemFailures"]) == 1
    assert status.history == [("conv_b", "failed")]


def test_on_its_last_delivery_the_call_is_marked_failed_before_the_job_runs_so_a_timeout_leaves_it_failed(
    aws: Aws,
) -> None:
    """A Lambda timeout kills the job without an exception: the row must already say failed when the
    message goes to the dead-letter queue. A job that then succeeds overwrites the mark."""

    class KilledByTheTimeout(BaseException):
        pass

    class SlowStore(FakeMemoryStore):
        def add_conversation(self, phone: str, conversation_id: str, items: Any) -> int:
            assert status.last(conversation_id) == "failed"  # already, while the job runs
            raise KilledByTheTimeout

    aws.ingest("conv_b", OTHER_CALLER)
    event = aws.receive()
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "3"  # its last allowed delivery
    status = RecordingStatusSink()
    with pytest.raises(KilledByTheTimeout):
        _worker(aws, SlowStore(), status, max_attempts=3).handle_batch(event)
    assert status.history == [("conv_b", "failed")]

    status = RecordingStatusSink()
    response = _worker(aws, FakeMemoryStore(), status, max_attempts=3).handle_batch(event)
    assert response == {"batchItemFailures": []} and status.history == [("conv_b", "failed"), ("conv_b", "done")]


@dataclass
class ClockedContext:
    """A Lambda context whose remaining time is whatever ``remaining_ms`` says at the moment it is asked."""

    remaining_ms: Any
    function_name: str = "callvault-memory-worker"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:callvault-memory-worker"
    aws_request_id: str = "7c1e0b5a-5b6c-4c1e-9a1e-3f2d8f0e7a13"

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining_ms())


def test_jobs_the_time_left_cannot_cover_are_handed_back_unstarted(aws: Aws) -> None:
    """A batch must never run into the function's timeout: then no partial response is sent, finished
    jobs come back, and every redelivery counts toward the dead-letter queue."""
    for conversation, phone in (("conv_a", CALLER), ("conv_b", OTHER_CALLER), ("conv_c", CALLER)):
        aws.ingest(conversation, phone)
    event = aws.receive()
    ids = {MemoryJob.from_json(r["body"]).conversation_id: r["messageId"] for r in event["Records"]}
    first, *rest = [MemoryJob.from_json(r["body"]).conversation_id for r in event["Records"]]
    store, status = FakeMemoryStore(), RecordingStatusSink()
    # 50 s left before any job; once one is done, 10 s: less than the worst case of a job.
    context = ClockedContext(lambda: 50_000 if store.adds == 0 else 10_000)

    response = _worker(aws, store, status).handle_batch(event, context)

    assert response == {"batchItemFailures": [{"itemIdentifier": ids[c]} for c in rest]}
    assert store.adds == 1 and status.history == [(first, "done")]  # the others were not started, nor failed
    aws.delete_succeeded(event, response)
    attributes = aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "2"  # back after the visibility timeout


def test_a_job_handed_back_on_its_last_delivery_is_marked_failed_for_the_dead_letter_queue(aws: Aws) -> None:
    aws.ingest("conv_a", CALLER)
    aws.ingest("conv_b", OTHER_CALLER)
    event = aws.receive()
    for record in event["Records"]:
        record["attributes"]["ApproximateReceiveCount"] = "3"  # as on their third delivery
    first, second = [MemoryJob.from_json(r["body"]).conversation_id for r in event["Records"]]
    store, status = FakeMemoryStore(), RecordingStatusSink()

    response = _worker(aws, store, status, max_attempts=3).handle_batch(event, ClockedContext(lambda: 5_000))

    assert len(response["batchItemFailures"]) == 1 and store.adds == 1
    assert status.history == [(first, "failed"), (first, "done"), (second, "failed")]  # marked, then done


def test_the_first_job_of_a_batch_starts_whatever_the_time_left(aws: Aws) -> None:
    """Handing back every job of a batch would only spend their attempts: the first one always runs."""
    aws.ingest("conv_a", CALLER)
    aws.ingest("conv_b", OTHER_CALLER)
    event = aws.receive()
    store, status = FakeMemoryStore(), RecordingStatusSink()

    response = _worker(aws, store, status).handle_batch(event, ClockedContext(lambda: 5_000))

    assert len(response["batchItemFailures"]) == 1 and store.adds == 1 and len(status.history) == 1


def test_a_malformed_body_is_reported_failed_so_it_ends_in_the_dlq(aws: Aws) -> None:
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody="{oops", MessageGroupId="x", MessageDeduplicationId="x")
    aws.ingest("conv_a")
    event = aws.receive()
    response = _worker(aws, FakeMemoryStore(), RecordingStatusSink()).handle_batch(event)
    bad = next(r["messageId"] for r in event["Records"] if r["body"] == "{oops")
    assert response == {"batchItemFailures": [{"itemIdentifier": bad}]}


def test_lambda_handler_end_to_end_with_the_platform_store(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real entry point, configured only by environment, writing to a stand-in Mem0 Platform."""
    aws.ingest("conv_a", CALLER)
    with fake_mem0_platform() as (url, state):
        for name, value in {
            "CALLVAULT_BACKEND": "aws",
            "CALLVAULT_BUCKET": BUCKET,
            "CALLVAULT_TABLE": TABLE,
            "CALLVAULT_MEMORY_BACKEND": "platform",
            "CALLVAULT_MEM0_API_KEY": API_KEY,
            "CALLVAULT_MEM0_HOST": url,
            "CALLVAULT_MEMORY_QUEUE_URL": aws.queue_url,
        }.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        monkeypatch.setattr(memory_handler, "_worker", None)
        try:
            response = memory_handler.lambda_handler(aws.receive(), None)
        finally:
            get_settings.cache_clear()
        assert response == {"batchItemFailures": []}
        assert {m["user_id"] for m in state.memories} == {CALLER}
        assert len(state.memories) == 6  # 5 facts + the caller's turn


def test_lambda_handler_with_inference_on_the_platform_stores_the_extractions_once(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CALLVAULT_MEMORY_INFER=true: the worker Lambda hands the transcript to Mem0 with infer=True; a
    redelivered job replaces the conversation's memories instead of adding a second set."""
    with fake_mem0_platform() as (url, state):
        for name, value in {
            "CALLVAULT_BACKEND": "aws",
            "CALLVAULT_BUCKET": BUCKET,
            "CALLVAULT_TABLE": TABLE,
            "CALLVAULT_MEMORY_BACKEND": "platform",
            "CALLVAULT_MEMORY_INFER": "true",
            "CALLVAULT_MEM0_API_KEY": API_KEY,
            "CALLVAULT_MEM0_HOST": url,
            "CALLVAULT_MEMORY_QUEUE_URL": aws.queue_url,
        }.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        monkeypatch.setattr(memory_handler, "_worker", None)
        try:
            for event_at in (1751802025, 1751802099):  # a later delivery of the same call: a second job
                aws.ingest("conv_a", CALLER, event_at=event_at)
                event = aws.receive()
                response = memory_handler.lambda_handler(event, None)
                assert response == {"batchItemFailures": []}
                aws.delete_succeeded(event, response)  # as the event source mapping does
        finally:
            get_settings.cache_clear()
        inferred = [m for m in state.memories if m["metadata"].get("source") == "inferred"]
        assert sorted(m["memory"] for m in inferred) == ["Has six children", "Lives in Winona"]
        assert {m["metadata"]["conversation_id"] for m in state.memories} == {"conv_a"}
        assert len(state.memories) == 7  # 5 facts + 2 extractions, once
        infer_adds = [r.body for r in state.calls("POST", "/v3/memories/add/") if r.body["infer"]]
        assert len(infer_adds) == 2 and infer_adds[0]["messages"][1] == {
            "role": "user",
            "content": "I prefer calls after 5 pm",
        }


TOMBSTONE_KEY = "tsk_memory_worker_test_key"


def _erase(aws: Aws, store: FakeMemoryStore, phone: str) -> ErasedConversations:
    """`callvault forget PHONE` on the AWS adapters: tombstones, memories, objects (every version), rows.
    The SQS messages already queued for the caller stay in the queue, as on AWS."""
    erased = ErasedConversations(TOMBSTONE_KEY.encode(), DynamoTombstones(TABLE))
    eraser = Eraser(aws.blobs, aws.index, [MemoryErasure(store)], erased=erased)
    eraser.erase(eraser.plan_caller(phone), actor="test")
    return erased


def test_a_queued_job_of_an_erased_conversation_is_acknowledged_and_writes_nothing(aws: Aws) -> None:
    aws.ingest("conv_a", CALLER)
    aws.ingest("conv_b", OTHER_CALLER)
    store, status = FakeMemoryStore(), RecordingStatusSink()
    erased = _erase(aws, store, CALLER)  # conv_a's job is in the queue already
    event = aws.receive()
    assert len(event["Records"]) == 2

    worker = SqsWorker(JobProcessor(aws.blobs, aws.index, store, erased=erased), status, aws.sqs)
    response = worker.handle_batch(event)

    assert response == {"batchItemFailures": []}  # acknowledged: no retries, no dead-letter queue
    assert store.count(CALLER) == 0 and store.count(OTHER_CALLER) == 6
    assert status.history == [("conv_b", "done")]  # nothing recorded for the erased call
    assert aws.index.get("conv_a") is None  # no row made again by a status write


def test_without_the_tombstone_check_the_same_job_fails_until_the_dead_letter_queue(aws: Aws) -> None:
    """What the check above changes: the erased call's transcript is gone, so the job kept failing."""
    aws.ingest("conv_a", CALLER)
    store = FakeMemoryStore()
    _erase(aws, store, CALLER)
    event = aws.receive()
    response = SqsWorker(JobProcessor(aws.blobs, aws.index, store), RecordingStatusSink(), aws.sqs).handle_batch(event)
    assert len(response["batchItemFailures"]) == 1


def test_a_job_reading_while_its_conversation_is_erased_writes_nothing(aws: Aws) -> None:
    """The tombstone lands after the job's first check (while it reads the transcript): the second
    check, just before the write, still drops it."""
    aws.ingest("conv_a", CALLER)
    erased = ErasedConversations(TOMBSTONE_KEY.encode(), DynamoTombstones(TABLE))

    class ErasedWhileRead(S3BlobStore):
        def get_bytes(self, key: str) -> bytes:
            data = super().get_bytes(key)
            erased.mark(["conv_a"], int(time.time()))
            return data

    store, status = FakeMemoryStore(), RecordingStatusSink()
    processor = JobProcessor(ErasedWhileRead(BUCKET), aws.index, store, erased=erased)
    response = SqsWorker(processor, status, aws.sqs).handle_batch(aws.receive())
    assert response == {"batchItemFailures": []}
    assert store.count(CALLER) == 0 and store.adds == 0 and status.history == []


def test_lambda_handler_with_a_tombstone_key_drops_a_queued_job_of_an_erased_call(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry point, configured by environment as the template does with TombstoneKeyParameterName."""
    aws.ingest("conv_a", CALLER)
    aws.ingest("conv_b", OTHER_CALLER)
    _erase(aws, FakeMemoryStore(), CALLER)
    with fake_mem0_platform() as (url, state):
        for name, value in {
            "CALLVAULT_BACKEND": "aws",
            "CALLVAULT_BUCKET": BUCKET,
            "CALLVAULT_TABLE": TABLE,
            "CALLVAULT_MEMORY_BACKEND": "platform",
            "CALLVAULT_MEM0_API_KEY": API_KEY,
            "CALLVAULT_MEM0_HOST": url,
            "CALLVAULT_MEMORY_QUEUE_URL": aws.queue_url,
            "CALLVAULT_TOMBSTONE_KEY": TOMBSTONE_KEY,
        }.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        monkeypatch.setattr(memory_handler, "_worker", None)
        try:
            response = memory_handler.lambda_handler(aws.receive(), None)
        finally:
            get_settings.cache_clear()
        assert response == {"batchItemFailures": []}
        assert {m["user_id"] for m in state.memories} == {OTHER_CALLER}


def test_a_job_whose_conversation_is_erased_between_its_last_check_and_its_write_leaves_no_memory(aws: Aws) -> None:
    """The whole erasure (tombstone, then the caller's memories) runs after the job's check just before
    the write: the memories it then writes would outlive the erasure (verify does not look at memories),
    so the job asks once more after writing and takes them out again."""
    aws.ingest("conv_a", CALLER)
    erased = ErasedConversations(TOMBSTONE_KEY.encode(), DynamoTombstones(TABLE))

    class ErasedBeforeTheWrite(FakeMemoryStore):
        raced = False

        def add_conversation(self, phone: str, conversation_id: str, items: Sequence[MemoryItem]) -> int:
            if not self.raced:
                self.raced = True
                eraser = Eraser(aws.blobs, aws.index, [MemoryErasure(self)], erased=erased)
                eraser.erase(eraser.plan_caller(CALLER), actor="test")
            return super().add_conversation(phone, conversation_id, items)

    store, status = ErasedBeforeTheWrite(), RecordingStatusSink()
    response = SqsWorker(JobProcessor(aws.blobs, aws.index, store, erased=erased), status, aws.sqs).handle_batch(
        aws.receive()
    )

    assert response == {"batchItemFailures": []}
    assert store.raced and store.count(CALLER) == 0 and status.history == []
    assert aws.index.get("conv_a") is None


@pytest.mark.parametrize("receives", ["1", "3"])
def test_a_queued_job_of_a_call_whose_memories_expired_writes_nothing_and_the_row_stays_expired(
    aws: Aws, receives: str
) -> None:
    """A retention rule (``memories_days``) removed the call's memories while its job waited in the queue
    (or sat in the dead-letter queue until a re-drive). The job must not write them back, and the row must
    keep saying ``expired`` (the next retention run skips such a row): not ``done``, nor the ``failed`` a
    last delivery marks before it runs."""
    aws.ingest("conv_a", CALLER)
    store = FakeMemoryStore()
    row = aws.index.get("conv_a")
    assert row is not None
    MemoryErasure(store).erase(None, [row])  # what retention's memories_days does
    aws.index.set_memory_status("conv_a", MEMORY_EXPIRED, int(time.time()))
    event = aws.receive()
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = receives

    worker = SqsWorker(JobProcessor(aws.blobs, aws.index, store), aws.index, aws.sqs, max_attempts=3)
    response = worker.handle_batch(event)

    assert response == {"batchItemFailures": []}  # acknowledged, never retried into the dead-letter queue
    assert store.count(CALLER) == 0 and store.adds == 1  # only the erasure's
    after = aws.index.get("conv_a")
    assert after is not None and after.memory_status == MEMORY_EXPIRED

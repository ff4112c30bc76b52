"""Ingest with memory on: the webhook only records a job. Mem0 down, or even the job queue broken,
never costs the archive anything: 200, transcript stored, row saved, status says what happened."""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
from services.core.config import Settings
from services.core.domain import payload
from services.core.wiring import build_storage
from services.ingest.service import Archiver
from services.local.app import create_local_app
from services.memory.domain import MemoryJob
from services.memory.jobs import MemoryJobs
from services.memory.local import LocalMemory, build_local_memory
from tests.memory.support import CALLER, FakeMemoryStore, RecordingStatusSink, call_envelope, envelope_bytes
from tests.support import AUDIO, INITIATION_FAILURE, SECRET, fixture_bytes, signed_headers

URL = "/webhooks/elevenlabs"
TURNS = [("agent", "Hello"), ("user", "I need a ride to the clinic on Friday")]


@dataclass
class Served:
    client: TestClient
    memory: LocalMemory
    store: FakeMemoryStore
    status: RecordingStatusSink
    data_dir: Path


def _serve(data_dir: Path, retry_base_secs: float) -> Iterator[Served]:
    """The real local app with memory composed the way docs/memory.md tells the lead to wire it."""
    settings = Settings(
        data_dir=data_dir,
        memory_backend="oss",
        memory_worker_poll_secs=0.05,
        memory_retry_base_secs=retry_base_secs,
        memory_retry_max_secs=retry_base_secs,
    )
    storage = build_storage(settings)
    store = FakeMemoryStore()
    memory = build_local_memory(settings, storage, agent_secrets=["asec_x"], store=store)
    assert memory is not None
    status = RecordingStatusSink()
    memory.worker.status = status  # records the worker's transitions; ingest writes "pending" into the row
    app = create_local_app(settings, [SECRET], storage, memory=memory)
    memory.start()
    with TestClient(app) as client:
        yield Served(client, memory, store, status, data_dir)
    memory.stop(5)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    yield from _serve(tmp_path, retry_base_secs=60)


@pytest.fixture
def served_fast_retry(tmp_path: Path) -> Iterator[Served]:
    yield from _serve(tmp_path, retry_base_secs=0.1)


def _post(client: TestClient, body: bytes) -> int:
    return client.post(URL, content=body, headers=signed_headers(body)).status_code


def test_mem0_down_ingest_still_answers_200_and_the_archive_is_complete(served: Served) -> None:
    served.store.down = True
    body = envelope_bytes(call_envelope("conv_down_1", CALLER, TURNS))
    started = time.perf_counter()
    assert _post(served.client, body) == 200
    assert time.perf_counter() - started < 2.0  # no waiting on Mem0
    archived = served.data_dir / "archive" / "16125550142" / "conv_down_1.json"
    assert orjson.loads(archived.read_bytes()) == orjson.loads(body)["data"]
    row = served.memory.context.index.get("conv_down_1")
    assert row is not None and row.phone == CALLER and row.transcript_key == "16125550142/conv_down_1.json"
    deadline = time.monotonic() + 5
    while (job := served.memory.outbox.get("conv_down_1")) is None or job.last_error is None:
        assert time.monotonic() < deadline, "the worker never tried"
        time.sleep(0.02)
    assert job.state == "pending" and job.last_error == "memory_unavailable"  # waiting to retry
    marked = served.memory.context.index.get("conv_down_1")
    assert marked is not None and marked.memory_status == "pending"  # written with the row itself
    assert served.store.rows == {}


def test_when_mem0_comes_back_the_pending_job_completes(served_fast_retry: Served) -> None:
    served = served_fast_retry
    served.store.down = True
    assert _post(served.client, envelope_bytes(call_envelope("conv_down_2", CALLER, TURNS))) == 200
    deadline = time.monotonic() + 10
    while (job := served.memory.outbox.get("conv_down_2")) is None or job.attempts < 2:
        assert time.monotonic() < deadline, "the worker did not retry"
        time.sleep(0.02)
    served.store.down = False
    while served.status.last("conv_down_2") != "done":
        assert time.monotonic() < deadline, "the job did not complete once Mem0 was back"
        time.sleep(0.02)
    assert (
        served.store.count(CALLER, "conv_down_2") == 6
    )  # 5 facts + the caller's one turn (the agent's "Hello" is no memory)


def test_duplicate_deliveries_leave_memory_counts_unchanged(served: Served) -> None:
    body = envelope_bytes(call_envelope("conv_dup_1", CALLER, TURNS))
    for _ in range(4):
        assert _post(served.client, body) == 200
    deadline = time.monotonic() + 5
    while (job := served.memory.outbox.get("conv_dup_1")) is None or job.state != "done":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert served.store.count(CALLER) == 6


class BrokenQueue:
    def enqueue(self, job: MemoryJob) -> None:
        raise OSError("disk full")


def test_a_broken_job_queue_still_archives_and_marks_the_call_failed() -> None:
    blobs, index, status = MemoryBlobStore(), MemoryCallIndex(), RecordingStatusSink()
    archiver = Archiver(blobs, index, time.time, memory_jobs=MemoryJobs(BrokenQueue(), status, time.time))
    result = archiver.archive(payload.parse_envelope(envelope_bytes(call_envelope("conv_q", CALLER, TURNS))))
    assert result.outcome == "stored"
    assert blobs.size("16125550142/conv_q.json") and index.get("conv_q") is not None
    assert status.history == [("conv_q", "pending"), ("conv_q", "failed")]


def test_a_broken_status_sink_does_not_fail_ingest_either() -> None:
    blobs, index = MemoryBlobStore(), MemoryCallIndex()
    status = RecordingStatusSink(fail=True)
    archiver = Archiver(blobs, index, time.time, memory_jobs=MemoryJobs(BrokenQueue(), status, time.time))
    event = payload.parse_envelope(envelope_bytes(call_envelope("conv_s", CALLER, TURNS)))
    assert archiver.archive(event).outcome == "stored"


@pytest.mark.parametrize("fixture", [AUDIO, INITIATION_FAILURE])
def test_audio_and_initiation_failures_make_no_memory_job(fixture: str) -> None:
    recorded: list[MemoryJob] = []
    queue = type("Q", (), {"enqueue": lambda self, job: recorded.append(job)})()
    status = RecordingStatusSink()
    archiver = Archiver(
        MemoryBlobStore(), MemoryCallIndex(), time.time, memory_jobs=MemoryJobs(queue, status, time.time)
    )
    assert archiver.archive(payload.parse_envelope(fixture_bytes(fixture))).outcome == "stored"
    assert recorded == [] and status.history == []


def test_a_stale_delivery_makes_no_memory_job() -> None:
    recorded: list[MemoryJob] = []
    queue = type("Q", (), {"enqueue": lambda self, job: recorded.append(job)})()
    jobs = MemoryJobs(queue, RecordingStatusSink(), time.time)
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), time.time, memory_jobs=jobs)
    newer = call_envelope("conv_st", CALLER, TURNS, event_at=1751802099)
    older = call_envelope("conv_st", CALLER, TURNS, event_at=1751802025)
    assert archiver.archive(payload.parse_envelope(envelope_bytes(newer))).outcome == "stored"
    assert archiver.archive(payload.parse_envelope(envelope_bytes(older))).outcome == "stale"
    assert recorded == [MemoryJob("conv_st", "16125550142/conv_st.json", 1751802099)]


def test_with_status_in_row_the_hook_only_enqueues() -> None:
    recorded: list[MemoryJob] = []
    queue = type("Q", (), {"enqueue": lambda self, job: recorded.append(job)})()
    status = RecordingStatusSink()
    jobs = MemoryJobs(queue, status, time.time, status_in_row=True)
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), time.time, memory_jobs=jobs)
    archiver.archive(payload.parse_envelope(envelope_bytes(call_envelope("conv_r", CALLER, TURNS))))
    assert len(recorded) == 1 and status.history == []

"""The local worker with a fake store: Mem0 outages back off and give up, status follows, the thread
wakes on enqueue and stops cleanly."""

import time
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex, MemoryTombstones
from services.core.domain import payload
from services.core.erased import ErasedConversations
from services.ingest.service import Archiver
from services.memory.domain import MemoryItem, MemoryJob, MemoryStatus
from services.memory.jobs import JobProcessor, MemoryJobs
from services.memory.outbox import SqliteOutbox
from services.memory.worker import MemoryWorker, backoff_secs, start_worker_thread
from tests.memory.support import (
    CALLER,
    FakeMemoryStore,
    ManualClock,
    RecordingStatusSink,
    call_envelope,
    envelope_bytes,
)

TURNS = [("agent", "Hi"), ("user", "My cat is called Pixel")]


class World:
    def __init__(self, tmp_path: Path, clock: ManualClock) -> None:
        self.clock = clock
        self.blobs = MemoryBlobStore()
        self.index = MemoryCallIndex()
        self.store = FakeMemoryStore()
        self.status = RecordingStatusSink()
        self.outbox = SqliteOutbox(tmp_path / "index.sqlite3", clock)
        jobs = MemoryJobs(self.outbox, self.status, clock)
        self.archiver = Archiver(self.blobs, self.index, clock, memory_jobs=jobs)
        self.worker = MemoryWorker(
            self.outbox,
            JobProcessor(self.blobs, self.index, self.store),
            self.status,
            clock,
            max_attempts=3,
            retry_base_secs=10,
            retry_max_secs=100,
            poll_secs=0.05,
        )

    def ingest(self, conversation_id: str = "conv_1", phone: str | None = CALLER) -> None:
        event = payload.parse_envelope(envelope_bytes(call_envelope(conversation_id, phone, TURNS)))
        assert self.archiver.archive(event).outcome == "stored"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path, ManualClock())


def test_backoff_doubles_from_the_base_up_to_the_cap_with_jitter() -> None:
    assert [backoff_secs(n, 5, 60, jitter=lambda: 0.5) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 60]
    assert backoff_secs(1, 5, 60, jitter=lambda: 0.0) == pytest.approx(4.0)
    assert backoff_secs(1, 5, 60, jitter=lambda: 1.0) == pytest.approx(6.0)


def test_a_job_writes_memories_and_marks_the_row_done(world: World) -> None:
    world.ingest()
    assert world.status.history == [("conv_1", "pending")]
    assert world.worker.run_once() is True
    assert world.store.count(CALLER, "conv_1") == 6  # 5 facts + the caller's turn (not the agent's "Hi")
    assert world.status.last("conv_1") == "done"
    assert world.worker.run_once() is False


def test_mem0_down_backs_off_gives_up_as_failed_then_retry_completes(world: World) -> None:
    world.ingest()
    world.store.down = True
    delays = []
    for _ in range(2):
        assert world.worker.run_once() is True
        row = world.outbox.get("conv_1")
        assert row is not None and row.state == "pending" and row.last_error == "memory_unavailable"
        delays.append(row.next_attempt_at - world.clock.now)
        assert world.worker.run_once() is False  # backing off
        world.clock.advance(1000)
    assert 8 <= delays[0] <= 12 and 16 <= delays[1] <= 24  # 10 s then 20 s, +-20%
    assert world.status.last("conv_1") == "pending"
    assert world.worker.run_once() is True
    assert world.outbox.counts()["failed"] == 1
    assert world.status.last("conv_1") == "failed"

    world.store.down = False
    assert world.outbox.retry_failed() == 1
    assert world.worker.run_once() is True
    assert world.status.last("conv_1") == "done" and world.store.count(CALLER) == 6


def test_a_job_whose_transcript_is_gone_fails_with_a_stable_code(world: World) -> None:
    world.outbox.enqueue(MemoryJob("conv_missing", "16125550142/conv_missing.json"))
    world.worker.run_once()
    row = world.outbox.get("conv_missing")
    assert row is not None and row.last_error == "not_found"
    world.outbox.enqueue(MemoryJob("conv_unknown"))  # no key, no index row
    world.worker.run_once()
    row = world.outbox.get("conv_unknown")
    assert row is not None and row.last_error == "transcript_missing"


def test_a_job_for_a_call_without_phone_ends_as_skipped(world: World) -> None:
    document = call_envelope("conv_web", None, TURNS)["data"]
    del document["metadata"]["phone_call"]
    world.blobs.put_bytes("unknown/conv_web.json", orjson.dumps(document), "application/json")
    world.outbox.enqueue(MemoryJob("conv_web", "unknown/conv_web.json"))  # e.g. re-driven by hand
    world.worker.run_once()
    assert world.status.last("conv_web") == "skipped_no_phone" and world.store.rows == {}


def test_the_worker_thread_wakes_on_enqueue_and_stops_cleanly(tmp_path: Path) -> None:
    world = World(tmp_path, ManualClock())
    world.worker.clock = world.outbox.clock = time.time  # real time for a real thread
    world.worker.poll_secs = 5.0  # longer than the test: only the wakeup can explain a prompt run
    handle = start_worker_thread(world.worker)
    try:
        time.sleep(0.1)
        started = time.monotonic()
        world.ingest()
        while world.status.last("conv_1") != "done":
            assert time.monotonic() - started < 2.0, "the worker did not pick the job up promptly"
            time.sleep(0.01)
    finally:
        assert handle.stop(5.0) is True
    assert not handle.thread.is_alive()


def test_a_job_of_a_conversation_erased_meanwhile_is_done_and_writes_nothing(world: World) -> None:
    """The local worker shares the tombstone check with the SQS Lambda (jobs.JobProcessor)."""
    erased = ErasedConversations(b"tsk_local_worker_test", MemoryTombstones())
    world.worker.process = JobProcessor(world.blobs, world.index, world.store, erased=erased)
    world.ingest("conv_1")
    world.ingest("conv_2")
    erased.mark(["conv_1"], 0)
    assert world.worker.run_once() is True and world.worker.run_once() is True
    assert world.store.count(CALLER, "conv_1") == 0 and world.store.count(CALLER, "conv_2") == 6
    assert world.status.history == [("conv_1", "pending"), ("conv_2", "pending"), ("conv_2", "done")]
    assert world.worker.run_once() is False  # the erased call's job is finished, not retried


def test_a_job_that_takes_the_worker_down_every_time_ends_failed_not_retried_for_ever(world: World) -> None:
    """A call whose job kills the process (out of memory, a native fault) never reaches ``fail``: after
    ``max_attempts`` abandoned leases it is given up, or serve would go down after every restart."""
    world.ingest()
    for attempt in range(1, 4):  # each attempt: claimed, then the worker dies holding it
        claimed = world.outbox.claim(world.worker.lease_secs)
        assert claimed is not None and claimed.attempt == attempt
        world.clock.advance(world.worker.lease_secs + 1)

    assert world.worker.run_once() is False  # nothing claimed: the job is given up instead
    row = world.outbox.get("conv_1")
    assert row is not None and row.state == "failed" and "abandoned" in (row.last_error or "")
    assert world.status.last("conv_1") == "failed"
    assert world.outbox.retry_failed("conv_1") == 1  # the operator can still run it again
    assert world.worker.run_once() is True and world.status.last("conv_1") == "done"


def test_a_call_from_a_placeholder_number_makes_no_memories(world: World) -> None:
    world.ingest("conv_withheld", phone="+10000000000")
    assert world.status.history == [("conv_withheld", "skipped_no_phone")]
    world.outbox.enqueue(MemoryJob("conv_withheld"))  # e.g. re-driven by hand
    world.worker.run_once()
    assert world.status.last("conv_withheld") == "skipped_no_phone" and world.store.rows == {}


def test_a_worker_that_dies_after_writing_the_memories_leaves_a_row_that_ends_done(world: World) -> None:
    """The process dies between the outbox's ``done`` and the row's status (a kill, a power cut): the
    outbox had nothing left to run, so the row said ``pending`` for good. The row is written first, and a
    death between the two re-runs the job after its lease, which writes it again."""

    class Killed(BaseException):
        pass

    class DiesOnDone(RecordingStatusSink):
        def set_memory_status(self, conversation_id: str, status: MemoryStatus, now: int) -> None:
            if status == "done" and not self.fail:
                self.fail = True  # once: the next process writes normally
                raise Killed
            self.history.append((conversation_id, status))

    world.ingest()
    world.worker.status = dies = DiesOnDone()
    with pytest.raises(Killed):
        world.worker.run_once()
    world.worker.status = world.status  # the restarted process
    world.clock.advance(world.worker.lease_secs + 1)
    while world.worker.run_once():
        pass

    assert world.status.last("conv_1") == "done" and dies.fail
    assert world.store.count(CALLER, "conv_1") == 6


def test_a_call_delivered_again_while_its_job_ran_says_pending_until_the_second_run(world: World) -> None:
    class Redelivered(FakeMemoryStore):
        def add_conversation(self, phone: str, conversation_id: str, items: Sequence[MemoryItem]) -> int:
            if not self.adds:
                world.outbox.enqueue(MemoryJob(conversation_id))  # as the trigger does on a redelivery
            return super().add_conversation(phone, conversation_id, items)

    world.store = Redelivered()
    world.worker.process = JobProcessor(world.blobs, world.index, world.store)
    world.ingest()
    assert world.worker.run_once() is True
    assert world.status.last("conv_1") == "pending"  # a run is still due
    assert world.worker.run_once() is True and world.status.last("conv_1") == "done"


def test_a_worker_that_dies_as_it_gives_a_job_up_leaves_a_row_that_ends_failed(world: World) -> None:
    """The same crash point on the way to ``failed``: the outbox said failed, the row stayed ``pending``."""

    class Killed(BaseException):
        pass

    class DiesOnFailed(RecordingStatusSink):
        def set_memory_status(self, conversation_id: str, status: MemoryStatus, now: int) -> None:
            if status == "failed" and not self.fail:
                self.fail = True
                raise Killed
            self.history.append((conversation_id, status))

    world.ingest()
    world.store.down = True
    for _ in range(world.worker.max_attempts - 1):
        assert world.worker.run_once() is True
        world.clock.advance(1000)
    world.worker.status = dies = DiesOnFailed()
    with pytest.raises(Killed):  # the last attempt fails, and the process dies giving it up
        world.worker.run_once()
    world.worker.status = world.status  # the restarted process
    world.clock.advance(world.worker.lease_secs + 1)
    while world.worker.run_once():
        pass

    assert dies.fail and world.status.last("conv_1") == "failed"
    row = world.outbox.get("conv_1")
    assert row is not None and row.state == "failed"


def test_a_worker_that_dies_as_it_gives_up_an_abandoned_job_leaves_a_row_that_ends_failed(world: World) -> None:
    class Killed(BaseException):
        pass

    class DiesOnFailed(RecordingStatusSink):
        def set_memory_status(self, conversation_id: str, status: MemoryStatus, now: int) -> None:
            if status == "failed" and not self.fail:
                self.fail = True
                raise Killed
            self.history.append((conversation_id, status))

    world.ingest()
    for _ in range(world.worker.max_attempts):  # each attempt: claimed, then the worker dies holding it
        assert world.outbox.claim(world.worker.lease_secs) is not None
        world.clock.advance(world.worker.lease_secs + 1)
    world.worker.status = dies = DiesOnFailed()
    with pytest.raises(Killed):  # the process dies giving the abandoned job up
        world.worker.run_once()
    world.worker.status = world.status  # the restarted process
    assert world.worker.run_once() is False

    assert dies.fail and world.status.last("conv_1") == "failed"
    row = world.outbox.get("conv_1")
    assert row is not None and row.state == "failed"

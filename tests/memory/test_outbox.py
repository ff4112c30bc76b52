"""The SQLite outbox: claims are exclusive, leases expire, failures back off, redeliveries re-run once."""

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from services.core.adapters.memory import MemoryBlobStore
from services.core.adapters.sqlite_call_index import SqliteCallIndex
from services.core.domain import payload
from services.core.domain.models import AudioFacts
from services.ingest.service import Archiver
from services.memory.domain import MemoryJob
from services.memory.outbox import SqliteOutbox
from tests.memory.support import CALLER, ManualClock, call_envelope, envelope_bytes
from tests.support import INITIATION_FAILURE, fixture_json


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def outbox(tmp_path: Path, clock: ManualClock) -> SqliteOutbox:
    return SqliteOutbox(tmp_path / "index.sqlite3", clock)


def test_the_outbox_lives_in_the_index_file_next_to_the_calls_table(tmp_path: Path, clock: ManualClock) -> None:
    path = tmp_path / "index.sqlite3"
    SqliteCallIndex(path)
    SqliteOutbox(path, clock).enqueue(MemoryJob("c1"))

    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"calls", "memory_outbox"} <= tables


def test_enqueue_then_claim_then_complete(outbox: SqliteOutbox) -> None:
    outbox.enqueue(MemoryJob("c1", "1612/c1.json", 7))
    assert outbox.wakeup.is_set()
    claimed = outbox.claim(60)
    assert claimed is not None
    assert (claimed.job, claimed.attempt) == (MemoryJob("c1", "1612/c1.json", 7), 1)
    assert outbox.claim(60) is None  # running, lease not over
    assert outbox.complete(claimed) == "done"
    row = outbox.get("c1")
    assert row is not None and (row.state, row.attempts, row.leased_until) == ("done", 1, None)


def test_one_row_per_conversation_and_a_done_job_runs_again_when_redelivered(outbox: SqliteOutbox) -> None:
    outbox.enqueue(MemoryJob("c1"))
    outbox.enqueue(MemoryJob("c1"))
    assert outbox.counts() == {"pending": 1, "running": 0, "done": 0, "failed": 0}
    first = outbox.claim(60)
    assert first is not None
    outbox.complete(first)
    outbox.enqueue(MemoryJob("c1", "k2"))
    again = outbox.claim(60)
    assert again is not None and again.job.transcript_key == "k2" and again.attempt == 1


def test_a_redelivery_during_a_run_does_not_start_a_second_concurrent_run(outbox: SqliteOutbox) -> None:
    outbox.enqueue(MemoryJob("c1"))
    running = outbox.claim(60)
    assert running is not None
    outbox.enqueue(MemoryJob("c1"))  # the webhook came again while the worker is at it
    assert outbox.claim(60) is None
    assert outbox.complete(running) == "pending"  # ...so it runs once more, after this run
    rerun = outbox.claim(60)
    assert rerun is not None and outbox.complete(rerun) == "done"


def test_a_killed_workers_job_is_claimed_again_after_its_lease_and_the_old_worker_cannot_finish_it(
    outbox: SqliteOutbox, clock: ManualClock
) -> None:
    outbox.enqueue(MemoryJob("c1"))
    lost = outbox.claim(30)
    assert lost is not None
    clock.advance(29)
    assert outbox.claim(30) is None
    clock.advance(2)
    second = outbox.claim(30)
    assert second is not None and second.attempt == 2 and second.token != lost.token
    assert outbox.complete(lost) is None  # the first worker woke up late: its result is ignored
    assert outbox.fail(lost, "late", max_attempts=5, delay_secs=1) is None
    assert outbox.complete(second) == "done"


def test_failures_back_off_then_give_up_and_retry_re_drives(outbox: SqliteOutbox, clock: ManualClock) -> None:
    outbox.enqueue(MemoryJob("c1"))
    for attempt in (1, 2):
        claimed = outbox.claim(60)
        assert claimed is not None and claimed.attempt == attempt
        assert outbox.fail(claimed, "memory_unavailable", max_attempts=3, delay_secs=10) == "pending"
        assert outbox.claim(60) is None  # not due yet
        assert outbox.next_due_in() == pytest.approx(10)
        clock.advance(10)
    claimed = outbox.claim(60)
    assert claimed is not None and claimed.attempt == 3
    assert outbox.fail(claimed, "memory_unavailable", max_attempts=3, delay_secs=10) == "failed"
    clock.advance(10_000)
    assert outbox.claim(60) is None and outbox.next_due_in() is None
    row = outbox.get("c1")
    assert row is not None and (row.state, row.attempts, row.last_error) == ("failed", 3, "memory_unavailable")

    assert outbox.retry_failed() == 1
    retried = outbox.claim(60)
    assert retried is not None and retried.attempt == 1  # a fresh budget


def test_retry_one_conversation_only(outbox: SqliteOutbox) -> None:
    for cid in ("c1", "c2"):
        outbox.enqueue(MemoryJob(cid))
        claimed = outbox.claim(60)
        assert claimed is not None
        outbox.fail(claimed, "x", max_attempts=1, delay_secs=0)
    assert outbox.retry_failed("c2") == 1
    assert outbox.counts()["failed"] == 1 and outbox.counts()["pending"] == 1
    assert outbox.retry_failed("nope") == 0


def test_concurrent_workers_never_claim_the_same_job(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    producer = SqliteOutbox(path)
    for n in range(60):
        producer.enqueue(MemoryJob(f"c{n}"))
    claimed: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        outbox = SqliteOutbox(path)  # its own connections, as separate processes would have
        while (job := outbox.claim(300)) is not None:
            with lock:
                claimed.append(job.job.conversation_id)
            outbox.complete(job)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(claimed) == sorted(f"c{n}" for n in range(60))
    assert producer.counts()["done"] == 60


# --- the transactional outbox: jobs written by the index's own save_call --------------------------


def _triggered(tmp_path: Path) -> tuple[SqliteCallIndex, SqliteOutbox]:
    index = SqliteCallIndex(tmp_path / "index.sqlite3")
    outbox = SqliteOutbox(tmp_path / "index.sqlite3")
    outbox.install_call_triggers()
    outbox.install_call_triggers()  # idempotent
    assert outbox.has_call_triggers()
    return index, outbox


def _archive(index: SqliteCallIndex, envelope: dict[str, Any]) -> None:
    Archiver(MemoryBlobStore(), index, time.time).archive(payload.parse_envelope(envelope_bytes(envelope)))


def test_saving_a_transcribed_call_records_its_job_in_the_same_transaction(tmp_path: Path) -> None:

    index, outbox = _triggered(tmp_path)
    _archive(index, call_envelope("conv_t1", CALLER, event_at=1751802025))
    row = outbox.get("conv_t1")
    assert row is not None and (row.state, row.attempts) == ("pending", 0)
    claimed = outbox.claim(60)
    assert claimed is not None
    assert claimed.job == MemoryJob("conv_t1", "16125550142/conv_t1.json", 1751802025)


def test_audio_stale_web_and_failed_calls_record_no_job(tmp_path: Path) -> None:

    index, outbox = _triggered(tmp_path)
    index.save_audio("conv_audio", None, AudioFacts("_pending-audio/conv_audio.mp3", 3), 1, only_if_unplaced=True)
    web = call_envelope("conv_web", None)
    del web["data"]["metadata"]["phone_call"]
    _archive(index, web)
    _archive(index, fixture_json(INITIATION_FAILURE))
    assert outbox.counts()["pending"] == 0
    _archive(index, call_envelope("conv_t2", CALLER, event_at=1751802099))
    done = outbox.claim(60)
    assert done is not None
    outbox.complete(done)
    _archive(index, call_envelope("conv_t2", CALLER, event_at=1751802025))  # older: stale, no update
    index.save_audio("conv_t2", None, AudioFacts("16125550142/conv_t2.mp3", 3), 2, only_if_unplaced=False)
    row = outbox.get("conv_t2")
    assert row is not None and row.state == "done"


def test_a_redelivered_call_runs_again_once_and_never_concurrently(tmp_path: Path) -> None:

    index, outbox = _triggered(tmp_path)
    _archive(index, call_envelope("conv_t3", CALLER))
    running = outbox.claim(60)
    assert running is not None
    _archive(index, call_envelope("conv_t3", CALLER))  # the same webhook again, mid-run
    assert outbox.claim(60) is None
    assert outbox.complete(running) == "pending"
    again = outbox.claim(60)
    assert again is not None and outbox.complete(again) == "done"


def test_a_call_whose_memories_expired_records_no_job_even_with_an_older_versions_triggers(tmp_path: Path) -> None:
    index = SqliteCallIndex(tmp_path / "index.sqlite3")
    outbox = SqliteOutbox(tmp_path / "index.sqlite3")
    old_body = "WHEN NEW.transcript_key IS NOT NULL BEGIN INSERT INTO memory_outbox (conversation_id, state, "
    old_body += "next_attempt_at, created_at, updated_at) VALUES (NEW.conversation_id, 'pending', 0, 0, 0); END"
    with sqlite3.connect(tmp_path / "index.sqlite3") as conn:  # what an earlier release installed
        conn.execute(f"CREATE TRIGGER memory_outbox_on_call_update AFTER UPDATE OF event_at ON calls {old_body}")
    outbox.install_call_triggers()  # at the next start
    _archive(index, call_envelope("conv_t5", CALLER))
    done = outbox.claim(60)
    assert done is not None and outbox.complete(done) == "done"
    index.set_memory_status("conv_t5", "expired", 1)  # a retention rule removed its memories
    _archive(index, call_envelope("conv_t5", CALLER))  # the same webhook again
    row, call = outbox.get("conv_t5"), index.get("conv_t5")
    assert row is not None and row.state == "done"
    assert call is not None and call.memory_status == "expired"


def test_removing_the_triggers_stops_recording_jobs(tmp_path: Path) -> None:

    index, outbox = _triggered(tmp_path)
    outbox.remove_call_triggers()
    assert not outbox.has_call_triggers()
    _archive(index, call_envelope("conv_t4", CALLER))
    assert outbox.get("conv_t4") is None


def test_finished_jobs_are_pruned_after_a_day_and_nothing_else_is(outbox: SqliteOutbox, clock: ManualClock) -> None:
    for cid in ("c_done", "c_failed", "c_pending"):
        outbox.enqueue(MemoryJob(cid))
    done = outbox.claim(60)
    assert done is not None and done.job.conversation_id == "c_done"
    outbox.complete(done)
    failed = outbox.claim(60)
    assert failed is not None
    outbox.fail(failed, "x", max_attempts=1, delay_secs=0)
    clock.advance(3600)
    assert outbox.prune_done() == 0
    clock.advance(86_400)
    assert outbox.prune_done() == 1
    assert outbox.counts() == {"pending": 1, "running": 0, "done": 0, "failed": 1}

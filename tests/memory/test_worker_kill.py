"""Kill a worker process mid-job (SIGKILL, half the memories written), restart: the job completes
exactly once, with exactly the call's memories. Real offline Mem0, real SQLite outbox."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.sqlite_call_index import SqliteCallIndex
from services.core.domain import payload
from services.ingest.service import Archiver
from services.memory.jobs import JobProcessor, MemoryJobs, NullStatusSink
from services.memory.mem0_oss import Mem0OssMemoryStore
from services.memory.outbox import SqliteOutbox
from services.memory.worker import MemoryWorker
from tests.memory.support import CALLER, call_envelope, envelope_bytes

TURNS = [
    ("agent", "Good morning, how are you today?"),
    ("user", "My knee surgery is scheduled for the ninth"),
    ("agent", "I hope it goes well. Who will drive you?"),
    ("user", "My neighbour Tomas offered to drive me"),
    ("user", "Please remind me to buy ice packs"),
]
CALLER_TURNS = [text for role, text in TURNS if role == "user"]
EXPECTED = 5 + len(CALLER_TURNS)  # the fixture's five facts and every caller turn (the agent's lines are none)
ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_killed_mid_job_is_resumed_after_its_lease_and_the_job_completes_once(
    tmp_path: Path, embedder: Any, no_network: None
) -> None:
    data_dir = tmp_path / "data"
    index = SqliteCallIndex(data_dir / "index.sqlite3")
    blobs = FsBlobStore(data_dir / "archive")
    outbox = SqliteOutbox(data_dir / "index.sqlite3")
    archiver = Archiver(blobs, index, time.time, memory_jobs=MemoryJobs(outbox, NullStatusSink(), time.time))
    event = payload.parse_envelope(envelope_bytes(call_envelope("conv_kill_1", CALLER, TURNS)))
    assert archiver.archive(event).outcome == "stored"

    marker = tmp_path / "stalled"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLVAULT_", "MEM0_"))}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.memory.worker_child", str(data_dir), str(marker), "4"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, child.stdout.read().decode() if child.stdout else ""
            assert time.monotonic() < deadline, "the child never reached the middle of the job"
            time.sleep(0.05)
        row = outbox.get("conv_kill_1")
        assert row is not None and row.state == "running" and row.attempts == 1
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)

    store = Mem0OssMemoryStore(data_dir / "memory", embedder=embedder)  # the folder lock died with the child
    try:
        assert len(store.list(CALLER, None, 100)) == 3  # half done: 3 of the 5 facts made it before the kill
        leased_until = outbox.get("conv_kill_1").leased_until  # type: ignore[union-attr]
        assert leased_until is not None
        # The restarted worker's clock is ours: "before" and "after" the dead lease without sleeping on a
        # loaded machine (opening the store can take longer than the lease).
        now = [leased_until - 1.0]
        restarted = SqliteOutbox(data_dir / "index.sqlite3", clock=lambda: now[0])
        worker = MemoryWorker(
            restarted, JobProcessor(blobs, index, store), NullStatusSink(), lease_secs=60, clock=lambda: now[0]
        )
        assert worker.run_once() is False  # the dead worker's lease has not run out yet...
        now[0] = leased_until + 0.1
        assert worker.run_once() is True  # ...now it has: picked up again
        assert worker.run_once() is False  # and run once only

        row = outbox.get("conv_kill_1")
        assert row is not None and (row.state, row.attempts) == ("done", 2)
        memories = store.list(CALLER, None, 100)
        assert len(memories) == EXPECTED
        assert sorted(m.text for m in memories if m.type == "semantic") == sorted(CALLER_TURNS)
    finally:
        store.close()

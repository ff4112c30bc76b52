"""The local memory worker: drains the SQLite outbox in a background thread of ``callvault serve``.

Failure handling, in order of likelihood:
- Mem0 down or slow: the job goes back to ``pending`` with exponential backoff (``retry_base_secs``
  doubling per attempt, capped at ``retry_max_secs``, +-20% jitter so a recovered service is not
  hit by every job at once); after ``max_attempts`` it is ``failed`` and ``callvault memory retry``
  re-drives it.
- The process is killed mid-job: the row stays ``running`` until its lease ends, then any worker
  claims it again. Re-running is safe because the store replaces the conversation's memories.
- A restart: pending rows are simply there; nothing is held in memory.
"""

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .domain import STATUS_FAILED, STATUS_PENDING, MemoryJob
from .jobs import ERASED, EXPIRED, IngestActivity, JobOutcome, error_code
from .outbox import SqliteOutbox
from .ports import MemoryStatusSink


def backoff_secs(attempt: int, base: float, cap: float, jitter: Callable[[], float] = random.random) -> float:
    """``base * 2**(attempt-1)``, capped, with +-20% jitter."""
    delay: float = min(base * 2.0 ** max(attempt - 1, 0), cap)
    return delay * (0.8 + 0.4 * jitter())


@dataclass
class MemoryWorker:
    outbox: SqliteOutbox
    process: Callable[[MemoryJob], JobOutcome]
    status: MemoryStatusSink
    clock: Callable[[], float] = time.time
    logger: Any = None
    lease_secs: float = 300.0
    max_attempts: int = 8
    retry_base_secs: float = 5.0
    retry_max_secs: float = 3600.0
    poll_secs: float = 1.0
    # Yield to ingest: start a job only after ``yield_quiet_secs`` without a webhook, but never wait
    # more than ``yield_max_secs`` (so a steady stream of webhooks still lets memories through).
    activity: IngestActivity | None = None
    yield_quiet_secs: float = 0.05
    yield_max_secs: float = 10.0
    # The worker thread's nice value (Linux schedules threads separately): on a busy machine the
    # receiver's threads get the CPU first. 0 leaves it alone.
    nice: int = 10
    prune_every_secs: float = 600.0
    processed: int = field(default=0, init=False)
    _pruned_at: float = field(default=float("-inf"), init=False)

    def run_once(self) -> bool:
        """Claim and run one due job; False when none was due."""
        abandoned = self.outbox.abandoned(self.max_attempts)
        if abandoned:  # the rows first, as below: a death before the outbox write finds them again
            for cid in abandoned:
                self.status.set_memory_status(cid, STATUS_FAILED, int(self.clock()))
            for cid in self.outbox.give_up_abandoned(self.max_attempts):
                self._log("memory job failed", conversation_id=cid, state="failed", error_code="abandoned")
        claimed = self.outbox.claim(self.lease_secs)
        if claimed is None:
            return False
        cid = claimed.job.conversation_id
        started = time.perf_counter()
        try:
            outcome = self.process(claimed.job)
        except Exception as exc:
            delay = backoff_secs(claimed.attempt, self.retry_base_secs, self.retry_max_secs)
            gives_up = claimed.attempt >= self.max_attempts
            now = int(self.clock())
            if gives_up:  # the row first, as on success: a death before ``fail`` is given up after the lease
                self.status.set_memory_status(cid, STATUS_FAILED, now)
            state = self.outbox.fail(claimed, error_code(exc), max_attempts=self.max_attempts, delay_secs=delay)
            if gives_up and state == "pending":  # the call was delivered again meanwhile: it runs once more
                self.status.set_memory_status(cid, STATUS_PENDING, now)
            self._log(
                "memory job failed",
                conversation_id=cid,
                attempt=claimed.attempt,
                state=state,
                retry_in_s=round(delay, 1) if state == "pending" else None,
                error_code=error_code(exc),
            )
            return True
        if outcome == ERASED:  # nothing written; logged without the erased call's id
            state = self.outbox.complete(claimed)
            self.processed += 1
            self._log("memory job of an erased conversation dropped", attempt=claimed.attempt, state=state)
            return True
        if outcome == EXPIRED:  # nothing written; the row keeps saying expired
            state = self.outbox.complete(claimed)
            self.processed += 1
            self._log("memory job of a call whose memories expired dropped", conversation_id=cid, state=state)
            return True
        # The row first: a process that dies before ``complete`` runs the job again after its lease, which
        # writes the row again; the other way round, a death in between left it "pending" for good.
        now = int(self.clock())
        self.status.set_memory_status(cid, outcome, now)
        state = self.outbox.complete(claimed)
        if state == "pending":  # the call was delivered again while this ran: its job runs once more
            self.status.set_memory_status(cid, STATUS_PENDING, now)
        self.processed += 1
        self._log(
            "memory job done",
            conversation_id=cid,
            attempt=claimed.attempt,
            outcome=outcome,
            state=state,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return True

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set. Never dies on an error: it logs, waits a poll, and goes on."""
        lower_thread_priority(self.nice)
        while not stop.is_set():
            self.outbox.wakeup.clear()
            self._yield_to_ingest(stop)
            if stop.is_set():  # asked to stop while yielding: do not start another job
                return
            try:
                if self.run_once():
                    continue
                self._prune()
                due = self.outbox.next_due_in()
            except Exception as exc:  # the outbox itself failed (disk full, locked too long)
                self._log("memory worker error", error_code=error_code(exc), level="error")
                due = None
            timeout = self.poll_secs if due is None else min(self.poll_secs, max(due, 0.01))
            self.outbox.wakeup.wait(timeout)

    def _prune(self) -> None:
        """When idle, at most every ``prune_every_secs``: drop old finished jobs (keeps claims cheap)."""
        now = time.monotonic()
        if now - self._pruned_at >= self.prune_every_secs:
            self._pruned_at = now
            self.outbox.prune_done()

    def _yield_to_ingest(self, stop: threading.Event) -> None:
        if self.activity is not None:
            self.activity.wait_quiet(self.yield_quiet_secs, self.yield_max_secs, stop)

    def _log(self, message: str, level: str = "info", **fields: Any) -> None:
        if self.logger is not None:
            getattr(self.logger, level)(message, extra=fields)


def lower_thread_priority(nice: int) -> None:
    """Best effort: on Linux ``setpriority`` on a thread id renices that thread only."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


@dataclass
class WorkerThread:
    """A started worker: ``stop()`` lets the current job finish, then joins."""

    worker: MemoryWorker
    thread: threading.Thread
    stop_event: threading.Event

    def stop(self, timeout: float = 30.0) -> bool:
        self.stop_event.set()
        self.worker.outbox.wakeup.set()
        self.thread.join(timeout)
        return not self.thread.is_alive()


def start_worker_thread(worker: MemoryWorker, name: str = "callvault-memory-worker") -> WorkerThread:
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name=name, daemon=True)
    thread.start()
    return WorkerThread(worker, thread, stop)

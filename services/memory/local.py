"""Memory for the one-machine server (``callvault serve``): one call builds all of it.

The outbox lives in the index's SQLite file, the Mem0 store under ``DATA_DIR/memory``, and the
worker runs in a daemon thread of the server process: ``start()`` after the app is built,
``stop()`` on shutdown (it lets the current job finish; a job cut off by a kill is re-run after
its lease).
"""

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from services.core.config import Settings
from services.core.wiring import Storage, build_erased

from .jobs import IngestActivity, JobProcessor, MemoryJobs, status_sink_for
from .outbox import CallTriggeredQueue, SqliteOutbox
from .ports import MemoryStore
from .router import MemoryContext
from .service import AgentSecrets
from .wiring import INDEX_FILE, build_memory_store, memory_infer
from .worker import MemoryWorker, WorkerThread, start_worker_thread

PACE_QUIET_SECS = 0.02  # a gap this long between webhooks lets the next memory be written...
PACE_MAX_SECS = 1.0  # ...or this long at most, so a steady stream still lets jobs finish


@dataclass
class LocalMemory:
    store: MemoryStore
    outbox: SqliteOutbox
    jobs: MemoryJobs  # give to Archiver(memory_jobs=...)
    worker: MemoryWorker
    context: MemoryContext  # give to mount_memory(app, ...)
    thread: WorkerThread | None = field(default=None)

    def start(self) -> None:
        """Start the worker. Call it once the app is built: it also freezes the garbage collector's
        view of everything loaded so far (Mem0, Qdrant and ONNX add ~80,000 long-lived objects that
        every full collection would otherwise rescan, which showed as +20% on ingest p99)."""
        if self.thread is None:
            warm = getattr(self.store, "warm", None)
            if callable(warm):  # open the offline store's shards (~2 s) in the background, not on a first lookup
                threading.Thread(target=warm, name="callvault-memory-warm", daemon=True).start()
            gc.collect()
            gc.freeze()
            self.thread = start_worker_thread(self.worker)

    def webhook_stored(self) -> None:
        """A webhook was stored by another process (`serve`'s ingest processes): what ``jobs`` tells
        the worker in-process, told here. A job may be waiting (wake up); webhooks are arriving (pace)."""
        self.outbox.wakeup.set()
        if self.jobs.activity is not None:
            self.jobs.activity.touch()

    def stop(self, timeout: float = 30.0) -> None:
        if self.thread is not None:
            self.thread.stop(timeout)
            self.thread = None
        close = getattr(self.store, "close", None)
        if callable(close):
            close()


def build_local_memory(
    settings: Settings,
    storage: Storage,
    *,
    agent_secrets: list[str],
    logger: Any = None,
    store: MemoryStore | None = None,
) -> LocalMemory | None:
    """None when ``memory_backend = none`` (and then calls stop recording jobs). ``store`` overrides
    the configured one (tests)."""
    if settings.memory_backend == "none" and store is None:
        disable_local_memory_jobs(settings)
        return None
    configured = store is None
    store = store or build_memory_store(settings)
    outbox = SqliteOutbox(settings.data_dir / INDEX_FILE)
    outbox.install_call_triggers()  # after build_storage: the calls table exists
    status = status_sink_for(storage.index)
    activity = IngestActivity()
    if hasattr(store, "pace"):  # the offline store writes memory by memory: let each wait for a gap
        store.pace = partial(activity.wait_quiet, PACE_QUIET_SECS, PACE_MAX_SECS)
    worker = MemoryWorker(
        outbox=outbox,
        process=JobProcessor(
            storage.blobs,
            storage.index,
            store,
            settings.default_region,
            memory_infer(settings),
            erased=build_erased(settings),  # a job that raced an erasure writes nothing (#13)
        ),
        status=status,
        clock=time.time,
        logger=logger,
        lease_secs=settings.memory_worker_lease_secs,
        max_attempts=settings.memory_max_attempts,
        retry_base_secs=settings.memory_retry_base_secs,
        retry_max_secs=settings.memory_retry_max_secs,
        poll_secs=settings.memory_worker_poll_secs,
        activity=activity,
        yield_max_secs=settings.memory_worker_yield_max_secs,
    )
    context = MemoryContext(
        store=_agent_read_store(settings) if configured and settings.memory_backend == "platform" else store,
        index=storage.index,
        agent_secrets=AgentSecrets(agent_secrets),
        default_region=settings.default_region,
        first_message=settings.agent_first_message,
        logger=logger,
    )
    jobs = local_memory_jobs(settings, storage, time.time, logger=logger, activity=activity, outbox=outbox)
    return LocalMemory(store, outbox, jobs, worker, context)


# The voice agent's reads happen while the phone rings: each request to a slow Mem0 Platform gives up
# after this (the AWS template sets the same for its memory function); the routes also give up on the
# store after ``service.AGENT_WAIT_SECS`` in all, since a greeting makes several requests.
AGENT_READ_TIMEOUT_SECS = 3.0


def _agent_read_store(settings: Settings) -> MemoryStore:
    """The Platform store conversation-init and the memory tool read: a short timeout and no retries
    (the worker's store waits and retries, which suits a job, not a ringing phone). The offline store
    answers from this process, so the worker and the agent share it."""
    quick = settings.model_copy(
        update={"mem0_timeout_secs": min(settings.mem0_timeout_secs, AGENT_READ_TIMEOUT_SECS), "mem0_max_retries": 0}
    )
    return build_memory_store(quick)


def local_memory_jobs(
    settings: Settings,
    storage: Storage,
    clock: Callable[[], float],
    *,
    logger: Any = None,
    activity: IngestActivity | None = None,
    outbox: SqliteOutbox | None = None,
) -> MemoryJobs:
    """The ingest hook alone, without the Mem0 store: what a process that only stores webhooks needs
    (``services/local/ingest_process.py``). The row's status is the job: the outbox triggers that
    ``build_local_memory`` installed enqueue it with the row, in one SQLite transaction."""
    return MemoryJobs(
        queue=CallTriggeredQueue(outbox or SqliteOutbox(settings.data_dir / INDEX_FILE)),
        status=status_sink_for(storage.index),
        clock=clock,
        logger=logger,
        activity=activity,
        status_in_row=True,
    )


def disable_local_memory_jobs(settings: Settings) -> None:
    """Drop the outbox triggers if an earlier run installed them (memory switched off)."""
    path = settings.data_dir / INDEX_FILE
    if path.exists():
        SqliteOutbox(path).remove_call_triggers()

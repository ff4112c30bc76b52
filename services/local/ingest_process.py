"""`callvault serve` stores webhooks in child processes, so HTTP and the use case use both cores (#10).

In one Python process the event loop (HTTP, the streaming HMAC) and the ingest thread take the GIL in
turn: the server used one core, and its rate was 1 / (their CPU per webhook) (docs/benchmarks.md).
Here the event loop hands the verified bytes of an in-memory body to a child process, which builds
the same ``Archiver`` from the same settings and runs the same ``handle_webhook``. What the parent's
threads heard in-process they hear from the answer: the closed analytics days written to (for the
merge) and that a webhook was stored (the memory worker's wake-up and pacing). Two children by
default: one stores while the other waits for its fsyncs.

Safe because of the write protocol, not because of the children: every write is a conditional one,
as for concurrent Lambdas, and spooled audio keeps the parent's thread pool beside them. Children
are spawned (the parent runs threads, which ``fork`` would copy half-way) by one long-lived thread,
because the kernel's "kill me when my parent dies" (``PR_SET_PDEATHSIG``, Linux) follows the thread
that spawned a child: nothing writes after a ``kill -9`` of ``serve``. A child that dies breaks the
pool: the requests it held answer 503 (the sender retries; the protocol completes a half-done write),
and the next request gets new children, spawned off the event loop.
"""

import asyncio
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from services.core.config import Settings
from services.core.domain.errors import StorageUnavailable
from services.core.http import JsonBody, error_body
from services.core.logging import get_logger
from services.core.wiring import build_storage
from services.ingest.edge import handle_webhook
from services.ingest.service import MemoryJobSubmitter, WebhookReceiver
from services.ingest.wiring import build_archiver

from .runtime import LOG_INTERVAL_SECS, RepeatFilter, tune_garbage_collector

_PR_SET_PDEATHSIG = 1
START_TIMEOUT_SECS = 60.0  # a child imports the write path and opens the index (10 s busy timeout)
RESPAWN_PAUSE_SECS = 5.0  # after children failed to start, requests get 503 this long before a new try

ChildAnswer = tuple[int, JsonBody, list[str]]  # (status, body, closed analytics days written to)

# In a child: its receiver, the days its last request wrote to, and the barrier of its pool's start.
_child: dict[str, Any] = {}


class IngestUnavailable(Exception):
    """No children to store with: they failed to start, or the server is closing."""


class IngestProcesses:
    """The child processes and the parent's side of the hand-off."""

    def __init__(
        self,
        settings: Settings,
        secrets: list[str],
        *,
        processes: int = 2,
        memory_jobs: bool,
        on_late_write: Callable[[str], None] | None = None,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError("at least one ingest process")
        self._processes = processes
        self._args = (settings, secrets, memory_jobs)
        self._on_late_write = on_late_write
        self._on_stored = on_stored
        self._logger = get_logger("callvault", settings.log_level)
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self._failed_at = float("-inf")
        # Every spawn happens on this thread, which lives until close(): the children's death signal.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callvault-ingest-spawner")

    def start(self) -> None:
        """Spawn the children and wait until every one has built its receiver (errors surface here)."""
        self._spawner.submit(self._ensure_pool, None, True).result()

    def child_pids(self) -> list[int]:
        pool = self._pool
        return sorted(pool._processes) if pool is not None else []  # the executor has no public accessor

    async def store(self, raw: bytes, signature: str | None, request_id: str) -> tuple[int, JsonBody]:
        """Store a verified body in a child; ``(status, body)`` as ``handle_webhook`` answers.

        A cancelled request (server shutdown) still waits for its write, like the ingest thread."""
        try:
            pool = self._pool or await self._replacement(None)
            try:
                submitted = pool.submit(_store_in_child, raw, signature, request_id)
            except (BrokenProcessPool, RuntimeError):  # broke between two requests: nothing of this one was sent
                pool = await self._replacement(pool)
                submitted = pool.submit(_store_in_child, raw, signature, request_id)
        except (IngestUnavailable, BrokenProcessPool, RuntimeError, OSError) as exc:
            return self._unavailable(request_id, exc)
        future = asyncio.wrap_future(submitted)
        try:
            status, body, late_days = await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait({future})
            raise
        except BrokenProcessPool as exc:  # a child died during this request: the sender's retry completes it
            self._discard(pool)
            return self._unavailable(request_id, exc)
        if self._on_late_write is not None:
            for day in late_days:
                self._on_late_write(day)
        if self._on_stored is not None:
            self._on_stored()
        return status, body

    async def _replacement(self, broken: ProcessPoolExecutor | None) -> ProcessPoolExecutor:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._spawner, self._ensure_pool, broken, False)

    def _ensure_pool(self, broken: ProcessPoolExecutor | None, waiting: bool) -> ProcessPoolExecutor:
        """On the spawner thread: the current pool, or new children for ``broken`` (once, however many
        requests saw it break). ``waiting``: at start-up, no pause after a failure."""
        if self._closed:
            raise IngestUnavailable("the server is closing")
        if self._pool is not None and self._pool is not broken:
            return self._pool
        if broken is not None:
            self._discard(broken)
        if not waiting and time.monotonic() - self._failed_at < RESPAWN_PAUSE_SECS:
            raise IngestUnavailable("the ingest processes failed to start a moment ago")
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Barrier(self._processes)
        pool = ProcessPoolExecutor(
            max_workers=self._processes,
            mp_context=ctx,
            initializer=_start_child,
            initargs=(*self._args, os.getpid(), ready),
        )
        try:
            # Each task waits at the barrier until all have arrived, so each child takes one: every
            # child is spawned now, from this thread, and has built its receiver when they return.
            meetings = [pool.submit(_meet) for _ in range(self._processes)]
            for meeting in meetings:
                meeting.result(timeout=START_TIMEOUT_SECS)
        except BaseException:
            self._failed_at = time.monotonic()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        self._pool = pool
        return pool

    def _discard(self, broken: ProcessPoolExecutor) -> None:
        if self._pool is broken:
            self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)

    def _unavailable(self, request_id: str, exc: BaseException) -> tuple[int, JsonBody]:
        self._logger.error(
            "webhook not stored",
            extra={"request_id": request_id, "status": 503, "cause": "ingest", "error_type": type(exc).__name__},
        )
        return 503, error_body(StorageUnavailable.code, "the ingest processes are restarting; retry", request_id)

    def close(self) -> None:
        """Wait for the children's current writes, then end them; later requests answer 503."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        # Only now: the spawner thread's end is the children's death signal. A spawn that was under
        # way leaves a pool with nothing to do.
        self._spawner.shutdown(wait=True)
        late, self._pool = self._pool, None
        if late is not None:
            late.shutdown(wait=True)


def _start_child(
    settings: Settings, secrets: list[str], memory_jobs: bool, parent: int, ready: threading.Barrier
) -> None:
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)
    # Ctrl-C, or a service manager's SIGTERM, reaches the whole process group: the parent decides
    # when the children end (after their current writes), or the kernel does when the parent dies.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    storage = build_storage(settings)
    late_days: list[str] = []
    archiver = build_archiver(
        settings, storage, _memory_jobs(settings, storage) if memory_jobs else None, on_late_write=late_days.append
    )
    logger = get_logger("callvault", settings.log_level)
    logger.addFilter(RepeatFilter(LOG_INTERVAL_SECS))  # as the server's: an outage is not a log flood
    _child.update(
        receiver=WebhookReceiver(archiver, secrets, settings.max_body_bytes),
        logger=logger,
        late_days=late_days,
        ready=ready,
    )
    tune_garbage_collector()  # as in the server: the use case's JSON trees are the reason


def _meet() -> int:
    _child["ready"].wait(timeout=START_TIMEOUT_SECS)
    return os.getpid()


def _memory_jobs(settings: Settings, storage: Any) -> MemoryJobSubmitter:
    from services.memory.local import local_memory_jobs  # the composition root may wire memory in

    return local_memory_jobs(settings, storage, time.time)


def _store_in_child(raw: bytes, signature: str | None, request_id: str) -> ChildAnswer:
    late_days: list[str] = _child["late_days"]
    late_days.clear()
    status, body = handle_webhook(_child["receiver"], raw, signature, request_id, _child["logger"], verified=True)
    return status, body, list(dict.fromkeys(late_days))

"""`callvault serve` stores webhooks in child processes, so HTTP and the use case use both cores (#10).

In one Python process the event loop (HTTP, the streaming HMAC) and the ingest thread take the GIL in
turn: the server used one core, and its rate was 1 / (their CPU per webhook) (docs/benchmarks.md).
Here the event loop hands the verified bytes of an in-memory body to a child process, which builds
the same ``Archiver`` from the same settings and runs the same ``handle_webhook``; what the parent's
threads must hear of a write (a merged analytics day written to, a webhook arriving while the memory
worker paces itself) comes back with the answer or is noted before the hand-off. Two children by
default: one stores while the other waits for its fsyncs.

Safe because of the write protocol, not because of the children: every write is a conditional one,
as for concurrent Lambdas, and spooled audio keeps the parent's thread pool beside them. A child is
spawned (the parent already runs threads, which ``fork`` would copy half-way), asks the kernel to
kill it when the parent dies (``PR_SET_PDEATHSIG``: nothing writes after a ``kill -9`` of ``serve``),
and the children are replaced when one dies: the requests they held answer 503 and the senders retry.
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
from concurrent.futures import ProcessPoolExecutor
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

from .runtime import tune_garbage_collector

_PR_SET_PDEATHSIG = 1
RETRY_AFTER_SECS = 1  # a new child is ready in about a second

ChildAnswer = tuple[int, JsonBody, list[str]]  # (status, body, closed analytics days written to)

# The child's receiver, and the closed analytics days its last request wrote to (for the parent's merge).
_child: dict[str, Any] = {}


class IngestProcesses:
    """The child processes and the parent's side of the hand-off. ``start`` and ``store`` in the thread
    that runs the event loop: a child's death signal follows the thread that spawned it."""

    def __init__(
        self,
        settings: Settings,
        secrets: list[str],
        *,
        processes: int = 2,
        memory_jobs: bool,
        on_late_write: Callable[[str], None] | None = None,
        on_webhook: Callable[[], None] | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError("at least one ingest process")
        self._processes = processes
        self._args = (settings, secrets, memory_jobs)
        self._on_late_write = on_late_write
        self._on_webhook = on_webhook
        self._logger = get_logger("callvault", settings.log_level)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def start(self) -> ProcessPoolExecutor:
        """Spawn the children and wait until each has built its receiver (errors surface here, at start-up)."""
        with self._lock:
            if self._pool is None:
                pool = ProcessPoolExecutor(
                    max_workers=self._processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_child,
                    initargs=(*self._args, os.getpid()),
                )
                # One child first: on a new data dir it creates the index (two at once can find it
                # locked while it turns to WAL). Then overlapping tasks make the executor spawn the
                # others now, from this thread. ``result()``: the initializers ran, or raise here.
                pool.submit(time.sleep, 0).result()
                for ready in [pool.submit(time.sleep, 0.05) for _ in range(self._processes)]:
                    ready.result()
                self._pool = pool
            return self._pool

    def child_pids(self) -> list[int]:
        pool = self._pool
        return sorted(pool._processes) if pool is not None else []  # the executor has no public accessor

    async def store(self, raw: bytes, signature: str | None, request_id: str) -> tuple[int, JsonBody]:
        """Store a verified body in a child; ``(status, body)`` as ``handle_webhook`` answers.

        A cancelled request (server shutdown) still waits for its write, like the ingest thread."""
        if self._on_webhook is not None:
            self._on_webhook()
        pool = self.start()
        try:
            submitted = pool.submit(_store_in_child, raw, signature, request_id)
        except BrokenProcessPool:  # a child died between two requests: nothing of this one was sent
            pool = self._replace(pool)
            submitted = pool.submit(_store_in_child, raw, signature, request_id)
        future = asyncio.wrap_future(submitted)
        try:
            status, body, late_days = await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait({future})
            raise
        except BrokenProcessPool:  # a child died during this request: what it wrote, the retry completes
            self._replace(pool)
            self._logger.error(
                "webhook not stored", extra={"request_id": request_id, "status": 503, "cause": "ingest process ended"}
            )
            return 503, error_body(StorageUnavailable.code, "the ingest process ended; retry", request_id)
        if self._on_late_write is not None:
            for day in late_days:
                self._on_late_write(day)
        return status, body

    def _replace(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """New children for ``broken`` (once: the other requests it held find the new pool in place)."""
        with self._lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)
        return self.start()

    def close(self) -> None:
        """Wait for the children's current writes, then end them."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def _start_child(settings: Settings, secrets: list[str], memory_jobs: bool, parent: int) -> None:
    if sys.platform == "linux":  # elsewhere a child ends when its task pipe closes, after the write at hand
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    storage = build_storage(settings)
    late_days: list[str] = []
    archiver = build_archiver(
        settings, storage, _memory_jobs(settings, storage) if memory_jobs else None, on_late_write=late_days.append
    )
    _child.update(
        receiver=WebhookReceiver(archiver, secrets, settings.max_body_bytes),
        logger=get_logger("callvault", settings.log_level),
        late_days=late_days,
    )
    tune_garbage_collector()  # as in the server: the use case's JSON trees are the reason


def _memory_jobs(settings: Settings, storage: Any) -> MemoryJobSubmitter:
    from services.memory.local import local_memory_jobs  # the composition root may wire memory in

    return local_memory_jobs(settings, storage, time.time)


def _store_in_child(raw: bytes, signature: str | None, request_id: str) -> ChildAnswer:
    late_days: list[str] = _child["late_days"]
    late_days.clear()
    status, body = handle_webhook(_child["receiver"], raw, signature, request_id, _child["logger"], verified=True)
    return status, body, list(dict.fromkeys(late_days))

"""`callvault serve` stores webhooks in a second process, so HTTP and the use case use both cores (#10).

In one Python process the event loop (HTTP, the streaming HMAC) and the ingest thread take the GIL in
turn: the server used one core, and its rate was 1 / (their CPU per webhook) (docs/benchmarks.md).
Here the event loop hands the verified bytes of an in-memory body to one child process, which builds
the same ``Archiver`` from the same settings and runs the same ``handle_webhook``; what the parent's
threads must hear of a write (a merged analytics day written to, a webhook arriving while the memory
worker paces itself) comes back with the answer or is noted before the hand-off.

Safe because of the write protocol, not because of the child: every write is a conditional one, as
for concurrent Lambdas, and spooled audio keeps the parent's thread pool beside the child.
The child is spawned (the parent already runs threads, which ``fork`` would copy half-way), asks the
kernel to kill it when the parent dies (``PR_SET_PDEATHSIG``: nothing writes after a ``kill -9`` of
``serve``), and is replaced when it dies: its request answers 503 and the sender retries.
"""

import asyncio
import ctypes
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
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

_PR_SET_PDEATHSIG = 1
RETRY_AFTER_SECS = 1  # a new child is ready in about a second

ChildAnswer = tuple[int, JsonBody, list[str]]  # (status, body, closed analytics days written to)

# The child's receiver, and the closed analytics days its last request wrote to (for the parent's merge).
_child: dict[str, Any] = {}


class IngestProcess:
    """The child process and the parent's side of the hand-off. ``start`` in the thread that runs the
    event loop: the child's death signal follows the thread that spawned it."""

    def __init__(
        self,
        settings: Settings,
        secrets: list[str],
        *,
        memory_jobs: bool,
        on_late_write: Callable[[str], None] | None = None,
        on_webhook: Callable[[], None] | None = None,
    ) -> None:
        self._args = (settings, secrets, memory_jobs)
        self._on_late_write = on_late_write
        self._on_webhook = on_webhook
        self._logger = get_logger("callvault", settings.log_level)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Spawn the child and wait until it has built its receiver (errors surface here, at start-up)."""
        with self._lock:
            if self._pool is None:
                pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_child,
                    initargs=(*self._args, os.getpid()),
                )
                pool.submit(os.getpid).result()  # the initializer has run, or raised
                self._pool = pool

    def child_pid(self) -> int | None:
        pool = self._pool
        if pool is None:
            return None
        return next(iter(pool._processes), None)

    async def store(self, raw: bytes, signature: str | None, request_id: str) -> tuple[int, JsonBody]:
        """Store a verified body in the child; ``(status, body)`` as ``handle_webhook`` answers.

        A cancelled request (server shutdown) still waits for its write, like the ingest thread."""
        if self._on_webhook is not None:
            self._on_webhook()
        try:
            submitted = self._submit(raw, signature, request_id)
        except BrokenProcessPool:  # the child died between two requests: nothing of this one was sent
            self._replace()
            submitted = self._submit(raw, signature, request_id)
        future = asyncio.wrap_future(submitted)
        try:
            status, body, late_days = await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait({future})
            raise
        except BrokenProcessPool:  # it died during this request: what it wrote, the retry completes
            self._replace()
            self._logger.error(
                "webhook not stored", extra={"request_id": request_id, "status": 503, "cause": "ingest process ended"}
            )
            return 503, error_body(StorageUnavailable.code, "the ingest process ended; retry", request_id)
        if self._on_late_write is not None:
            for day in late_days:
                self._on_late_write(day)
        return status, body

    def _submit(self, raw: bytes, signature: str | None, request_id: str) -> "Future[ChildAnswer]":
        self.start()
        assert self._pool is not None
        return self._pool.submit(_store_in_child, raw, signature, request_id)

    def _replace(self) -> None:
        with self._lock:
            broken, self._pool = self._pool, None
        if broken is not None:
            broken.shutdown(wait=False, cancel_futures=True)
        self.start()

    def close(self) -> None:
        """Wait for the child's current write, then end it."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def _start_child(settings: Settings, secrets: list[str], memory_jobs: bool, parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
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


def _memory_jobs(settings: Settings, storage: Any) -> MemoryJobSubmitter:
    from services.memory.local import local_memory_jobs  # the composition root may wire memory in

    return local_memory_jobs(settings, storage, time.time)


def _store_in_child(raw: bytes, signature: str | None, request_id: str) -> ChildAnswer:
    late_days: list[str] = _child["late_days"]
    late_days.clear()
    status, body = handle_webhook(_child["receiver"], raw, signature, request_id, _child["logger"], verified=True)
    return status, body, list(dict.fromkeys(late_days))

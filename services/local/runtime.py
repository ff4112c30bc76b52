"""Process settings shared by `callvault serve` and its ingest processes."""

import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

LOG_INTERVAL_SECS = 10.0  # a repeated warning or error is written at most this often


def tune_garbage_collector() -> None:
    """Every webhook parses a large JSON tree; with the default thresholds the collector ran about
    three young collections per webhook, promoted live trees and paid 80-100 ms full collections
    (docs/benchmarks.md). The start-up objects are frozen out of every collection, and young
    collections wait for 50,000 net allocations: the trees are freed by reference counting anyway."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class RepeatFilter(logging.Filter):
    """Each kind of warning or error (logger, level, message, error code, status, exception type) passes
    at most once per ``interval`` seconds; the next one that passes carries how many were dropped
    (``suppressed_repeats``; in the text too when ``annotate`` is set, for plain-text loggers).
    Info and debug records always pass. A flood that stops leaves its last count unsaid."""

    def __init__(self, interval: float, *, annotate: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.annotate = annotate
        self.clock = clock
        self._kinds: dict[tuple[Any, ...], list[float]] = {}  # kind -> [when it last passed, dropped since]
        self._lock = threading.Lock()  # records come from the event loop and from worker threads

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        exception = record.exc_info[1] if record.exc_info else None
        kind = (
            record.name,
            record.levelno,
            str(record.msg),
            getattr(record, "error_code", None),
            getattr(record, "status", None),
            type(exception).__name__ if exception is not None else None,
        )
        now = self.clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen[0] < self.interval:
                seen[1] += 1
                return False
            dropped = int(seen[1]) if seen is not None else 0
            self._kinds[kind] = [now, 0]
            if len(self._kinds) > 1024:  # bounded: forget kinds that have been quiet for an interval
                self._kinds = {k: v for k, v in self._kinds.items() if now - v[0] < self.interval}
        if dropped:
            record.suppressed_repeats = dropped
            if self.annotate and isinstance(record.msg, str):
                record.msg = f"{record.msg} [{dropped} similar messages suppressed in the last {self.interval:g} s]"
        return True

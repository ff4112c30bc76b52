"""Lambda entry for the daily compaction of the analytics tables (an EventBridge schedule).

Merges every closed day's per-call objects into one day object per table
(``compaction.compact_closed_days``): idempotent, and safe beside live ingest and beside another run
of itself, because every write is a compare-and-swap. Logs one summary line (tables, dates and
counts only: never a row, a key with a conversation id, or a phone number) and returns the counts.
Errors propagate, so the invocation fails and the function's Errors alarm fires; whatever was left
undone is merged by the next run.

Light on purpose: no FastAPI, DuckDB or Mem0 here, only the S3 adapter (boto3) and the row codec.
"""

import time
from collections import Counter
from typing import Any

from services.core.config import get_settings
from services.core.domain.errors import StorageUnavailable
from services.core.logging import get_logger
from services.core.ports import BlobStore
from services.core.wiring import build_analytics_store

from .compaction import compact_closed_days

logger = get_logger("callvault-analytics-compact")
_store: BlobStore | None = None


def _get_store() -> BlobStore:
    global _store  # built once per execution environment: settings and the S3 client are reused
    if _store is None:
        _store = build_analytics_store(get_settings())
    return _store


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = time.monotonic()
    summary = compact_closed_days(_get_store())
    dates = sorted({day.dt for day in summary.days})
    result = {
        "days_compacted": len(dates),
        "day_objects_written": sum(1 for day in summary.days if day.written),
        "objects_merged": summary.objects_merged,
    }
    # Counts, tables and dates only, bounded however large a backlog was merged.
    logger.info(
        "analytics compaction done",
        extra={
            **result,
            "partitions": len(summary.days),
            "partitions_by_table": dict(Counter(day.table for day in summary.days)),
            "oldest_dt": dates[0] if dates else None,
            "newest_dt": dates[-1] if dates else None,
            "conversations": sum(day.conversations for day in summary.days),
            "max_attempts": max((day.attempts for day in summary.days), default=0),
            "duration_ms": round((time.monotonic() - started) * 1000),
            "failed": [f"{table}/dt={dt}" for table, dt, _why in summary.failed[:20]],
        },
    )
    if summary.failed:  # the other days are merged; an error makes the alarm fire and Lambda retry
        table, dt, why = summary.failed[0]
        raise StorageUnavailable(
            f"{len(summary.failed)} analytics days were not merged (first {table}/dt={dt}: {why}); the next run "
            "retries them"
        )
    return result

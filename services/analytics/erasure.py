"""Erasure of calls from the analytics tables (``core.ports.CallerData``, told by ``services/privacy``).

A call's rows of one table live in its per-call object while its day is open, and in the day object
once the day is merged (``compaction``); a late write puts a per-call object beside the day object.
So, per table and per day the erased calls appear in: every version of their per-call objects is
purged, and the day object is rewritten without them (compare-and-swap, as a merge; it folds in the
other calls' per-call objects of that day exactly as the next merge would). Work follows the erased
calls and the days they appear in, never the size of the tables. The Athena tables read these very
objects; the analytics bucket keeps no versions (infra), so a rewritten day object has no history.
"""

import contextlib
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.core.domain.errors import NotFound
from services.core.domain.models import CallRecord
from services.core.ports import BlobStore

from .compaction import rewrite_day
from .rows import Row, UnreadableRows, decode
from .tables import TABLES, day_object_key, is_closed, object_key, partition_of


def _days(calls: Sequence[CallRecord]) -> dict[str, set[str]]:
    days: dict[str, set[str]] = {}
    for call in calls:
        # The day the writer chose: the start, else (a payload without one) the day the call was first
        # stored. A row without a transcript has no analytics rows yet (audio waiting for its call).
        start = call.started_at or (call.ingested_at if call.transcript_key is not None else None)
        if start:
            days.setdefault(partition_of(start), set()).add(call.conversation_id)
    return days


@dataclass
class AnalyticsErasure:
    store: BlobStore  # the analytics store
    name: str = "analytics"
    clock: Callable[[], float] = field(default=time.time)

    def find(self, phone: str | None, calls: Sequence[CallRecord]) -> int:
        """Per-call objects, plus the erased calls' entries in day objects, per table."""
        found = 0
        for dt, ids in _days(calls).items():
            for table in TABLES:
                found += sum(1 for cid in ids if self.store.head(object_key(table, dt, cid)) is not None)
                found += len(ids & self._ids_in_day(table, dt))
        return found

    def erase(self, phone: str | None, calls: Sequence[CallRecord]) -> int:
        erased = 0
        now = self.clock()
        for dt, ids in _days(calls).items():
            closed = is_closed(dt, now)
            for table in TABLES:
                for cid in sorted(ids):
                    erased += min(1, self.store.purge(object_key(table, dt, cid)))
                if closed or self.store.head(day_object_key(table, dt)) is not None:
                    # Written even when none of the calls is in it: a merge that read a per-call object
                    # purged above would still put its rows there, unless our write changes the day
                    # object's tag, so that the merge's compare-and-swap fails and it reads the day again.
                    # One read of the day object, inside the merge: decoding a busy day is the cost here.
                    dropped = _Dropped(ids)
                    rewrite_day(self.store, table, dt, dropped)
                    erased += dropped.count
        return erased

    def _ids_in_day(self, table: str, dt: str) -> set[str]:
        try:
            rows = decode(self.store.get_bytes(day_object_key(table, dt)))
        except (NotFound, UnreadableRows):
            return set()
        return {str(row.get("conversation_id")) for row in rows}


class _Dropped:
    """A merge change that removes the erased calls and remembers how many it found (last attempt);
    it always changes the day, so the day object is always rewritten (see ``erase``)."""

    def __init__(self, ids: set[str]) -> None:
        self.ids, self.count = ids, 0

    def __call__(self, day: dict[str, list[Row]]) -> bool:
        doomed = [cid for cid in day if cid in self.ids]
        for cid in doomed:
            del day[cid]
        self.count = len(doomed)
        return True


@dataclass
class DuckDbCacheErasure:
    """The local DuckDB cache holds copies of analytics rows (and their old pages): it is disposable,
    so erasure deletes it and the next query rebuilds it from the tables. So are the files DuckDB
    spills a large query to (``<cache>.tmp/``), which a killed query leaves behind."""

    path: Path
    name: str = "analytics_cache"  # a key of the JSON summaries (`forget --json`, DELETE /callers)

    @property
    def _spill(self) -> Path:
        return self.path.with_name(self.path.name + ".tmp")  # DuckDB's default temp_directory

    def find(self, phone: str | None, calls: Sequence[CallRecord]) -> int:
        return int(self.path.exists() or self._spill.exists())

    def erase(self, phone: str | None, calls: Sequence[CallRecord]) -> int:
        removed = 0
        for path in (self.path, self.path.with_name(self.path.name + ".wal")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        if self._spill.exists():
            shutil.rmtree(self._spill, ignore_errors=True)  # a live query's files may go meanwhile
            removed += 1
        return min(removed, 1)

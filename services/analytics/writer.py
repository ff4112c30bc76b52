"""Write a call's analytics rows next to the archive: one object per table for the call's day.

Called by the ingest use case before it answers 200, and by ``callvault backfill-analytics``.
While the call's day is open, every write is a whole-object overwrite under a key named by
``conversation_id``, so redeliveries, retries and backfills leave exactly one object (hence one
set of rows) per call per table. Once the day is closed, its calls live in one day object, and a
late write replaces the call's rows in it (``compaction.rewrite_day``), which keeps that promise.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.core.domain.errors import NotFound
from services.core.domain.models import CallRecord
from services.core.ports import BlobStore

from .compaction import Change, drop_calls, rewrite_day, upsert
from .rows import CallRows, Row, decode, encode, rows_for_call
from .tables import CALLS, CONTENT_TYPE, EVALUATIONS, MESSAGES, TABLES, is_closed, object_key, partition_of


@dataclass
class AnalyticsWriter:
    store: BlobStore  # the analytics store: its own bucket / folder, never the raw archive
    clock: Callable[[], float] = field(default=time.time)
    # Backfill writes per-call objects even into closed days and compacts each day once at the end,
    # instead of rewriting a day object once per call.
    defer_compaction: bool = False

    def write_call(
        self,
        data: dict[str, Any],
        record: CallRecord,
        *,
        has_audio: bool,
        previous_start: int | None = None,
        fallback_start: int | None = None,
    ) -> CallRows:
        """Write (overwrite) the call's three objects; ``calls`` last, so a complete call row means complete rows.

        ``previous_start`` is the start the index held before this event: if it put the call in
        another ``dt`` partition, the objects there are deleted so the call is never counted twice.
        A table with no rows for this call still gets its (empty) object, which replaces older rows.
        """
        now = self.clock()
        start = fallback_start if fallback_start is not None else int(now)
        rows = rows_for_call(data, record, has_audio=has_audio, fallback_start=start)
        by_table = rows.by_table()
        for table in (MESSAGES, EVALUATIONS, CALLS):
            self._put(table, rows.dt, rows.conversation_id, by_table[table], now)
        if previous_start and partition_of(previous_start) != rows.dt:
            old, conversation_id = partition_of(previous_start), rows.conversation_id
            for table in TABLES:
                self.store.delete(object_key(table, old, conversation_id))
                if is_closed(old, now) and not self.defer_compaction:
                    rewrite_day(self.store, table, old, drop_calls(lambda c: c == conversation_id))
        return rows

    def _put(self, table: str, dt: str, conversation_id: str, rows: list[Row], now: float) -> None:
        if is_closed(dt, now) and not self.defer_compaction:
            rewrite_day(self.store, table, dt, upsert(conversation_id, rows))
        else:
            self.store.put_bytes(object_key(table, dt, conversation_id), encode(table, rows), CONTENT_TYPE)

    def mark_audio(self, conversation_id: str, start: int | None) -> bool:
        """The audio arrived after the call row was written: set ``has_audio`` in that row.

        Returns False when there is no row to update (not written yet: the transcript's own write
        will see the audio; or archived before analytics existed: backfill writes it).
        """
        if not start:
            return False
        dt = partition_of(start)
        key = object_key(CALLS, dt, conversation_id)
        try:
            rows = decode(self.store.get_bytes(key))
        except NotFound:
            if not is_closed(dt, self.clock()):
                return False
            # Closed day: the row is in the day object; set the flag inside the merge, so a
            # concurrent rewrite of the same call is never undone by an older copy.
            changed: list[bool] = []
            rewrite_day(self.store, CALLS, dt, _set_audio(conversation_id, changed))
            return bool(changed) and changed[-1]  # the attempt that was swapped in is the last
        if not rows or all(row.get("has_audio") is True for row in rows):
            return False
        for row in rows:
            row["has_audio"] = True
        self.store.put_bytes(key, encode(CALLS, rows), CONTENT_TYPE)
        return True


def _set_audio(conversation_id: str, changed: list[bool]) -> Change:
    """Set ``has_audio`` on the call's row; appends to ``changed`` whether this attempt did."""

    def change(day: dict[str, list[Row]]) -> bool:
        rows = day.get(conversation_id, [])
        did = bool(rows) and not all(row.get("has_audio") is True for row in rows)
        for row in rows:
            row["has_audio"] = True
        changed.append(did)
        return did

    return change

"""Write a call's analytics rows next to the archive: three small objects, one per table.

Called by the ingest use case before it answers 200, and by ``callvault backfill-analytics``.
Every write is a whole-object overwrite under a key named by ``conversation_id``, so redeliveries,
retries and backfills leave exactly one object (hence one set of rows) per call per table.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.core.domain.errors import NotFound
from services.core.domain.models import CallRecord
from services.core.ports import BlobStore

from .rows import CallRows, decode, encode, rows_for_call
from .tables import CALLS, CONTENT_TYPE, EVALUATIONS, MESSAGES, TABLES, object_key, partition_of


@dataclass
class AnalyticsWriter:
    store: BlobStore  # the analytics store: its own bucket / folder, never the raw archive
    clock: Callable[[], float] = field(default=time.time)

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
        start = fallback_start if fallback_start is not None else int(self.clock())
        rows = rows_for_call(data, record, has_audio=has_audio, fallback_start=start)
        by_table = rows.by_table()
        for table in (MESSAGES, EVALUATIONS, CALLS):
            key = object_key(table, rows.dt, rows.conversation_id)
            self.store.put_bytes(key, encode(table, by_table[table]), CONTENT_TYPE)
        if previous_start and partition_of(previous_start) != rows.dt:
            for table in TABLES:
                self.store.delete(object_key(table, partition_of(previous_start), rows.conversation_id))
        return rows

    def mark_audio(self, conversation_id: str, start: int | None) -> bool:
        """The audio arrived after the call row was written: set ``has_audio`` in that row.

        Returns False when there is no row to update (not written yet: the transcript's own write
        will see the audio; or archived before analytics existed: backfill writes it).
        """
        if not start:
            return False
        key = object_key(CALLS, partition_of(start), conversation_id)
        try:
            rows = decode(self.store.get_bytes(key))
        except NotFound:
            return False
        if not rows or all(row.get("has_audio") is True for row in rows):
            return False
        for row in rows:
            row["has_audio"] = True
        self.store.put_bytes(key, encode(CALLS, rows), CONTENT_TYPE)
        return True

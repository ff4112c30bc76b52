"""Write a call's analytics rows next to the archive: one object per table for the call's day.

Called by the ingest use case before it answers 200, and by ``callvault backfill-analytics``.
Every write is a whole-object write under a key named by ``conversation_id``, conditional on the
call's version (``core.newest``), so redeliveries, retries and backfills leave exactly one object
(hence one set of rows) per call per table, holding the newest version. Closed days keep their
calls in one day object; a late write goes to a per-call object like any other, and the next merge
(``compaction``) folds it in, replacing the call's rows there.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.core.domain.errors import NotFound, StorageUnavailable
from services.core.domain.models import CallRecord
from services.core.newest import MAX_ATTEMPTS, write_newest
from services.core.ports import BlobStore

from .compaction import Change, drop_calls, rewrite_day
from .rows import CallRows, Row, decode, encode, rows_for_call
from .tables import (
    CALLS,
    CONTENT_TYPE,
    COPIED_OUT,
    EVALUATIONS,
    MESSAGES,
    TABLES,
    day_object_key,
    is_closed,
    object_key,
    partition_of,
)

PER_CALL_GZIP_LEVEL = 1  # on a 115-turn call: 0.56 ms vs 0.97 ms at 6, 8.1 KB vs 6.8 KB; day objects use 6


@dataclass
class AnalyticsWriter:
    store: BlobStore  # the analytics store: its own bucket / folder, never the raw archive
    clock: Callable[[], float] = field(default=time.time)
    # Backfill drops a call that moved to another day from the old day object once, at its end.
    defer_compaction: bool = False
    # Backfill rewrites rows of the version on file too (the schema may have changed), never a newer one's.
    rewrite_same: bool = False
    # Told the ``dt`` of a closed day that got a per-call object, so a compactor can merge it soon.
    on_late_write: Callable[[str], None] | None = None

    def write_call(
        self,
        data: dict[str, Any],
        record: CallRecord,
        *,
        has_audio: bool,
        fallback_start: int | None = None,
    ) -> CallRows:
        """Write the call's three per-call objects; ``calls`` last, so a complete call row means complete rows.

        With ``record.version``, each object is written only if the stored one is older (the write
        protocol; ``rewrite_same``: or of the same version); without it, overwritten. A closed day
        gets per-call objects too, folded into its day object by the next merge: a late call costs
        what a call of today costs.
        A table with no rows for this call still gets its (empty) object, which replaces older rows.
        """
        now = self.clock()
        start = fallback_start if fallback_start is not None else int(now)
        rows = rows_for_call(data, record, has_audio=has_audio, fallback_start=start)
        by_table = rows.by_table()
        for table in (MESSAGES, EVALUATIONS, CALLS):
            key = object_key(table, rows.dt, rows.conversation_id)
            body = (encode(table, by_table[table], level=PER_CALL_GZIP_LEVEL),)
            if record.version is None:
                self.store.put_bytes(key, body[0], CONTENT_TYPE)
            elif (
                write_newest(
                    self.store, key, body.__iter__, CONTENT_TYPE, record.version, replace_same=self.rewrite_same
                ).outcome
                == "older"
            ):
                return rows  # a newer version of the call wrote its rows meanwhile
        self._late(rows.dt, now)
        return rows

    def withdraw(self, conversation_id: str, start: int | None, version: str, newest_start: int | None) -> None:
        """A version that lost to a newer one removes its per-call objects from its day, unless the
        newest version's start is in that day too (conditional deletes: a newer write there stays)."""
        if not start or not newest_start or partition_of(newest_start) == partition_of(start):
            return
        self._delete_older(conversation_id, partition_of(start), version, inclusive=True)

    def take_back(self, conversation_id: str, start: int | None, version: str | None) -> None:
        """The call's rows expired (retention) while this version wrote them: delete the per-call
        objects this version (or an older one) wrote in its day, and the call's rows in that day's
        object, where a merge may have folded them meanwhile (an expired call keeps no rows at all).
        The day object is rewritten even without them, as an erasure does: a merge that read our
        per-call object before we deleted it then fails its compare-and-swap and reads again."""
        if not start or version is None:
            return
        dt = partition_of(start)
        self._delete_older(conversation_id, dt, version, inclusive=True)
        closed = is_closed(dt, self.clock())
        for table in TABLES:
            if closed or self.store.head(day_object_key(table, dt)) is not None:
                rewrite_day(self.store, table, dt, _always(drop_calls(lambda c: c == conversation_id)))

    def leave_day(
        self,
        conversation_id: str,
        old_start: int | None,
        new_start: int | None,
        version: str,
        *,
        day_object: bool = True,
    ) -> None:
        """The call's start moves to another day: delete its rows in the old day (per-call objects
        older than ``version``; in a closed day, with ``day_object``, its rows in the day object
        too), so the call is never counted twice. Called before the index forgets ``old_start``."""
        if not old_start or not new_start or partition_of(old_start) == partition_of(new_start):
            return
        old = partition_of(old_start)
        self._delete_older(conversation_id, old, version, inclusive=False)
        if day_object and is_closed(old, self.clock()) and not self.defer_compaction:
            for table in TABLES:
                # Only the rows merged there: a newer version that put the call back in this day
                # meanwhile wrote per-call objects, and they stay (folded in).
                rewrite_day(self.store, table, old, leaving=(conversation_id, version))

    def _delete_older(self, conversation_id: str, dt: str, version: str, *, inclusive: bool) -> None:
        for table in TABLES:
            key = object_key(table, dt, conversation_id)
            for _attempt in range(MAX_ATTEMPTS):  # mark_audio rewrites the same version under a new tag
                head = self.store.head(key)
                if head is None:
                    break
                older = head.version is None or head.version < version or (inclusive and head.version == version)
                if not older or self.store.delete_if(key, head.tag):
                    break

    def _late(self, dt: str, now: float) -> None:
        if self.on_late_write is not None and is_closed(dt, now):
            self.on_late_write(dt)

    def mark_audio(self, conversation_id: str, start: int | None, *, has_audio: bool = True) -> bool:
        """The audio arrived after the call row was written: set ``has_audio`` in that row (False:
        the audio expired under a retention rule, #13).

        Compare-and-swap on the per-call ``calls`` object, keeping its version, so a concurrent write
        of the call is never undone. In a closed day whose rows are merged already, the row is copied
        out of the day object into a per-call object (version ``COPIED_OUT``) that the next merge folds
        back in, or drops if the call has left the day meanwhile.
        Returns False when there is no row to update (not written yet: the transcript's own write
        will see the audio; or archived before analytics existed: backfill writes it).
        """
        if not start:
            return False
        dt = partition_of(start)
        key = object_key(CALLS, dt, conversation_id)
        for _attempt in range(MAX_ATTEMPTS):
            version: str | None
            head = self.store.head(key)
            if head is None:
                if not is_closed(dt, self.clock()):
                    return False
                rows = _day_rows(self.store, dt, conversation_id)
                tag, version = None, COPIED_OUT
            else:
                try:
                    blob, tag = self.store.get_tagged(key)
                except NotFound:
                    continue
                if tag != head.tag:
                    continue  # rewritten between the two reads: read again
                rows, version = decode(blob), head.version
            if not rows or all(row.get("has_audio") is has_audio for row in rows):
                return False
            for row in rows:
                row["has_audio"] = has_audio
            if self.store.put_if(key, encode(CALLS, rows), CONTENT_TYPE, tag, version=version):
                if head is None and not _day_rows(self.store, dt, conversation_id):
                    # Copied out of the day object, which no longer holds the call: a newer version
                    # moved it to another day (or an erasure took it) since we read. Take the copy back.
                    copied = self.store.head(key)
                    if copied is not None and copied.version == COPIED_OUT:
                        self.store.delete_if(key, copied.tag)
                    return False
                self._late(dt, self.clock())
                return True
        raise StorageUnavailable(f"the analytics row of a call kept changing during {MAX_ATTEMPTS} updates; retry")


def _always(change: Change) -> Change:
    """``change``, reported as a change even when it found nothing: the day object is rewritten."""

    def forced(day: dict[str, list[Row]]) -> bool:
        change(day)
        return True

    return forced


def _day_rows(store: BlobStore, dt: str, conversation_id: str) -> list[Row]:
    try:
        return [
            row
            for row in decode(store.get_bytes(day_object_key(CALLS, dt)))
            if row.get("conversation_id") == conversation_id
        ]
    except NotFound:
        return []

"""Closed days of the analytics tables kept as one object per table per day.

Why: a "calls per day" query over one object per call reads about 0.5 KB per call (each object
repeats every key name and pays its own gzip header) and opens one S3 object per call; the same rows
in one object per day are about 50 B per call, and 30 objects a month (measured:
docs/benchmarks-analytics.md, decision in docs/decisions.md).

The rule that keeps every call counted once: a call's rows of one table and one day live either in
its per-call object or in the day object, and where both exist the per-call object is newer and
wins. So a merge
  1. reads the day object with its tag, and every per-call object of the day with theirs;
  2. writes the merged rows with ``put_if`` (compare-and-swap on the tag): a concurrent merge of the
     same day makes it fail and start again, so no merge loses another's rows;
  3. deletes each per-call object with ``delete_if``, only if it is still the version it read: one
     rewritten meanwhile (a redelivery racing the merge) stays, and wins at the next merge.
Between 2 and 3 a call's rows are in both objects, the same rows or (a racing rewrite) newer ones in
the per-call object: so the tables people query let the per-call object's rows win
(``tables.current_rows_sql``), and nobody sees a call twice.

One kind of per-call object is not folded in: a ``calls`` row that late audio copied out of the day
object (version ``COPIED_OUT``) for a call the day object no longer holds. The call left the day (or
was erased) after the copy, and the copier died before taking its copy back; folding it in would
count the call in two days for good. The merge deletes it instead, so a crash there heals at the next
merge (``serve`` merges at start).

Writes to a closed day (a late redelivery, late audio, an import or sync of past calls, a backfill)
are per-call objects like any other: rewriting the day object per call made importing a day's calls
quadratic. The next merge folds them in (``callvault serve`` a few seconds after such a write, AWS
hourly); until then the per-call object's rows are the ones read, by the same rule.
"""

import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from aws_lambda_powertools import Logger

from services.core.domain.errors import CallVaultError, NotFound, StorageUnavailable
from services.core.logging import get_logger
from services.core.ports import BlobStore

from .rows import Row, UnreadableRows, decode, encode
from .tables import (
    CALLS,
    CONTENT_TYPE,
    COPIED_OUT,
    TABLES,
    day_object_key,
    is_closed,
    parse_object_key,
    partition_prefix,
)

if TYPE_CHECKING:
    from .writer import AnalyticsWriter

# Edits a day's rows, keyed by conversation id, in place; returns whether it changed anything.
Change = Callable[[dict[str, list[Row]]], bool]
Progress = Callable[[int, int], None]  # (done, total)

_T = TypeVar("_T")
_R = TypeVar("_R")

MAX_ATTEMPTS = 20
IO_WORKERS = 16  # S3 requests in flight while reading and deleting a day's per-call objects


@dataclass(frozen=True)
class DayMerge:
    table: str
    dt: str
    written: bool  # False: nothing to change, the day object was left as it was
    conversations: int  # in the day object after the merge
    merged: int  # per-call objects folded in (and deleted, unless rewritten meanwhile)
    attempts: int


@dataclass
class CompactionSummary:
    days: list[DayMerge] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (table, dt, why): tried next run

    @property
    def written(self) -> int:
        return sum(1 for day in self.days if day.written)

    @property
    def objects_merged(self) -> int:
        return sum(day.merged for day in self.days)


def upsert(conversation_id: str, rows: list[Row]) -> Change:
    """Set one call's rows (an empty list still replaces older rows: the call has none in this table)."""

    def change(day: dict[str, list[Row]]) -> bool:
        day[conversation_id] = rows
        return True

    return change


def drop_calls(unwanted: Callable[[str], bool]) -> Change:
    """Remove every call whose id ``unwanted`` accepts."""

    def change(day: dict[str, list[Row]]) -> bool:
        doomed = [conversation_id for conversation_id in day if unwanted(conversation_id)]
        for conversation_id in doomed:
            del day[conversation_id]
        return bool(doomed)

    return change


def _by_call(rows: Iterable[Row]) -> dict[str, list[Row]]:
    day: dict[str, list[Row]] = {}
    for row in rows:
        day.setdefault(str(row.get("conversation_id")), []).append(row)
    return day


def rewrite_day(
    store: BlobStore,
    table: str,
    dt: str,
    change: Change | None = None,
    *,
    leaving: tuple[str, str] | None = None,
) -> DayMerge:
    """Merge the day's per-call objects into its day object, apply ``change``, and swap it in.

    ``leaving``: (conversation id, version) of a call whose start left the day as of that version.
    Its rows in the day object go, and so do its per-call objects of that version or older (an
    audio copy included); a newer version's per-call object, written into this day after the caller
    looked, is folded in (``change`` would drop it too)."""
    day_key = day_object_key(table, dt)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        # Audio copies come out of a readable day object only: none to look for in a day never merged
        # (its first merge, the big one, pays nothing) or in one cut short (it says nothing of its calls).
        copies_possible = True
        try:
            blob, tag = store.get_tagged(day_key)
            day: dict[str, list[Row]] = _by_call(decode(blob))
        except NotFound:
            tag, day, copies_possible = None, {}, False
        except UnreadableRows:
            # A day object cut short (analytics are not fsynced) holds no rows anyone can read, and
            # would stop every report and every merge after it. Replaced by what the per-call objects
            # hold (the same tag condition); the calls it held are rebuilt by `callvault verify --repair`.
            day, copies_possible = {}, False
        dropped = leaving is not None and day.pop(leaving[0], None) is not None
        per_call = _read_per_call(store, table, dt)
        orphans = _orphan_copies(store, table, per_call, set(day)) if copies_possible else set()
        left_behind, unsettled = _left_behind(store, per_call, leaving) if leaving else (set(), set())
        read: dict[str, str] = {}  # per-call key -> the tag we read and will delete only if unchanged
        for key, conversation_id, found in per_call:
            if found is None or key in unsettled:
                continue  # merged and deleted by a concurrent merge since the listing, or rewritten
            blob, read[key] = found
            if key in orphans or key in left_behind:
                continue  # deleted below with the merged ones, never folded in
            try:
                day[conversation_id] = decode(blob)  # the per-call object is newer than the day object's rows
            except UnreadableRows:
                # Cut short by a power cut (analytics are not fsynced): merged as no rows, so the
                # compactor never sticks on it; `callvault verify --repair` rewrites the call's rows.
                day.pop(conversation_id, None)
        changed = (change(day) if change is not None else False) or dropped
        if not read and not changed:
            return DayMerge(table, dt, False, len(day), 0, attempt)
        rows = [row for conversation_id in sorted(day) for row in day[conversation_id]]
        if store.put_if(day_key, encode(table, rows), CONTENT_TYPE, tag):
            _delete_read(store, read)
            return DayMerge(table, dt, True, len(day), len(read), attempt)
        time.sleep(random.uniform(0, 0.01 * attempt))  # noqa: S311 - jitter, not security
    raise StorageUnavailable(
        f"the analytics day object {table}/dt={dt} kept changing during {MAX_ATTEMPTS} merges; run again"
    )


def _read_per_call(store: BlobStore, table: str, dt: str) -> list[tuple[str, str, tuple[bytes, str] | None]]:
    """Every per-call object of the partition with its tag (None: gone since the listing), read in
    parallel: on S3 each is a round trip, and a busy day has thousands."""
    listed = [
        (key, parsed[2]) for key in store.list_keys(partition_prefix(table, dt)) if (parsed := parse_object_key(key))
    ]

    def one(item: tuple[str, str]) -> tuple[str, str, tuple[bytes, str] | None]:
        try:
            return item[0], item[1], store.get_tagged(item[0])
        except NotFound:
            return item[0], item[1], None

    return _in_parallel(one, listed)


def _orphan_copies(
    store: BlobStore, table: str, per_call: list[tuple[str, str, tuple[bytes, str] | None]], in_day: set[str]
) -> set[str]:
    """The per-call keys that are ``mark_audio`` copies of a row the day object no longer holds: the
    call moved to another day or was erased after the copy, and the copier died before taking it
    back. Only ``calls`` rows are copied, and only out of the day object, so only per-call objects of
    calls absent from it are looked at (one head each, in parallel: a day of imported calls has many)."""
    if table != CALLS:
        return set()
    candidates = [(key, found[1]) for key, cid, found in per_call if found is not None and cid not in in_day]

    def orphan(item: tuple[str, str]) -> bool:
        head = store.head(item[0])  # the tag we read: a copy rewritten since is another write's
        return head is not None and head.tag == item[1] and head.version == COPIED_OUT

    return {key for (key, _tag), dropped in zip(candidates, _in_parallel(orphan, candidates), strict=True) if dropped}


def _left_behind(
    store: BlobStore, per_call: list[tuple[str, str, tuple[bytes, str] | None]], leaving: tuple[str, str]
) -> tuple[set[str], set[str]]:
    """The leaving call's per-call objects to delete (its version or older: one an older delivery, or
    audio copying the merged row, wrote after the caller cleaned), and those rewritten since we read
    them (left for the next merge). A newer version's is in neither: folded in."""
    conversation_id, version = leaving
    drop, unsettled = set(), set()
    for key, cid, found in per_call:
        if cid != conversation_id or found is None:
            continue
        head = store.head(key)
        if head is None or head.tag != found[1]:
            unsettled.add(key)
        elif head.version is None or head.version <= version:
            drop.add(key)
    return drop, unsettled


def _delete_read(store: BlobStore, read: dict[str, str]) -> None:
    _in_parallel(lambda item: store.delete_if(*item), list(read.items()))


def _in_parallel(work: Callable[[_T], _R], items: list[_T]) -> list[_R]:
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(IO_WORKERS, len(items))) as pool:
        return list(pool.map(work, items))


def open_partitions(store: BlobStore) -> dict[tuple[str, str], int]:
    """``(table, dt)`` -> how many per-call objects that partition holds."""
    counts: dict[tuple[str, str], int] = {}
    for table in TABLES:
        for key in store.list_keys(f"{table}/"):
            parsed = parse_object_key(key)
            if parsed is not None:
                counts[(parsed[0], parsed[1])] = counts.get((parsed[0], parsed[1]), 0) + 1
    return counts


def merge_days(store: BlobStore, days: Iterable[str]) -> None:
    """Fold the per-call objects a command wrote into closed days back into their day objects, every
    table: until then a call rewritten there costs a read of one more object. For the
    commands that run without `serve`'s compactor (`import`, `sync`, `verify --repair`)."""
    for dt in sorted(set(days)):
        for table in TABLES:
            rewrite_day(store, table, dt)


class LateDays:
    """The closed days a command wrote to, merged when it ends (``merge_days``): pass ``add`` as the
    Archiver's ``on_late_write``. For what runs without `serve`'s compactor: `import`, `sync`,
    `verify --repair` and the scheduled sync function."""

    def __init__(self) -> None:
        self._days: set[str] = set()

    def add(self, dt: str) -> None:
        self._days.add(dt)

    def merge(self, writer: "AnalyticsWriter | None") -> None:
        """Merge the days written so far, and forget them (a warm function's next run starts with none)."""
        days, self._days = self._days, set()
        if days and writer is not None:
            merge_days(writer.store, days)


def compact_closed_days(
    store: BlobStore,
    *,
    now: float | None = None,
    progress: Progress | None = None,
) -> CompactionSummary:
    """Merge every closed day that still has per-call objects. Idempotent; safe beside live ingest."""
    moment = time.time() if now is None else now
    pending = sorted(
        (partition for partition in open_partitions(store) if is_closed(partition[1], moment)),
        key=lambda partition: (partition[1], TABLES.index(partition[0])),
    )
    summary = CompactionSummary()
    for done, (table, dt) in enumerate(pending, start=1):
        try:
            summary.days.append(rewrite_day(store, table, dt))
        except CallVaultError as exc:  # one day that fails must not keep every later day unmerged
            summary.failed.append((table, dt, exc.message))
        if progress is not None:
            progress(done, len(pending))
    return summary


class CompactionThread:
    """``callvault serve``'s compactor: one run at start, then one every ``interval`` seconds, and one
    ``settle`` seconds after a late write to a closed day (``nudge``), so a redelivered or imported
    call of a merged day is folded in within seconds, not at the next hour.

    A failed run is logged and retried at the next tick; the server keeps serving either way.
    """

    def __init__(
        self, store: BlobStore, interval: float = 3600.0, log: Logger | None = None, settle: float = 5.0
    ) -> None:
        self.store = store
        self.interval = interval
        self.settle = settle  # late writes come in bursts (an import): merge once after the burst
        self.log = log or get_logger("callvault-analytics")
        self.runs = 0  # completed runs, for tests and status
        self._stop = threading.Event()
        self._nudged = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="callvault-analytics-compaction", daemon=True)

    def start(self) -> "CompactionThread":
        self._thread.start()
        return self

    def nudge(self, _dt: str = "") -> None:
        """A closed day got a per-call object: merge soon (cheap to call on every late write)."""
        self._nudged.set()

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the loop to end after the current merge; True when it has."""
        self._stop.set()
        self._nudged.set()
        if self._thread.is_alive():  # never started (a start-up that failed before it): nothing to wait for
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                summary = compact_closed_days(self.store)
            except Exception as exc:  # keep serving; the next tick tries again
                self.log.warning("analytics compaction failed", extra={"error": type(exc).__name__})
            else:
                self.runs += 1
                if summary.days:
                    self.log.info(
                        "analytics days compacted",
                        extra={"days": len(summary.days), "objects_merged": summary.objects_merged},
                    )
                if summary.failed:
                    self.log.warning(
                        "analytics days not compacted",
                        extra={"failed": [f"{table}/dt={dt}" for table, dt, _why in summary.failed[:20]]},
                    )
            if self._nudged.wait(self.interval) and not self._stop.is_set():
                self._stop.wait(self.settle)
            self._nudged.clear()

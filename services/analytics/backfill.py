"""``callvault backfill-analytics``: rebuild the analytics tables from the raw archive.

For calls archived before the tables existed, or after a change of their schema. Idempotent: every
call's objects are overwritten under the same keys (unless a webhook wrote a newer version's rows
since the archive object was read: the archive's version label rides with the rows), and objects
the run supersedes (the same call in another ``dt`` partition) are deleted afterwards, so each call
ends with exactly one row set.
With ``prune``, objects of calls no longer in the archive (erased) are deleted too.

Closed days (``tables.CLOSED_AFTER_DAYS``) end as one day object per table: the run writes per-call
objects everywhere, then merges each closed day once (a day object rewritten per call would cost a
whole day's rows per call), dropping from the day objects the calls that now belong to another day
and, with ``prune``, the erased ones. Until that last step a call whose start moved to another day
can be counted in both days (a call rewritten into its own closed day is counted once: the tables
let its per-call object win, ``tables.current_rows_sql``).

Calls whose analytics rows expired under a retention rule (the row's ``analytics_expired_at``, #13)
are not written again, and any rows of theirs still on file are deleted (an interrupted expiry ends).

Facts the archived document lacks come from the index: the event time (an initiation failure's
start), whether audio is archived, and when the call was first stored (the fallback start).
"""

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.core.domain import keys, payload, versions
from services.core.domain.errors import CallVaultError
from services.core.domain.models import CallRecord
from services.core.ports import BlobStore, CallIndex

from .compaction import drop_calls, rewrite_day
from .tables import TABLES, is_closed, object_key, parse_day_object_key, parse_object_key, partition_of
from .writer import AnalyticsWriter

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class BackfillSummary:
    calls: int = 0
    messages: int = 0
    evaluations: int = 0
    deleted: int = 0
    days_compacted: int = 0
    expired: int = 0  # calls left out: their analytics rows expired under a retention rule
    erased: int = 0  # calls erased (forget) while the run wrote them: their rows taken out again
    behind: int = 0  # calls whose index row does not name the archived version yet: left to its delivery
    failed: list[tuple[str, str]] = field(default_factory=list)  # (document name, reason); never a phone key


def archived_documents(archive: BlobStore) -> list[str]:
    """Keys of archived call documents (transcripts and initiation failures; not audio, not parked audio)."""
    return [
        key
        for key in archive.list_keys()
        if key.endswith(".json") and not key.startswith(keys.PENDING_AUDIO_PREFIX + "/")
    ]


def _name(key: str) -> str:
    """The document's file name (its conversation id): archive keys begin with a phone number."""
    return key.rsplit("/", 1)[-1]


def _is_initiation_failure(document: dict[str, Any], version: str | None) -> bool:
    """The event that stored the document, from its version label's kind (a signed payload may carry
    any field); by its fields only for documents archived before labels."""
    if version is not None:
        return version.partition(".")[0] == str(versions.FAILURE_KIND)
    return "failure_reason" in document and "transcript" not in document


def _record(document: dict[str, Any], row: CallRecord | None, default_region: str, version: str | None) -> CallRecord:
    event_at = row.event_at if row and row.event_at else None
    if _is_initiation_failure(document, version):
        return payload.call_from_initiation_failure(document, event_at, default_region)
    return payload.call_from_transcription(document, event_at, default_region)


def _row_is_behind(row: CallRecord | None, key: str, version: str | None) -> bool:
    """The row names no transcript here, or an older version. (No row: an archive rebuilt without its
    index, whose facts come from the document alone.)"""
    if row is None:
        return False
    if row.transcript_key != key:
        return True
    return version is not None and row.version is not None and versions.compare(version, row.version) == "newer"


def backfill_analytics(
    archive: BlobStore,
    index: CallIndex,
    analytics: BlobStore,
    *,
    default_region: str = "US",
    prune: bool = False,
    workers: int = 4,
    progress: Progress | None = None,
    compaction_progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
    is_erased: Callable[[str], bool] | None = None,
) -> BackfillSummary:
    """``is_erased``: the tombstones (``core.erased``), read after each call's write. An erasure marks
    them before it erases the tables, so a call it erased after we read it never keeps our rows."""
    # Listed before the archive: an object a live ingest writes during the run is never a candidate
    # for deletion, because it is not in this listing.
    before = {key for key in analytics.list_keys() if parse_object_key(key)}
    documents = archived_documents(archive)
    writer = AnalyticsWriter(analytics, clock, defer_compaction=True, rewrite_same=True)
    summary = BackfillSummary()
    written: set[str] = set()
    seen: dict[str, str] = {}  # conversation id -> the dt its rows were written to
    expired: set[str] = set()  # calls whose rows expired (retention): none written, any left deleted
    erased_now: set[str] = set()  # erased while we wrote them: treated as expired, counted apart

    def one(key: str) -> tuple[str, str, list[str], tuple[int, int]] | tuple[str] | None:
        # The version label before the bytes: the rows are at least as new as the label they carry,
        # so a newer version a webhook wrote meanwhile is never replaced by the older one read here.
        head = archive.head(key)
        document = orjson.loads(archive.get_bytes(key))
        if not isinstance(document, dict):
            raise CallVaultError("archived document is not a JSON object")
        conversation_id = keys.check_conversation_id(document.get("conversation_id"))
        row = index.get(conversation_id)
        if row is not None and row.analytics_expired_at is not None:
            return (conversation_id,)
        version = head.version if head is not None else None  # None: archived before versions
        if _row_is_behind(row, key, version):
            # A delivery died between the archive object and the row (unacknowledged: its retry, or
            # verify --repair, writes the rows). Ours would sit where the row does not say, so an
            # erasure before then, which finds the call's days from the row, would leave them.
            return None
        record = _record(document, row, default_region, version)
        record.version = version
        if row is not None:  # as ingest wrote them: the number the call is filed under
            record.phone = row.phone
        audio_key = row.audio_key if row else None
        has_audio = bool(audio_key and not audio_key.startswith(keys.PENDING_AUDIO_PREFIX + "/"))
        fallback = row.ingested_at if row and row.ingested_at else int(clock())
        rows = writer.write_call(document, record, has_audio=has_audio, fallback_start=fallback)
        if is_erased is not None and is_erased(conversation_id):
            for table in TABLES:
                analytics.purge(object_key(table, rows.dt, conversation_id))
            erased_now.add(conversation_id)
            return (conversation_id,)
        dt = rows.dt
        latest = index.get(conversation_id)
        if (
            record.version
            and latest is not None
            and latest.version
            and versions.compare(record.version, latest.version) == "older"
        ):
            # A webhook stored a newer version while we wrote (as ingest does): our rows leave a day it
            # moved the call out of, and the merge below keeps the call in the day the row says.
            writer.withdraw(conversation_id, rows.calls[0]["started_at"], record.version, latest.started_at)
            dt = partition_of(latest.started_at) if latest.started_at else dt
        new_keys = [object_key(table, dt, conversation_id) for table in TABLES]
        return conversation_id, dt, new_keys, (len(rows.messages), len(rows.evaluations))

    def guarded(key: str) -> tuple[str, str, list[str], tuple[int, int]] | tuple[str, str] | tuple[str] | None:
        try:
            return one(key)
        except orjson.JSONDecodeError:
            return _name(key), "not valid JSON"
        except CallVaultError as exc:
            return _name(key), exc.message

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for outcome in pool.map(guarded, documents):
            done += 1
            if outcome is None:
                summary.behind += 1
            elif len(outcome) == 1:
                expired.add(outcome[0])
                if outcome[0] in erased_now:
                    summary.erased += 1
                else:
                    summary.expired += 1
            elif len(outcome) == 2:
                summary.failed.append(outcome)
            else:
                conversation_id, dt, new_keys, (messages, evaluations) = outcome
                seen[conversation_id] = dt
                written.update(new_keys)
                summary.calls += 1
                summary.messages += messages
                summary.evaluations += evaluations
            if progress is not None:
                progress(done, len(documents))

    archived_ids = {_name(key).removesuffix(".json") for key in documents}

    def gone_from_archive(conversation_id: str) -> bool:
        # Not in the archive as listed, and no row now: a call a webhook stored since the listing
        # (a late one, an import into a closed day) has its row before its analytics rows.
        return conversation_id not in archived_ids and index.get(conversation_id) is None

    summary.deleted = _delete_superseded(
        analytics, before - written, set(seen) | expired, archived_ids if prune else None
    )
    summary.days_compacted = _compact_closed_days(
        analytics, seen, gone_from_archive if prune else None, clock(), compaction_progress, expired
    )
    return summary


def _compact_closed_days(
    analytics: BlobStore,
    seen: dict[str, str],
    erased: Callable[[str], bool] | None,
    now: float,
    progress: Progress | None,
    expired: frozenset[str] | set[str] = frozenset(),
) -> int:
    """Merge every closed day that has per-call objects or a day object, dropping from it the calls
    the run put in another day, the calls whose rows ``expired`` and (``erased`` given, when pruning)
    the calls it says are gone from the archive."""
    days: set[tuple[str, str]] = set()
    for key in analytics.list_keys():
        parsed = parse_object_key(key)
        partition = (parsed[0], parsed[1]) if parsed else parse_day_object_key(key)
        if partition is not None and is_closed(partition[1], now):
            days.add(partition)
    pending = sorted(days, key=lambda partition: (partition[1], TABLES.index(partition[0])))
    for done, (table, dt) in enumerate(pending, start=1):

        def unwanted(conversation_id: str, dt: str = dt) -> bool:
            if conversation_id in expired:
                return True
            if conversation_id in seen:
                return seen[conversation_id] != dt
            return erased is not None and erased(conversation_id)

        rewrite_day(analytics, table, dt, drop_calls(unwanted))
        if progress is not None:
            progress(done, len(pending))
    return len(pending)


def _delete_superseded(
    analytics: BlobStore, candidates: Iterable[str], seen: set[str], archived_ids: set[str] | None
) -> int:
    """Delete a rewritten call's objects in other partitions (always stale) and, when pruning
    (``archived_ids`` given), objects of calls absent from the archive -- never of a call that is
    archived but failed to read this time."""
    deleted = 0
    for key in sorted(candidates):
        parsed = parse_object_key(key)
        if parsed is None:
            continue
        if parsed[2] in seen or (archived_ids is not None and parsed[2] not in archived_ids):
            analytics.delete(key)
            deleted += 1
    return deleted

"""``callvault verify``: check the write protocol's promises over a whole archive, and repair what is safe.

The promises (docs/decisions.md, "write protocol"), checked for every call:
  * every key a row names exists, and the archive object holds the version the row describes;
  * every archived object has a row that names it (parked audio: a row that points at it);
  * a row's phone is the phone of the folder its objects live in;
  * parked audio is moved once its call is placed, and waits no longer than a day;
  * the analytics ``calls`` row says what the index says (phone, outcome, start, turns, audio);
  * no analytics rows for a call the index does not have, nor for a call whose rows expired under a
    retention rule (``analytics_expired_at``; such a call is never reported for lacking them).
Repairs replay the protocol itself from what the archive holds (``Archiver``), so they are idempotent
and race-free beside live ingest; what cannot be rebuilt from the archive (a lost object) is reported.
Findings name a conversation id and a masked phone only: keys hold phone numbers.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from services.analytics.rows import UnreadableRows, decode
from services.analytics.tables import CALLS, TABLES, is_closed, parse_day_object_key, parse_object_key, partition_of
from services.core.domain import keys, payload, versions
from services.core.domain.errors import CallVaultError, NotFound
from services.core.domain.models import AudioFacts, CallRecord, WebhookEvent
from services.core.domain.phone import mask
from services.core.ports import BlobStore, CallIndex

from .service import Archiver

Progress = Callable[[int, int], None]
DAY = 86_400
# The analytics calls-row columns that repeat index fields, and the index field each must equal.
_ANALYTICS_FIELDS = {
    "phone": "phone",
    "status": "status",
    "call_successful": "call_successful",
    "started_at": "started_at",
    "message_count": "message_count",
}


@dataclass(frozen=True)
class Finding:
    kind: str
    conversation_id: str | None
    detail: str
    repairable: bool
    repaired: bool = False


@dataclass
class VerifyReport:
    rows: int = 0
    objects: int = 0
    analytics_calls: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def unresolved(self) -> list[Finding]:
        return [finding for finding in self.findings if not finding.repaired]

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.kind] = counts.get(finding.kind, 0) + 1
        return {
            "rows": self.rows,
            "objects": self.objects,
            "analytics_calls": self.analytics_calls,
            "findings": len(self.findings),
            "repaired": sum(1 for finding in self.findings if finding.repaired),
            "unresolved": len(self.unresolved),
            "by_kind": counts,
            "items": [asdict(finding) for finding in self.findings],
        }


@dataclass
class ArchiveVerifier:
    archiver: Archiver  # its blobs, index and analytics writer are the stores checked
    clock: Callable[[], float] = time.time
    parked_grace: int = DAY  # parked audio younger than this is normal (its transcript is on its way)
    placement_grace: int = DAY  # a placement row with no objects this old was left by a crash

    @property
    def blobs(self) -> BlobStore:
        return self.archiver.blobs

    @property
    def index(self) -> CallIndex:
        return self.archiver.index

    def run(self, *, repair: bool = False, progress: Progress | None = None) -> VerifyReport:
        report = VerifyReport()
        rows = {row.conversation_id: row for row in self.index.scan()}
        report.rows = len(rows)
        archive_keys = list(self.blobs.list_keys())
        report.objects = len(archive_keys)
        total = len(rows) + len(archive_keys)
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            if progress is not None and (done % 50 == 0 or done == total):
                progress(done, total)

        for row in rows.values():
            report.findings.extend(self._check_row(row, repair))
            tick()
        for key in archive_keys:
            found = self._check_object(key, rows, repair)
            if found is not None:
                report.findings.append(found)
            tick()
        if self.archiver.analytics is not None:
            rows = {row.conversation_id: row for row in self.index.scan()}  # after the repairs above
            report.findings.extend(self._check_analytics(rows, report, repair))
        return report

    # -- the index against the archive ---------------------------------------------------------------

    def _check_row(self, row: CallRecord, repair: bool) -> Iterator[Finding]:
        cid, now = row.conversation_id, self.clock()
        if (
            row.archive_prefix is not None
            and row.phone is not None
            and keys.phone_prefix(row.phone) != row.archive_prefix
        ):
            yield Finding("phone_differs_from_folder", cid, "the row's phone is not its folder's", False)
        if row.transcript_key is not None:
            yield from self._check_transcript(row, repair)
        elif (
            row.archive_prefix is not None
            and row.audio_key is None
            and (row.updated_at or 0) < now - self.placement_grace
        ):
            repaired = repair and self._delete_empty_placement(row)
            yield Finding("placement_without_objects", cid, "a crash left a row that names nothing", True, repaired)
        if row.audio_key is not None:
            yield from self._check_audio(row, repair)
        elif row.expects_audio and (row.updated_at or 0) < now - self.parked_grace:
            # Audio webhooks are never retried: the audio fetch (or a sync) should have brought it.
            detail = (
                "the transcript says the call has audio; none came in a day: run callvault sync "
                "(it lists the call under audio gone upstream if ElevenLabs has none to fetch)"
            )
            yield Finding("audio_missing", cid, detail, False)

    def _check_transcript(self, row: CallRecord, repair: bool) -> Iterator[Finding]:
        cid = row.conversation_id
        assert row.transcript_key is not None
        head = self.blobs.head(row.transcript_key)
        if head is None:
            gone = "the transcript is gone: `callvault sync` fetches it again, or import a saved copy of its webhook"
            yield Finding("row_names_missing_object", cid, gone, False)
            return
        if row.version is not None and head.version != row.version:
            archive_newer = head.version is not None and versions.compare(head.version, row.version) == "newer"
            detail = "the archive holds a newer version than the row" if archive_newer else "versions differ"
            repaired = repair and archive_newer and self._replay(row.transcript_key, head.version)
            yield Finding("archive_and_row_differ", cid, detail, archive_newer, repaired)
        elif row.started_at is None:
            # Stored before a call without any time started when first stored: every time range
            # (listings, retention) leaves it out. A replay of the same version gives it that start.
            detail = "the call has no start time, so listings and retention leave it out"
            repaired = repair and self._replay(row.transcript_key, head.version)
            yield Finding("row_without_start", cid, detail, True, repaired)

    def _check_audio(self, row: CallRecord, repair: bool) -> Iterator[Finding]:
        cid = row.conversation_id
        assert row.audio_key is not None
        head = self.blobs.head(row.audio_key)
        parked = row.audio_key.startswith(keys.PENDING_AUDIO_PREFIX + "/")
        if head is None:
            final = keys.audio_key(row.archive_prefix, cid) if row.archive_prefix else None
            placed = final is not None and self.blobs.head(final) is not None
            repaired = repair and placed and final is not None and self._place(row)
            yield Finding("row_names_missing_object", cid, "the row's audio key has no object", placed, repaired)
            return
        if parked and row.archive_prefix is not None:
            repaired = repair and self._place(row)
            yield Finding("parked_audio_not_placed", cid, "the call is placed but its audio is parked", True, repaired)
        elif parked and (row.updated_at or 0) < self.clock() - self.parked_grace:
            detail = "audio waits for a transcript for more than a day; run callvault sync or import it"
            yield Finding("parked_audio_stale", cid, detail, False)

    def _check_object(self, key: str, rows: dict[str, CallRecord], repair: bool) -> Finding | None:
        name = key.rsplit("/", 1)[-1]
        conversation_id, _, suffix = name.partition(".")
        row = rows.get(conversation_id)
        stale = row is None or key not in (row.transcript_key, row.audio_key)
        if repair and stale and keys.CONVERSATION_ID.fullmatch(conversation_id):
            # A repair earlier in this run (its transcript replayed) may have written the row since the scan.
            row = self.index.get(conversation_id) or row
        if suffix == "mp3" and row is not None and row.audio_version == versions.AUDIO_EXPIRED:
            if repair:
                self.blobs.purge(key)
            return Finding("expired_audio_present", conversation_id, "audio a retention rule removed", True, repair)
        if key.startswith(keys.PENDING_AUDIO_PREFIX + "/"):
            if row is not None and row.audio_key == key:
                return None  # checked with its row
            if row is not None and row.archive_prefix is not None:
                repaired = repair and self._place(row)
                return Finding(
                    "parked_audio_not_placed", conversation_id, "parked audio of a placed call", True, repaired
                )
            repaired = repair and self._record_parked(conversation_id, key)
            return Finding("object_without_row", conversation_id, "parked audio no row points at", True, repaired)
        if suffix == "json":
            if row is not None and row.transcript_key == key:
                return None
            head = self.blobs.head(key)
            repaired = repair and head is not None and self._replay(key, head.version)
            return Finding("object_without_row", conversation_id, "a transcript no row names", True, repaired)
        if suffix == "mp3":
            if row is not None and row.audio_key == key:
                return None
            placed_here = (
                row is not None
                and row.archive_prefix is not None
                and key == keys.audio_key(row.archive_prefix, conversation_id)
            )
            repaired = repair and placed_here and row is not None and self._place(row)
            return Finding("object_without_row", conversation_id, "audio no row names", placed_here, repaired)
        detail = f"an object CallVault does not write: {_masked_key(key)}; move it out of the archive"
        return Finding("unknown_object", None, detail, False)

    # -- the analytics tables against the index ------------------------------------------------------

    def _check_analytics(self, rows: dict[str, CallRecord], report: VerifyReport, repair: bool) -> Iterator[Finding]:
        writer = self.archiver.analytics
        assert writer is not None
        yield from self._check_readable(rows, repair)
        found = _analytics_calls(writer.store)
        report.analytics_calls = len(found)
        for cid, row in rows.items():
            if row.transcript_key is None:
                continue
            days = found.pop(cid, {})
            if row.analytics_expired_at is not None:  # expired under a retention rule (#13): none is due
                if days:  # a write that raced the expiry: finish it, never rebuild
                    repaired = repair and all(self._drop_analytics(cid, dt) for dt in days)
                    detail = "analytics rows of a call whose rows expired (retention)"
                    yield Finding("analytics_expired_present", cid, detail, True, repaired)
                continue
            expected = partition_of(row.started_at) if row.started_at else None
            elsewhere = [dt for dt in days if expected is not None and dt != expected]
            if elsewhere and expected in days:
                # Two versions raced with different start days: each wrote its own day (the
                # older one after the newer one had cleaned up). The row's day is the right one.
                repaired = repair and all(self._drop_analytics(cid, dt) for dt in elsewhere)
                yield Finding("analytics_in_two_days", cid, "the call is counted in more than one day", True, repaired)
                days = {expected: days[expected]}
            problem = _disagreement(row, days, self.blobs)
            if problem is None:
                continue
            repaired = repair and self._rewrite_analytics(row, stale_days=elsewhere)
            yield Finding("analytics_differs_from_index", cid, problem, True, repaired)
        for cid, days in found.items():
            repaired = repair and all(self._drop_analytics(cid, dt) for dt in days)
            yield Finding(
                "analytics_without_row", cid, "analytics rows of a call the index does not have", True, repaired
            )

    def _check_readable(self, rows: dict[str, CallRecord], repair: bool) -> Iterator[Finding]:
        """Every analytics object of every table decodes (a power cut can cut one short: analytics are
        not fsynced). Repair rewrites what it held from the archive: a per-call object's call, or a day
        object's calls (the day object is replaced by what its per-call objects hold, then those calls'
        rows are rewritten, to be merged in again)."""
        from services.analytics.compaction import merge_days, rewrite_day

        writer = self.archiver.analytics
        assert writer is not None
        for table in TABLES:
            for key in writer.store.list_keys(f"{table}/"):
                day, per_call = parse_day_object_key(key), parse_object_key(key)
                if day is None and per_call is None:
                    continue
                try:
                    decode(writer.store.get_bytes(key))
                    continue
                except NotFound:
                    continue  # merged or dropped since the listing
                except UnreadableRows:
                    pass
                if per_call is not None:
                    cid, dt = per_call[2], per_call[1]
                    row = rows.get(cid)
                    repaired = repair and (
                        self._rewrite_analytics(row, stale_days=[])
                        if row is not None
                        else self._drop_analytics(cid, dt)
                    )
                    yield Finding("analytics_unreadable", cid, f"an unreadable {table} object", True, repaired)
                    continue
                assert day is not None
                dt = day[1]
                repaired = False
                if repair:
                    rewrite_day(writer.store, table, dt)  # replaces the unreadable day object
                    calls = [r for r in rows.values() if r.started_at and partition_of(r.started_at) == dt]
                    repaired = all([self._rewrite_analytics(r, stale_days=[]) for r in calls])
                    merge_days(writer.store, [dt])  # fold them in at once: the other tables' day rows are replaced
                detail = f"the {table} day object of {dt} is unreadable: its calls' rows are rebuilt from the archive"
                yield Finding("analytics_unreadable", None, detail, True, repaired)

    # -- repairs: the protocol replayed from the archive ---------------------------------------------

    def _replay(self, key: str, version: str | None) -> bool:
        """Archive the stored document again, as the event that wrote it: completes row and analytics."""
        try:
            document = orjson.loads(self.blobs.get_bytes(key))
        except (NotFound, orjson.JSONDecodeError):
            return False
        if not isinstance(document, dict):
            return False
        event_type, event_at = _event_of(document, version)
        try:
            result = self.archiver.archive(WebhookEvent(event_type, event_at, document))
        except CallVaultError:
            return False
        return result.outcome == "stored"

    def _place(self, row: CallRecord) -> bool:
        if row.archive_prefix is None:
            return False
        return self.archiver.place_audio(row.conversation_id, row.archive_prefix, None)

    def _record_parked(self, conversation_id: str, key: str) -> bool:
        head = self.blobs.head(key)
        if head is None:
            return False
        audio = AudioFacts(key, head.size, head.version)
        if self.index.save_audio(conversation_id, None, audio, int(self.clock()), only_if_unplaced=True):
            return True
        row = self.index.get(conversation_id)
        return row is not None and self._place(row)

    def _delete_empty_placement(self, row: CallRecord) -> bool:
        current = self.index.get(row.conversation_id)
        if current is None or current.transcript_key is not None or current.audio_key is not None:
            return False  # an event completed it meanwhile
        self.index.delete(row.conversation_id)
        return True

    def _rewrite_analytics(self, row: CallRecord, stale_days: list[str]) -> bool:
        writer = self.archiver.analytics
        if writer is None or row.transcript_key is None:
            return False
        for dt in stale_days:
            self._drop_analytics(row.conversation_id, dt)
        try:
            document = orjson.loads(self.blobs.get_bytes(row.transcript_key))
        except (NotFound, orjson.JSONDecodeError):
            return False
        if not isinstance(document, dict):
            return False
        event_type, event_at = _event_of(document, row.version)
        try:
            if event_type == "call_initiation_failure":
                record = payload.call_from_initiation_failure(document, event_at, self.archiver.default_region)
            else:
                record = payload.call_from_transcription(document, event_at, self.archiver.default_region)
        except CallVaultError:
            return False  # a document stored before today's checks that no store can hold: reported
        record.phone, record.started_at = row.phone, row.started_at or record.started_at
        record.version = None  # an unconditional rewrite: the rows on file are the wrong ones
        has_audio = _audio_in_place(row, self.blobs)
        writer.write_call(document, record, has_audio=has_audio, fallback_start=row.ingested_at)
        return True

    def _drop_analytics(self, conversation_id: str, dt: str) -> bool:
        from services.analytics.compaction import drop_calls, rewrite_day
        from services.analytics.tables import object_key

        writer = self.archiver.analytics
        if writer is None:
            return False
        for table in TABLES:
            writer.store.delete(object_key(table, dt, conversation_id))
            if is_closed(dt, self.clock()):
                rewrite_day(writer.store, table, dt, drop_calls(lambda c: c == conversation_id))
        return True


def _older(row: CallRecord, cutoff: float) -> bool:
    return (row.updated_at or 0) < cutoff


def _masked_key(key: str) -> str:
    """A key as a finding may name it: the phone number its folder is named by masked, the rest kept."""
    folder, slash, rest = key.partition("/")
    if slash and folder.isdigit():
        folder = mask(folder) or folder
    return f"{folder}{slash}{rest}"


def _event_of(document: dict[str, Any], version: str | None) -> tuple[str, int | None]:
    """The event type and timestamp that produced a stored document (its version label holds both)."""
    if version is not None:
        kind, _, rest = version.partition(".")
        timestamp = rest.partition(".")[0]
        if timestamp.isdigit():
            failure = kind == str(versions.FAILURE_KIND)
            return ("call_initiation_failure" if failure else "post_call_transcription"), int(timestamp) or None
    failure = "failure_reason" in document and "transcript" not in document
    return ("call_initiation_failure" if failure else "post_call_transcription"), None


def _audio_in_place(row: CallRecord, blobs: BlobStore) -> bool:
    if row.archive_prefix is None or row.audio_version == versions.AUDIO_EXPIRED:
        return False
    return blobs.head(keys.audio_key(row.archive_prefix, row.conversation_id)) is not None


def _analytics_calls(store: BlobStore) -> dict[str, dict[str, dict[str, Any]]]:
    """conversation id -> dt -> its calls row there; per-call objects win over day objects (as a merge does)."""
    from_days: dict[str, dict[str, dict[str, Any]]] = {}
    per_call: dict[str, dict[str, dict[str, Any]]] = {}
    for key in store.list_keys(f"{CALLS}/"):
        day = parse_day_object_key(key)
        parsed = parse_object_key(key)
        if day is None and parsed is None:
            continue
        try:
            rows = decode(store.get_bytes(key))
        except (NotFound, UnreadableRows):
            continue  # an unreadable object holds no rows: its calls show up as missing, and are rewritten
        target, dt = (from_days, day[1]) if day is not None else (per_call, parsed[1] if parsed else "")
        for analytics_row in rows:
            target.setdefault(str(analytics_row.get("conversation_id")), {})[dt] = analytics_row
    merged = from_days
    for cid, days in per_call.items():
        merged.setdefault(cid, {}).update(days)
    return merged


def _disagreement(row: CallRecord, days: dict[str, dict[str, Any]], blobs: BlobStore) -> str | None:
    if not days:
        return "no analytics row"
    if len(days) > 1:
        return "analytics rows in more than one day"
    ((dt, analytics_row),) = days.items()
    if row.started_at and partition_of(row.started_at) != dt:
        return "analytics row in another day"
    for column, field_name in _ANALYTICS_FIELDS.items():
        expected = getattr(row, field_name)
        if expected is not None and analytics_row.get(column) != expected:
            return f"{column} differs"
    if bool(analytics_row.get("has_audio")) != _audio_in_place(row, blobs):
        return "has_audio differs"
    return None

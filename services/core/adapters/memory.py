"""In-memory adapters: fakes for unit tests, held to the same contract suites as the real ones."""

import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

from ..domain.audit import AuditEntry, Detail, chained
from ..domain.errors import InvalidCursor, NotFound
from ..domain.holds import Hold
from ..domain.models import (
    MEMORY_EXPIRED,
    MERGED_CALL_FIELDS,
    REPLACED_CALL_FIELDS,
    AudioFacts,
    CallPage,
    CallQuery,
    CallRecord,
)
from ..domain.versions import AUDIO_EXPIRED
from ..ports import ObjectHead


class MemoryBlobStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._writes = itertools.count(1)
        self._tags: dict[str, str] = {}  # key -> tag of its current object (tests may fill ``objects`` directly)
        self.versions: dict[str, str] = {}  # key -> version label of its current object, if written with one

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        with self._lock:
            self._store(key, data)

    def _store(self, key: str, data: bytes, version: str | None = None) -> None:
        self.objects[key] = bytes(data)
        self._tags[key] = f"w{next(self._writes)}"
        if version is None:
            self.versions.pop(key, None)
        else:
            self.versions[key] = version

    def _tag(self, key: str) -> str | None:
        if key not in self.objects:
            return None
        return self._tags.get(key, "w0")

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str) -> int:
        data = b"".join(chunks)  # raises before anything is stored
        self.put_bytes(key, data, content_type)
        return len(data)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise NotFound("no archived object under this key") from None

    def size(self, key: str) -> int | None:
        data = self.objects.get(key)
        return None if data is None else len(data)

    def move(self, source: str, destination: str) -> bool:
        with self._lock:
            data = self.objects.pop(source, None)
            if data is None:
                return False
            self._tags.pop(source, None)
            self._store(destination, data, self.versions.pop(source, None))
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self.objects.pop(key, None)
            self._tags.pop(key, None)
            self.versions.pop(key, None)

    def purge(self, key: str) -> int:
        with self._lock:  # one version only: this store keeps no history
            found = key in self.objects
        self.delete(key)
        return int(found)

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        return iter(sorted(k for k in list(self.objects) if k.startswith(prefix)))

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        with self._lock:
            tag = self._tag(key)
            if tag is None:
                raise NotFound("no archived object under this key")
            return self.objects[key], tag

    def put_if(self, key: str, data: bytes, content_type: str, tag: str | None, *, version: str | None = None) -> bool:
        with self._lock:
            if self._tag(key) != tag:
                return False
            self._store(key, data, version)
            return True

    def put_stream_if(
        self, key: str, chunks: Iterable[bytes], content_type: str, tag: str | None, *, version: str | None = None
    ) -> int | None:
        data = b"".join(chunks)  # raises before anything is stored
        return len(data) if self.put_if(key, data, content_type, tag, version=version) else None

    def head(self, key: str) -> ObjectHead | None:
        with self._lock:
            tag = self._tag(key)
            if tag is None:
                return None
            return ObjectHead(tag, len(self.objects[key]), self.versions.get(key))

    def copy_if(self, source: str, destination: str, tag: str | None) -> bool:
        with self._lock:
            data = self.objects.get(source)
            if data is None or self._tag(destination) != tag:
                return False
            self._store(destination, data, self.versions.get(source))
            return True

    def delete_if(self, key: str, tag: str) -> bool:
        with self._lock:
            if self._tag(key) != tag:
                return False
            del self.objects[key]
            self._tags.pop(key, None)
            self.versions.pop(key, None)
            return True


class MemoryCallIndex:
    def __init__(self) -> None:
        self.rows: dict[str, CallRecord] = {}
        self._lock = threading.Lock()

    def get(self, conversation_id: str) -> CallRecord | None:
        row = self.rows.get(conversation_id)
        return replace(row) if row else None

    def save_call(
        self, record: CallRecord, now: int, *, expect_version: bool = False, expected_version: str | None = None
    ) -> bool:
        with self._lock:
            row = self.rows.get(record.conversation_id)
            if expect_version and (row.version if row is not None else None) != expected_version:
                return False
            if row is None:
                row = CallRecord(record.conversation_id, ingested_at=now)
            elif _is_newer(row, record):
                return False
            elif record.memory_status is not None and row.memory_status == MEMORY_EXPIRED:
                return False  # expired is final (#13): the caller saves again without a status
            for name in REPLACED_CALL_FIELDS:
                setattr(row, name, getattr(record, name))
            for name in MERGED_CALL_FIELDS:
                value = getattr(record, name)
                if value is not None:
                    setattr(row, name, value)
            row.updated_at = now
            self.rows[record.conversation_id] = row
            return True

    def save_audio(
        self,
        conversation_id: str,
        agent_id: str | None,
        audio: AudioFacts,
        now: int,
        *,
        only_if_unplaced: bool,
    ) -> bool:
        with self._lock:
            row = self.rows.get(conversation_id) or CallRecord(conversation_id, ingested_at=now)
            if only_if_unplaced and row.archive_prefix is not None:
                return False
            if row.audio_version is not None and (audio.version is None or row.audio_version > audio.version):
                return False
            row.agent_id = row.agent_id or agent_id
            row.has_audio, row.audio_key, row.audio_bytes = True, audio.key, audio.size
            row.audio_version = audio.version or row.audio_version
            row.updated_at = now
            self.rows[conversation_id] = row
            return True

    def set_memory_status(self, conversation_id: str, status: str, now: int) -> None:
        with self._lock:
            row = self.rows.get(conversation_id)
            if row is not None and row.memory_status != MEMORY_EXPIRED:  # final, as in the real indexes
                row.memory_status, row.memory_updated_at = status, now

    def claim_place(self, conversation_id: str, archive_prefix: str, phone: str | None, now: int) -> CallRecord:
        with self._lock:
            row = self.rows.get(conversation_id) or CallRecord(conversation_id, ingested_at=now, updated_at=now)
            if row.archive_prefix is None:
                row.archive_prefix, row.phone, row.updated_at = archive_prefix, phone, now
            self.rows[conversation_id] = row
            return replace(row)

    def scan(self) -> Iterator[CallRecord]:
        return iter([replace(row) for row in list(self.rows.values())])

    def awaiting_audio(self, updated_before: int, limit: int = 100) -> list[CallRecord]:
        due = [
            replace(r)
            for r in list(self.rows.values())
            if r.expects_audio and r.audio_key is None and (r.updated_at or 0) < updated_before
        ]
        return sorted(due, key=lambda r: (r.updated_at or 0, r.conversation_id))[:limit]

    def delete(self, conversation_id: str) -> None:
        with self._lock:
            self.rows.pop(conversation_id, None)

    def scrub_deleted(self) -> bool:
        return True  # nothing kept outside the rows

    def drop_audio(self, conversation_id: str, now: int) -> bool:
        with self._lock:
            row = self.rows.get(conversation_id)
            if row is None:
                return False
            row.has_audio, row.audio_key, row.audio_bytes = False, None, None
            row.audio_version, row.expects_audio, row.updated_at = AUDIO_EXPIRED, False, now
            return True

    def expire_analytics(self, conversation_id: str, now: int) -> bool:
        with self._lock:
            row = self.rows.get(conversation_id)
            if row is None:
                return False
            if row.analytics_expired_at is None:
                row.analytics_expired_at, row.updated_at = now, now
            return True

    def list_reported(self, phone: str) -> list[CallRecord]:
        return [replace(r) for r in list(self.rows.values()) if r.reported_phone == phone]

    def list_calls(self, query: CallQuery) -> CallPage:
        rows = [
            r
            for r in list(self.rows.values())
            if r.started_at is not None
            and (query.phone is None or r.phone == query.phone)
            and (query.agent_id is None or r.agent_id == query.agent_id)
            and (query.status is None or r.status == query.status)
            and (query.call_successful is None or r.call_successful == query.call_successful)
            and (query.since is None or r.started_at >= query.since)
            and (query.until is None or r.started_at < query.until)
        ]
        rows.sort(key=lambda r: (r.started_at, r.conversation_id), reverse=True)
        if query.after is not None:
            started_at, conversation_id = query.after.get("started_at"), query.after.get("conversation_id")
            if not isinstance(started_at, int) or isinstance(started_at, bool) or not isinstance(conversation_id, str):
                raise InvalidCursor("cursor does not belong to this index")
            rows = [r for r in rows if (r.started_at or 0, r.conversation_id) < (started_at, conversation_id)]
        page = [replace(r) for r in rows[: query.limit]]
        after = None
        if len(rows) > query.limit:
            after = {"started_at": page[-1].started_at, "conversation_id": page[-1].conversation_id}
        return CallPage(page, after)


def _is_newer(stored: CallRecord, incoming: CallRecord) -> bool:
    """The stored call-level event sorts after the incoming one (the adapters' shared save_call condition)."""
    if stored.version is not None:
        return incoming.version is None or stored.version > incoming.version
    return stored.event_at is not None and incoming.event_at is not None and stored.event_at > incoming.event_at


class MemoryTombstones:
    def __init__(self) -> None:
        self.added: dict[str, int] = {}

    def add(self, digests: Sequence[str], now: int) -> None:
        for digest in digests:
            self.added.setdefault(digest, now)

    def contains(self, digest: str) -> bool:
        return digest in self.added

    def digests(self) -> Iterator[str]:
        return iter(sorted(self.added))


class MemoryAuditLog:
    def __init__(self) -> None:
        self.rows: list[AuditEntry] = []  # tests may edit it to show that the chain check notices
        self._lock = threading.Lock()

    def append(self, action: str, actor: str, subjects: Sequence[str], detail: Detail, now: int) -> AuditEntry:
        with self._lock:
            entry = chained(self.rows[-1] if self.rows else None, now, action, actor, subjects, detail)
            self.rows.append(entry)
            return entry

    def entries(self, since: int | None = None, subject: str | None = None) -> Iterator[AuditEntry]:
        return iter(
            [
                e
                for e in list(self.rows)
                if (since is None or e.at >= since) and (subject is None or subject in e.subjects)
            ]
        )


class MemoryHolds:
    def __init__(self) -> None:
        self.holds: dict[str, Hold] = {}

    def place(self, hold: Hold) -> None:
        self.holds.setdefault(hold.id, hold)

    def release(self, hold_id: str, now: int, actor: str) -> Hold | None:
        hold = self.holds.get(hold_id)
        if hold is not None and hold.active:
            hold = self.holds[hold_id] = replace(hold, released_at=now, released_by=actor)
        return hold

    def all(self) -> list[Hold]:
        return sorted(self.holds.values(), key=lambda h: (h.placed_at, h.id))

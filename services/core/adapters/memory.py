"""In-memory adapters: fakes for unit tests, held to the same contract suites as the real ones."""

import itertools
import threading
from collections.abc import Iterable, Iterator
from dataclasses import replace

from ..domain.errors import InvalidCursor, NotFound
from ..domain.models import CALL_FIELDS, AudioFacts, CallPage, CallQuery, CallRecord


class MemoryBlobStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._writes = itertools.count(1)
        self._tags: dict[str, str] = {}  # key -> tag of its current object (tests may fill ``objects`` directly)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        with self._lock:
            self._store(key, data)

    def _store(self, key: str, data: bytes) -> None:
        self.objects[key] = bytes(data)
        self._tags[key] = f"w{next(self._writes)}"

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
            self._store(destination, data)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self.objects.pop(key, None)
            self._tags.pop(key, None)

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        return iter(sorted(k for k in list(self.objects) if k.startswith(prefix)))

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        with self._lock:
            tag = self._tag(key)
            if tag is None:
                raise NotFound("no archived object under this key")
            return self.objects[key], tag

    def put_if(self, key: str, data: bytes, content_type: str, tag: str | None) -> bool:
        with self._lock:
            if self._tag(key) != tag:
                return False
            self._store(key, data)
            return True

    def delete_if(self, key: str, tag: str) -> bool:
        with self._lock:
            if self._tag(key) != tag:
                return False
            del self.objects[key]
            self._tags.pop(key, None)
            return True


class MemoryCallIndex:
    def __init__(self) -> None:
        self.rows: dict[str, CallRecord] = {}
        self._lock = threading.Lock()

    def get(self, conversation_id: str) -> CallRecord | None:
        row = self.rows.get(conversation_id)
        return replace(row) if row else None

    def save_call(self, record: CallRecord, now: int) -> bool:
        with self._lock:
            row = self.rows.get(record.conversation_id)
            if row is None:
                row = CallRecord(record.conversation_id, ingested_at=now)
            elif row.event_at is not None and record.event_at is not None and row.event_at > record.event_at:
                return False
            for name in CALL_FIELDS:
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
            row.agent_id = row.agent_id or agent_id
            row.has_audio, row.audio_key, row.audio_bytes = True, audio.key, audio.size
            row.updated_at = now
            self.rows[conversation_id] = row
            return True

    def set_memory_status(self, conversation_id: str, status: str, now: int) -> None:
        with self._lock:
            row = self.rows.get(conversation_id)
            if row is not None:
                row.memory_status, row.memory_updated_at = status, now

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

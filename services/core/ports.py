"""The ports: what the use cases need from storage, named by role. Adapters live in ``adapters/``."""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from .domain.audit import AuditEntry, Detail
from .domain.holds import Hold
from .domain.models import AudioFacts, CallPage, CallQuery, CallRecord


@dataclass(frozen=True)
class ObjectHead:
    """What a store knows of an object without reading it."""

    tag: str  # changes with every write (S3 ETag, local inode/mtime/size)
    size: int
    version: str | None  # the writer's version label (domain.versions); None if written without one


class BlobStore(Protocol):
    """The archive: objects under S3-style keys. Every write is durable when the call returns."""

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str) -> int:
        """Write the concatenated chunks; return the size. If ``chunks`` raises, nothing is written."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """Raise ``NotFound`` when the key does not exist."""
        ...

    def size(self, key: str) -> int | None:
        """The object's size, or None when it does not exist."""
        ...

    def move(self, source: str, destination: str) -> bool:
        """Move if ``source`` exists (False if it did not). Safe to run concurrently and repeatedly."""
        ...

    def delete(self, key: str) -> None: ...

    def purge(self, key: str) -> int:
        """Erase the object for good (erasure, #13): on a versioned bucket every version and delete
        marker of ``key``, not only the current object. Idempotent; returns how many versions went."""
        ...

    def list_keys(self, prefix: str = "") -> Iterator[str]: ...

    # Compare-and-swap, for objects several writers rewrite (the analytics day objects). A key
    # written with ``put_if`` must only ever be written with ``put_if``: the local adapter's compare
    # holds a lock that plain writes do not take.

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """The object and its tag, which changes with every write. Raise ``NotFound``."""
        ...

    def put_if(self, key: str, data: bytes, content_type: str, tag: str | None, *, version: str | None = None) -> bool:
        """Write only if the object still has ``tag`` (``None``: only if there is no object); else False.

        ``version`` is kept with the object (S3 metadata, a local extended attribute) for ``head``.
        """
        ...

    def put_stream_if(
        self, key: str, chunks: Iterable[bytes], content_type: str, tag: str | None, *, version: str | None = None
    ) -> int | None:
        """``put_if`` for a stream: the size written, or None when the condition failed (nothing written)."""
        ...

    def head(self, key: str) -> ObjectHead | None:
        """The object's tag, size and version label, or None when it does not exist."""
        ...

    def copy_if(self, source: str, destination: str, tag: str | None) -> bool:
        """Copy ``source`` (with its version) to ``destination`` if that still has ``tag``; the source stays.

        False when the condition failed or the source is gone.
        """
        ...

    def delete_if(self, key: str, tag: str) -> bool:
        """Delete only if the object still has ``tag``; False if it was rewritten (it stays) or is gone."""
        ...


class CallIndex(Protocol):
    """One row per call, merged from every event of that call; listings newest first."""

    def get(self, conversation_id: str) -> CallRecord | None: ...

    def save_call(
        self, record: CallRecord, now: int, *, expect_version: bool = False, expected_version: str | None = None
    ) -> bool:
        """Write the call-level fields (``CALL_FIELDS``: replaced, but for the merged ones); never audio fields.

        Atomic and conditional: skipped (returns False) when the stored ``version`` is newer (rows
        written before versions: when the stored ``event_at`` is newer), and, with
        ``expect_version``, unless the row still holds ``expected_version`` (None: no version yet):
        a compare-and-swap on the row the caller read.
        """
        ...

    def save_audio(
        self,
        conversation_id: str,
        agent_id: str | None,
        audio: AudioFacts,
        now: int,
        *,
        only_if_unplaced: bool,
    ) -> bool:
        """Set the audio fields unless the row holds a newer ``audio_version`` than ``audio.version``.

        With ``only_if_unplaced``, only while the call's ``archive_prefix`` is unknown (the audio is
        then parked under the pending key). Returns False when a condition failed.
        """
        ...

    def set_memory_status(self, conversation_id: str, status: str, now: int) -> None:
        """Record the caller-memory job's progress on an existing row (never creates one)."""
        ...

    def claim_place(self, conversation_id: str, archive_prefix: str, phone: str | None, now: int) -> CallRecord:
        """Give the call its folder once: set ``archive_prefix`` and ``phone`` if no event placed it yet.

        Returns the row as stored afterwards, whose prefix and phone every later event uses, so a call
        never splits between folders however its events race. The row names no objects yet.
        """
        ...

    def scan(self) -> Iterator[CallRecord]:
        """Every row, in no particular order (``callvault verify``)."""
        ...

    def awaiting_audio(self, updated_before: int, limit: int = 100) -> list[CallRecord]:
        """Rows whose transcript said the call has audio (``expects_audio``) but no audio is in place,
        last written before ``updated_before``: the audio fetches due (``callvault serve``, verify)."""
        ...

    def delete(self, conversation_id: str) -> None:
        """Remove a row (``callvault verify --repair`` of a row that names nothing)."""
        ...

    def scrub_deleted(self) -> bool:
        """Leave no copy of the rows deleted so far in the store's own files (erasure, #13): SQLite
        writes its WAL into the database and truncates it. Once per erasure, not per row. False when a
        reader held the WAL meanwhile; the next erasure, or the store's last close, finishes it."""
        ...

    def drop_audio(self, conversation_id: str, now: int) -> bool:
        """The call's audio expired (retention, #13): no audio fields, ``expects_audio`` false, and
        ``audio_version`` = ``versions.AUDIO_EXPIRED``, above any audio, so none is recorded again.
        False when there is no row."""
        ...

    def expire_analytics(self, conversation_id: str, now: int) -> bool:
        """The call's analytics rows expired (retention, #13): set ``analytics_expired_at`` (kept if set
        already; no event's write clears it), so verify, backfill and later events leave them out.
        False when there is no row."""
        ...

    def list_calls(self, query: CallQuery) -> CallPage:
        """Newest first by ``started_at``; cost follows the page, never the size of the index."""
        ...

    def list_reported(self, phone: str) -> list[CallRecord]:
        """Rows whose ``reported_phone`` is ``phone``: calls filed under another number's folder that a
        later event said were this number's (erasure by phone, #13). In no particular order; cost
        follows those rows, never the size of the index."""
        ...


class CallerData(Protocol):
    """What a feature derived from calls (analytics rows, memories, jobs waiting, caches), told when
    calls are erased (``services/privacy``). Each feature implements it over its own stores; erasure
    never knows their tables."""

    name: str

    def find(self, phone: str | None, calls: Sequence[CallRecord]) -> int:
        """How many items ``erase`` would remove (``--dry-run``). ``phone``: the whole caller is erased."""
        ...

    def erase(self, phone: str | None, calls: Sequence[CallRecord]) -> int:
        """Remove what was derived from ``calls`` (and, with ``phone``, anything else kept of that caller).
        Idempotent; returns how many items went."""
        ...


class UpstreamConversations(Protocol):
    """The conversations the voice platform keeps (ElevenLabs), for erasure's ``--upstream`` (#13)."""

    def delete(self, conversation_id: str) -> bool:
        """Delete it upstream: True when deleted, False when it was gone already (idempotent). Retries
        what a later attempt can fix; raises a ``CallVaultError`` (never carrying a key) when it could not."""
        ...


class Tombstones(Protocol):
    """Keyed hashes of erased conversations (``core.erased``): what must never be archived again."""

    def add(self, digests: Sequence[str], now: int) -> None:
        """Durable when it returns; adding a digest twice keeps one."""
        ...

    def contains(self, digest: str) -> bool: ...

    def digests(self) -> Iterator[str]:
        """Every digest (``callvault verify``: erased data that reappeared)."""
        ...


class AuditLog(Protocol):
    """The append-only, hash-chained audit trail (``domain.audit``)."""

    def append(self, action: str, actor: str, subjects: Sequence[str], detail: Detail, now: int) -> AuditEntry:
        """Chain a new entry after the last one, atomically (concurrent appends never fork the chain)."""
        ...

    def entries(self, since: int | None = None, subject: str | None = None) -> Iterator[AuditEntry]:
        """In order; ``since``: entries at or after that time; ``subject``: entries naming that hash."""
        ...


class Holds(Protocol):
    """Legal holds (``domain.holds``): placed, released, never deleted."""

    def place(self, hold: Hold) -> None: ...

    def release(self, hold_id: str, now: int, actor: str) -> Hold | None:
        """Mark the hold released (idempotent); None when no hold has that id."""
        ...

    def all(self) -> list[Hold]:
        """Every hold, active and released, oldest first."""
        ...

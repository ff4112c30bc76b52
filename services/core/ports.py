"""The ports: what the use cases need from storage, named by role. Adapters live in ``adapters/``."""

from collections.abc import Iterable, Iterator
from typing import Protocol

from .domain.models import AudioFacts, CallPage, CallQuery, CallRecord


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

    def list_keys(self, prefix: str = "") -> Iterator[str]: ...

    # Compare-and-swap, for objects several writers rewrite (the analytics day objects). A key
    # written with ``put_if`` must only ever be written with ``put_if``: the local adapter's compare
    # holds a lock that plain writes do not take.

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """The object and its tag, which changes with every write. Raise ``NotFound``."""
        ...

    def put_if(self, key: str, data: bytes, content_type: str, tag: str | None) -> bool:
        """Write only if the object still has ``tag`` (``None``: only if there is no object); else False."""
        ...

    def delete_if(self, key: str, tag: str) -> bool:
        """Delete only if the object still has ``tag``; False if it was rewritten (it stays) or is gone."""
        ...


class CallIndex(Protocol):
    """One row per call, merged from every event of that call; listings newest first."""

    def get(self, conversation_id: str) -> CallRecord | None: ...

    def save_call(self, record: CallRecord, now: int) -> bool:
        """Merge the call-level fields (``CALL_FIELDS``) that are not None; never touch audio fields.

        Atomic and conditional: skipped (returns False) when the stored ``event_at`` is newer.
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
        """Set the audio fields. With ``only_if_unplaced``, only while the call's ``archive_prefix`` is unknown

        (the audio is then parked under the pending key); returns False when that condition failed.
        """
        ...

    def set_memory_status(self, conversation_id: str, status: str, now: int) -> None:
        """Record the caller-memory job's progress on an existing row (never creates one)."""
        ...

    def list_calls(self, query: CallQuery) -> CallPage:
        """Newest first by ``started_at``; cost follows the page, never the size of the index."""
        ...

"""The memory feature's ports: where memories live, where jobs wait, where status is shown."""

from collections.abc import Sequence
from typing import Protocol

from .domain import Memories, MemoryItem, MemoryJob, MemoryStatus, MemoryType


class MemoryStore(Protocol):
    """A caller's memories, keyed by the caller's E.164 number (Mem0 ``user_id``)."""

    def add_conversation(self, phone: str, conversation_id: str, items: Sequence[MemoryItem]) -> int:
        """Replace this conversation's memories with ``items``; return how many were stored.

        Effect-once: the conversation's earlier memories are deleted first, so a redelivered
        webhook or a retried job (even one that died half way) ends with exactly ``items``.
        Raises ``MemoryUnavailable``.
        """
        ...

    def search(self, phone: str, query: str, type: MemoryType | None = None, limit: int = 10) -> Memories:
        """Semantic search within this caller's memories only, best first."""
        ...

    def list(self, phone: str, type: MemoryType | None = None, limit: int = 50) -> Memories:
        """This caller's memories, newest call first, turns in call order."""
        ...

    def caller_name(self, phone: str) -> str | None:
        """The caller's name from the newest call that collected one (a data-collection value), if any.

        Cheap by contract: the conversation-initiation webhook calls it while the phone rings.
        """
        ...

    def caller_facts(self, phone: str) -> str | None:
        """The collected data of the caller's newest call that collected any, as one short line.

        Cheap by contract, like ``caller_name``: read while the phone rings.
        """
        ...

    def delete_caller(self, phone: str) -> int:
        """Erase every memory of this caller, history included; return how many were deleted."""
        ...


class MemoryJobQueue(Protocol):
    """Where ingest leaves a job. ``enqueue`` must be durable when it returns."""

    def enqueue(self, job: MemoryJob) -> None: ...


class MemoryStatusSink(Protocol):
    """Shows a call's memory status on its index row (``memory_status``, ``memory_updated_at``)."""

    def set_memory_status(self, conversation_id: str, status: MemoryStatus, now: int) -> None: ...

"""``NullMemoryStore``: the ``memory_backend = none`` store. Remembers nothing, answers empty."""

from collections.abc import Sequence

from .domain import Memories, MemoryItem, MemoryType


class NullMemoryStore:
    def add_conversation(self, phone: str, conversation_id: str, items: Sequence[MemoryItem]) -> int:
        return 0

    def search(self, phone: str, query: str, type: MemoryType | None = None, limit: int = 10) -> Memories:
        return []

    def list(self, phone: str, type: MemoryType | None = None, limit: int = 50) -> Memories:
        return []

    def caller_name(self, phone: str) -> str | None:
        return None

    def caller_facts(self, phone: str) -> str | None:
        return None

    def delete_caller(self, phone: str) -> int:
        return 0

"""Helpers for the memory tests: synthetic calls built from the real fixture, fakes, a clock."""

import copy
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.memory.domain import (
    Memories,
    MemoryItem,
    MemoryStatus,
    MemoryType,
    StoredMemory,
    facts_line,
    listing_order,
)
from services.memory.errors import MemoryUnavailable
from tests.support import TRANSCRIPTION, fixture_json

CALLER = "+16125550142"
OTHER_CALLER = "+16125550177"
CONV = "conv_01jzfrjvcce0vsea1fcbpp9p04"


def call_envelope(
    conversation_id: str = CONV,
    phone: str | None = CALLER,
    turns: Sequence[tuple[str, str | None]] = (),
    *,
    name: str | None = "Maria",
    summary: str | None = None,
    started_at: int = 1751802015,
    event_at: int = 1751802025,
) -> dict[str, Any]:
    """The real transcription fixture, re-addressed: another id, caller, transcript, name or summary."""
    envelope = copy.deepcopy(fixture_json(TRANSCRIPTION))
    envelope["event_timestamp"] = event_at
    data = envelope["data"]
    data["conversation_id"] = conversation_id
    data["metadata"]["start_time_unix_secs"] = started_at
    data["metadata"]["phone_call"]["external_number"] = phone
    data["conversation_initiation_client_data"]["dynamic_variables"]["system__caller_id"] = phone
    if turns:
        data["transcript"] = [
            {"role": role, "message": message, "time_in_call_secs": i} for i, (role, message) in enumerate(turns)
        ]
    data["analysis"]["data_collection_results"]["user_name"]["value"] = name
    if summary is not None:
        data["analysis"]["transcript_summary"] = summary
    return envelope


def envelope_bytes(envelope: dict[str, Any]) -> bytes:
    return orjson.dumps(envelope)


@dataclass
class FakeMemoryStore:
    """An in-memory ``MemoryStore`` with the same effect-once contract; ``down`` makes it unavailable."""

    rows: dict[str, list[tuple[str, MemoryItem]]] = field(default_factory=dict)  # phone -> (id, item)
    down: bool = False
    adds: int = 0
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _check(self) -> None:
        if self.down:
            raise MemoryUnavailable("fake store is down")

    def add_conversation(self, phone: str, conversation_id: str, items: Sequence[MemoryItem]) -> int:
        self._check()
        with self._lock:
            kept = [(i, m) for i, m in self.rows.get(phone, []) if m.metadata.get("conversation_id") != conversation_id]
            for item in items:
                self._next += 1
                kept.append((f"m{self._next}", item))
            self.rows[phone] = kept
            self.adds += 1
        return len(items)

    def _stored(self, phone: str, type: MemoryType | None) -> Memories:
        return [
            StoredMemory.from_metadata(i, m.text, m.metadata, role=m.role)
            for i, m in self.rows.get(phone, [])
            if type is None or m.type == type
        ]

    def search(self, phone: str, query: str, type: MemoryType | None = None, limit: int = 10) -> Memories:
        self._check()
        words = set(query.lower().split())
        hits = [m for m in self._stored(phone, type) if words & set(m.text.lower().split())]
        return hits[:limit]

    def list(self, phone: str, type: MemoryType | None = None, limit: int = 50) -> Memories:
        self._check()
        return sorted(self._stored(phone, type), key=listing_order)[:limit]

    def caller_name(self, phone: str) -> str | None:
        self._check()
        for memory in self.list(phone, "factual", 1000):
            if memory.caller_name:
                return memory.caller_name
        return None

    def caller_facts(self, phone: str) -> str | None:
        self._check()
        facts = [m for m in self.list(phone, "factual", 1000) if m.source == "data_collection"]
        newest = facts[0].conversation_id if facts else None
        return facts_line([m.text for m in facts if m.conversation_id == newest])

    def delete_caller(self, phone: str) -> int:
        self._check()
        return len(self.rows.pop(phone, []))

    def count(self, phone: str, conversation_id: str | None = None) -> int:
        return sum(
            1
            for _, m in self.rows.get(phone, [])
            if conversation_id is None or m.metadata["conversation_id"] == conversation_id
        )


@dataclass
class RecordingStatusSink:
    """A ``MemoryStatusSink`` that remembers every status written (what the index row would show)."""

    history: list[tuple[str, MemoryStatus]] = field(default_factory=list)
    fail: bool = False

    def set_memory_status(self, conversation_id: str, status: MemoryStatus, now: int) -> None:
        if self.fail:
            raise RuntimeError("index down")
        self.history.append((conversation_id, status))

    def last(self, conversation_id: str) -> MemoryStatus | None:
        found = [s for c, s in self.history if c == conversation_id]
        return found[-1] if found else None


@dataclass
class ManualClock:
    now: float = 1_751_802_100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

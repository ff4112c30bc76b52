"""What CallVault remembers about a caller, built from one archived transcription. Pure functions.

Per call and caller (Mem0 ``user_id`` = the caller's E.164 number), by the offline extractor
(``extract``):
- **factual** memories: the summary, each data-collection value, the evaluation results (role
  ``user``: facts about the caller, never the agent's words);
- **semantic** memories: what the caller said (their own turns only), fillers and fragments
  dropped, long turns chunked, near-duplicates merged.

Every memory carries ``type``, ``source``, ``seq`` (its place in the call), ``conversation_id``,
``agent_id``, ``started_at`` (and ``turn`` / ``field`` / ``caller_name`` where they apply). The
memory is a copy: the archive stays the record.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from services.core.domain import keys, payload
from services.core.domain.coerce import integer as _int
from services.core.domain.coerce import obj as _obj
from services.core.domain.coerce import text as _str
from services.core.domain.errors import InvalidPayload

from .extract import call_facts, caller_statements, present

MemoryType = Literal["factual", "semantic"]
MEMORY_TYPES: tuple[MemoryType, ...] = ("factual", "semantic")
Role = Literal["user", "assistant"]

# The index row's ``memory_status``: where this call's memories are.
MemoryStatus = Literal["pending", "done", "failed", "skipped_no_phone"]
STATUS_PENDING: MemoryStatus = "pending"
STATUS_DONE: MemoryStatus = "done"
STATUS_FAILED: MemoryStatus = "failed"
STATUS_SKIPPED_NO_PHONE: MemoryStatus = "skipped_no_phone"

# Mem0 2.x drops ``user_id``/``agent_id``/``run_id`` from metadata (they are its scoping ids), and
# passing the ElevenLabs agent as Mem0's ``agent_id`` would split a caller's memories per agent.
# So the agent is stored under this key and shown as ``agent_id`` everywhere else.
AGENT_KEY = "call_agent_id"

_NAME_KEY = re.compile(r"(^|_)(name|full_name|first_name)$", re.IGNORECASE)
_NAME_MAX_CHARS = 80


@dataclass(frozen=True)
class MemoryItem:
    """One memory to store: its text, the Mem0 message role, and the metadata filters work on."""

    text: str
    role: Role
    type: MemoryType
    metadata: dict[str, Any] = field(default_factory=dict)
    infer: bool = False  # a transcript message for the back end's LLM to extract memories from


@dataclass(frozen=True)
class ConversationMemories:
    """Everything one archived call contributes to its caller's memory."""

    conversation_id: str
    phone: str | None  # None: a web/SDK call; nothing is stored
    agent_id: str | None
    started_at: int | None
    caller_name: str | None
    items: tuple[MemoryItem, ...]


@dataclass(frozen=True)
class StoredMemory:
    """One memory as a back end returns it, with our metadata read back out."""

    id: str
    text: str
    type: str | None = None
    role: str | None = None
    conversation_id: str | None = None
    agent_id: str | None = None
    started_at: int | None = None
    turn: int | None = None
    caller_name: str | None = None
    source: str | None = None
    seq: int | None = None
    score: float | None = None
    created_at: str | None = None

    @classmethod
    def from_metadata(
        cls,
        memory_id: str,
        text: str,
        metadata: dict[str, Any],
        *,
        role: str | None = None,
        score: float | None = None,
        created_at: str | None = None,
    ) -> "StoredMemory":
        return cls(
            id=memory_id,
            text=text,
            type=_str(metadata.get("type")),
            role=role or _str(metadata.get("role")),
            conversation_id=_str(metadata.get("conversation_id")),
            agent_id=_str(metadata.get(AGENT_KEY)),
            started_at=_int(metadata.get("started_at")),
            turn=_int(metadata.get("turn")),
            caller_name=_str(metadata.get("caller_name")),
            source=_str(metadata.get("source")),
            seq=_int(metadata.get("seq")),
            score=score,
            created_at=created_at,
        )


def listing_order(memory: StoredMemory) -> tuple[int, str, int, int, str]:
    """Newest call first; within a call the facts, then what the caller said in the order spoken."""
    turn = memory.turn if memory.turn is not None else -1
    seq = memory.seq if memory.seq is not None else turn  # memories stored before ``seq`` existed
    return (-(memory.started_at or 0), memory.conversation_id or "", seq, turn, memory.created_at or "")


# Aliases for modules whose classes have a ``list`` method (it shadows the builtin in the class body).
Memories = list[StoredMemory]
Ids = list[str]


@dataclass(frozen=True)
class MemoryJob:
    """A request to (re)build one call's memories. Small on purpose: the worker reads the transcript.

    ``transcript_key`` saves the worker an index read; ``event_at`` tells two deliveries apart (the
    SQS deduplication id) without putting any call content in the queue.
    """

    conversation_id: str
    transcript_key: str | None = None
    event_at: int | None = None

    def to_json(self) -> str:
        return orjson.dumps(
            {"conversation_id": self.conversation_id, "transcript_key": self.transcript_key, "event_at": self.event_at}
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> "MemoryJob":
        """Raise ``ValueError`` for a body that is not a job (a poison message, never retried usefully)."""
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError("memory job body is not JSON") from exc
        if not isinstance(body, dict):
            raise ValueError("memory job body is not an object")
        try:
            conversation_id = keys.check_conversation_id(body.get("conversation_id"))
        except InvalidPayload as exc:
            raise ValueError("memory job has no valid conversation_id") from exc
        key = body.get("transcript_key")
        event_at = body.get("event_at")
        return cls(
            conversation_id,
            key if isinstance(key, str) and key else None,
            event_at if isinstance(event_at, int) and not isinstance(event_at, bool) else None,
        )


def build_conversation_memories(
    data: dict[str, Any], *, phone: str | None = None, default_region: str = "US", infer: bool = False
) -> ConversationMemories:
    """The memories of one transcription ``data`` (the archived document).

    By the offline extractor; with ``infer``, the facts as always plus the transcript's messages
    (agent ``assistant``, caller ``user``) for the back end's LLM to extract the caller's memories from.
    ``phone`` is the index row's number when known (so memory and index agree); otherwise it is read
    from the payload exactly as ingest reads it.
    """
    conversation_id = keys.check_conversation_id(data.get("conversation_id"))
    caller = phone or payload.customer_phone(data, default_region)
    metadata = _obj(data.get("metadata"))
    analysis = _obj(data.get("analysis"))
    agent_id = _str(data.get("agent_id"))
    started_at = _int(metadata.get("start_time_unix_secs"))
    name = caller_name(analysis)
    base: dict[str, Any] = {"conversation_id": conversation_id}
    if agent_id is not None:
        base[AGENT_KEY] = agent_id
    if started_at is not None:
        base["started_at"] = started_at
    items: list[MemoryItem] = []
    for fact in call_facts(analysis):
        fact_meta = {**base, "type": "factual", "source": fact.source, "seq": len(items)}
        if fact.field is not None:
            fact_meta["field"] = fact.field
        if name:
            fact_meta["caller_name"] = name
        # Role user: a fact is about the caller (Mem0's user memories), never the agent's words.
        items.append(MemoryItem(fact.text, "user", "factual", fact_meta))
    if infer:
        inferred = {**base, "type": "semantic", "source": "inferred"}
        items.extend(MemoryItem(text, role, "semantic", inferred, infer=True) for role, text in _messages(data))
    else:
        for statement in caller_statements(data.get("transcript")):
            turn_meta = {**base, "type": "semantic", "source": "turn", "seq": len(items), "turn": statement.turn}
            items.append(MemoryItem(statement.text, "user", "semantic", turn_meta))
    return ConversationMemories(conversation_id, caller, agent_id, started_at, name, tuple(items))


def caller_name(analysis: dict[str, Any]) -> str | None:
    """A data-collection value whose id looks like a name (``user_name``, ``caller_name``, ``name``...)."""
    for name, entry in _obj(analysis.get("data_collection_results")).items():
        if not isinstance(entry, dict) or not _NAME_KEY.search(str(name)):
            continue
        value = entry.get("value")
        if isinstance(value, str) and present(value) and len(value.strip()) <= _NAME_MAX_CHARS:
            return " ".join(value.split())
    return None


def _messages(data: dict[str, Any]) -> list[tuple[Role, str]]:
    """The transcript as chat messages: every turn with words, agent and caller (the LLM needs both)."""
    roles: dict[str, Role] = {"agent": "assistant", "user": "user"}
    transcript = data.get("transcript")
    messages: list[tuple[Role, str]] = []
    for turn in transcript if isinstance(transcript, list) else []:
        role = roles.get(str(turn.get("role"))) if isinstance(turn, dict) else None
        text = turn.get("message") if isinstance(turn, dict) else None
        if role is not None and isinstance(text, str) and any(ch.isalnum() for ch in text):
            messages.append((role, " ".join(text.split())))
    return messages


FACTS_CHARS = 400


def facts_line(texts: list[str]) -> str | None:
    """``"user name: Maria; key life event: ..."``: a call's collected values, within ``FACTS_CHARS``."""
    line = "; ".join(" ".join(t.split()) for t in texts if t.strip())
    if not line:
        return None
    return line if len(line) <= FACTS_CHARS else line[: FACTS_CHARS - 1].rstrip() + "…"


def collected_facts(items: Sequence[MemoryItem]) -> str | None:
    """The facts line of one call's items: its data-collection memories, in order."""
    return facts_line([i.text for i in items if i.metadata.get("source") == "data_collection"])

"""``MemoryStore`` on Mem0 open source (``mem0.Memory``), fully offline.

- Vector store: Qdrant in local mode, a folder under the data dir. The folder is locked to one
  client, so there is one ``Mem0OssMemoryStore`` per process (``callvault serve`` shares it between
  its worker thread and its routes).
- Sharded by caller: ``SHARDS`` collections in that one Qdrant client, a caller's memories all in
  the collection ``hash(phone) % SHARDS``, each with its own ``Memory``. Qdrant's local mode filters
  by scanning every point of a collection in Python (about 6 µs a point), so one collection of
  20,000 memories made every lookup take 130-220 ms; a shard holds 1/64th of that.
- ``caller_name``: a small SQLite table next to the history (phone -> name from the newest call that
  collected one), kept by ``add_conversation``: the conversation-initiation webhook reads one row
  instead of scanning vectors while the phone rings.
- Embeddings: ``OnnxMiniLmEmbedder`` set on ``memory.embedding_model`` after construction (Mem0
  validates provider names, so it is built with a placeholder provider that is never called).
- LLM: by default a placeholder that points at a closed local port, and ``infer=False``: one memory
  per message, no LLM call. With an ``LlmEndpoint`` (any OpenAI-compatible server: Ollama, vLLM, LM
  Studio, OpenAI) the items marked ``infer`` (a call's transcript) go to Mem0 in one ``infer=True``
  add: Mem0 asks that LLM for the caller's memories and stores them with the call's metadata.
- No network: telemetry off before the first ``import mem0`` (``mem0_env``), and the optional extras
  that would download models at run time (spaCy's ``en_core_web_sm``, fastembed's BM25 model) are
  marked unavailable even when installed.
"""

import contextlib
import hashlib
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.core.adapters.sqlite_database import make_private

from .domain import Ids, Memories, MemoryItem, MemoryType, StoredMemory, collected_facts, listing_order
from .embedder import DIMENSIONS, OnnxMiniLmEmbedder
from .errors import MemoryUnavailable
from .mem0_env import check_telemetry_off, prepare_mem0_environment

COLLECTION = "callvault_memories"
SHARDS = 64  # changing it re-homes callers: only with a migration (docs/memory.md)
_PLACEHOLDER_OPENAI = {"api_key": "offline-unused", "openai_base_url": "http://127.0.0.1:9/v1"}
_PAGE = 500  # ids listed per round when deleting; Qdrant scroll pages are cheap
LIST_SCAN_LIMIT = 5000  # ``list`` sorts in memory: it reads at most this many of one caller's memories

_CALLERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS callers (
    phone       TEXT PRIMARY KEY,
    caller_name TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    conversation_id TEXT NOT NULL
)
"""
_FACTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS caller_facts (
    phone       TEXT PRIMARY KEY,
    facts       TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    conversation_id TEXT NOT NULL
)
"""
_SET_FACTS = """
INSERT INTO caller_facts (phone, facts, started_at, conversation_id) VALUES (?, ?, ?, ?)
ON CONFLICT (phone) DO UPDATE SET facts = excluded.facts, started_at = excluded.started_at,
    conversation_id = excluded.conversation_id
WHERE excluded.started_at >= caller_facts.started_at
"""
_SET_NAME = """
INSERT INTO callers (phone, caller_name, started_at, conversation_id) VALUES (?, ?, ?, ?)
ON CONFLICT (phone) DO UPDATE SET caller_name = excluded.caller_name, started_at = excluded.started_at,
    conversation_id = excluded.conversation_id
WHERE excluded.started_at >= callers.started_at
"""
# Memories being deleted whose history rows (their text) are not purged yet: noted before the first
# delete, cleared after the purge, so a process killed in between purges them at its next delete.
_PURGES_SCHEMA = "CREATE TABLE IF NOT EXISTS history_purges (memory_id TEXT PRIMARY KEY)"
_FORGET_NAME = "DELETE FROM callers WHERE phone = ? AND conversation_id = ?"
_FORGET_FACTS = "DELETE FROM caller_facts WHERE phone = ? AND conversation_id = ?"


@dataclass(frozen=True)
class LlmEndpoint:
    """An OpenAI-compatible chat completions server Mem0 extracts memories with."""

    base_url: str  # e.g. http://127.0.0.1:11434/v1 (Ollama)
    model: str
    api_key: str = "unused"  # local servers want none; the OpenAI client wants a value


def shard_of(phone: str) -> int:
    return int.from_bytes(hashlib.sha256(phone.encode("utf-8")).digest()[:4], "big") % SHARDS


def _forbid_runtime_downloads(memory: Any) -> None:
    """Mem0 would fetch models on first use if spaCy or fastembed were installed: say they failed."""
    from mem0.utils import spacy_models

    spacy_models._load_failed_full = True
    spacy_models._load_failed_lemma = True
    if hasattr(memory.vector_store, "_bm25_encoder"):
        memory.vector_store._bm25_encoder = False  # Mem0's own "tried and failed" sentinel


class Mem0OssMemoryStore:
    """Offline Mem0. ``directory=None`` keeps everything in memory (tests, benchmarks)."""

    def __init__(
        self,
        directory: Path | None,
        *,
        embedder: OnnxMiniLmEmbedder | None = None,
        collection: str = COLLECTION,
        llm: LlmEndpoint | None = None,
    ) -> None:
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            for database in ("history.sqlite3", "callers.sqlite3"):  # their journals inherit the mode
                make_private(directory / database)
        prepare_mem0_environment(directory / "mem0-home" if directory is not None else None)
        from mem0 import Memory
        from qdrant_client import QdrantClient

        check_telemetry_off()
        self._memory_class = Memory
        self._collection = collection
        self._llm = llm
        self._history = str(directory / "history.sqlite3") if directory is not None else ":memory:"
        try:
            self._qdrant = QdrantClient(path=str(directory / "qdrant")) if directory else QdrantClient(":memory:")
        except Exception as exc:  # e.g. the Qdrant folder is held by another process
            raise MemoryUnavailable(f"the local memory store cannot be opened ({type(exc).__name__})") from exc
        self._embedder = embedder or OnnxMiniLmEmbedder()
        self._shards: dict[int, Any] = {}
        self._callers = sqlite3.connect(
            str(directory / "callers.sqlite3") if directory is not None else ":memory:", check_same_thread=False
        )
        self._callers.execute("PRAGMA secure_delete=ON")  # an erased name or fact is zeroed, not left in free pages
        self._callers.execute(_CALLERS_SCHEMA)
        self._callers.execute(_FACTS_SCHEMA)
        self._callers.execute(_PURGES_SCHEMA)
        # Qdrant local mode is not made for concurrent use: one call at a time. Writers also hold
        # ``_writer`` for a whole conversation, so two writes of one conversation never interleave
        # (delete, delete, add, add would duplicate), while reads slip in between single calls.
        self._call = threading.RLock()
        self._writer = threading.Lock()
        self._names = threading.Lock()  # the callers table has its own lock: never waits for Qdrant
        # Called between the single writes of a job (outside every lock): the local server sets it to
        # wait for a gap between webhooks, so a job in progress gives way to a burst of them.
        self.pace: Callable[[], None] | None = None
        self._closed = False

    # -- MemoryStore ---------------------------------------------------------------------------

    def add_conversation(self, phone: str, conversation_id: str, items: Sequence[MemoryItem]) -> int:
        with self._writer, self._errors("add"):
            memory = self._memory_for(phone)
            replaced = self._delete_where(memory, {"user_id": phone, "conversation_id": conversation_id})
            if not items or (replaced and any(item.infer for item in items)):
                # Mem0 keeps the caller's last messages (transcripts it inferred from) without saying
                # which call they came from: an erased or replaced call's words go with all of them.
                self._purge_messages(memory, phone)
            for group in _batches(items):
                if group[0].infer and self._llm is None:
                    raise MemoryUnavailable("inference needs an LLM endpoint (CALLVAULT_MEMORY_LLM_BASE_URL)")
                if self.pace is not None:
                    self.pace()
                with self._call:  # with inference, reads wait for the LLM: Mem0 calls it inside ``add``
                    memory.add(
                        [{"role": item.role, "content": item.text} for item in group],
                        user_id=phone,
                        metadata=dict(group[0].metadata),
                        infer=group[0].infer,
                    )
                time.sleep(0)  # a lookup waiting for the lock gets it between two writes
            if not items:  # the conversation's memories erased (#13): so are the name and facts it gave, if kept
                with self._names:
                    self._callers.execute(_FORGET_NAME, (phone, conversation_id))
                    self._callers.execute(_FORGET_FACTS, (phone, conversation_id))
                    self._callers.commit()
            self._remember_name(phone, conversation_id, items)
            return len(items)

    def search(self, phone: str, query: str, type: MemoryType | None = None, limit: int = 10) -> Memories:
        if not query.strip():
            return self.list(phone, type, limit)
        with self._errors("search"), self._call:
            found = self._memory_for(phone).search(
                query, top_k=limit, filters=self._filters(phone, type), threshold=0.0
            )
        return [_stored(r) for r in found.get("results", [])]

    def list(self, phone: str, type: MemoryType | None = None, limit: int = 50) -> Memories:
        with self._errors("list"), self._call:
            found = self._memory_for(phone).get_all(filters=self._filters(phone, type), top_k=LIST_SCAN_LIMIT)
        memories = [_stored(r) for r in found.get("results", [])]
        memories.sort(key=listing_order)
        return memories[:limit]

    def caller_name(self, phone: str) -> str | None:
        with self._errors("read"), self._names:
            row = self._callers.execute("SELECT caller_name FROM callers WHERE phone = ?", (phone,)).fetchone()
        return str(row[0]) if row else None

    def caller_facts(self, phone: str) -> str | None:
        with self._errors("read"), self._names:
            row = self._callers.execute("SELECT facts FROM caller_facts WHERE phone = ?", (phone,)).fetchone()
        return str(row[0]) if row else None

    def delete_caller(self, phone: str) -> int:
        with self._writer, self._errors("delete"):
            memory = self._memory_for(phone)
            deleted = self._delete_where(memory, {"user_id": phone})
            self._purge_messages(memory, phone)
            with self._names:
                self._callers.execute("DELETE FROM callers WHERE phone = ?", (phone,))
                self._callers.execute("DELETE FROM caller_facts WHERE phone = ?", (phone,))
                self._callers.commit()
            return deleted

    def warm(self) -> None:
        """Open every shard now (about 40 ms each, once per process) rather than on a first lookup."""
        for shard in range(SHARDS):
            if self._closed:  # best effort: a store closed meanwhile just stops warming
                return
            with contextlib.suppress(Exception):
                self._memory_for_shard(shard)
            time.sleep(0.001)  # let a waiting lookup take the lock (Python locks are not fair)

    def close(self) -> None:
        """Release the Qdrant folder lock and the databases."""
        with self._call:
            self._closed = True
            for memory in self._shards.values():
                memory.close()
            self._qdrant.close()
        with self._names:
            self._callers.close()

    # -- helpers -------------------------------------------------------------------------------

    def _memory_for(self, phone: str) -> Any:
        return self._memory_for_shard(shard_of(phone))

    def _memory_for_shard(self, shard: int) -> Any:
        with self._call:
            memory = self._shards.get(shard)
            if memory is None:
                with warnings.catch_warnings():
                    # Mem0 asks for payload indexes, which local mode ignores (and warns about).
                    warnings.filterwarnings("ignore", message="Payload indexes have no effect")
                    memory = self._memory_class.from_config(self._config(shard))
                _forbid_runtime_downloads(memory)
                memory.embedding_model = self._embedder
                self._zero_deleted_rows(memory)
                self._shards[shard] = memory
            return memory

    def _zero_deleted_rows(self, memory: Any) -> None:
        """Erasure (#13): Mem0's history and Qdrant's points are SQLite files that Mem0 and Qdrant open
        with SQLite's default, which leaves a deleted row's bytes (a memory's text, the caller's number)
        in free pages; some builds (Debian's) zero them, many do not. Every connection zeroes them here,
        as the index and ``callers.sqlite3`` do. Each shard's collection is made by ``from_config``, so
        every collection the client holds is set again whenever a shard opens."""
        db = memory.db
        with db._lock:
            db.connection.execute("PRAGMA secure_delete=ON")
        local: Any = self._qdrant._client  # QdrantLocal: one SQLite file per collection
        for collection in local.collections.values():
            if collection.storage is not None:  # None: an in-memory client
                collection.storage.storage.execute("PRAGMA secure_delete=ON")

    def _config(self, shard: int) -> dict[str, Any]:
        return {
            "vector_store": {
                "provider": "qdrant",
                "config": {
                    "collection_name": f"{self._collection}_{shard:02x}",
                    "client": self._qdrant,  # one client for every shard: the folder takes only one
                    "embedding_model_dims": DIMENSIONS,
                },
            },
            "llm": {"provider": "openai", "config": self._llm_config()},
            "embedder": {"provider": "openai", "config": {**_PLACEHOLDER_OPENAI, "embedding_dims": DIMENSIONS}},
            "history_db_path": self._history,
        }

    def _llm_config(self) -> dict[str, Any]:
        if self._llm is None:
            return dict(_PLACEHOLDER_OPENAI)
        return {"api_key": self._llm.api_key, "openai_base_url": self._llm.base_url, "model": self._llm.model}

    @staticmethod
    def _filters(phone: str, type: MemoryType | None) -> dict[str, Any]:
        filters: dict[str, Any] = {"user_id": phone}
        if type is not None:
            filters["type"] = type
        return filters

    def _remember_name(self, phone: str, conversation_id: str, items: Sequence[MemoryItem]) -> None:
        facts = collected_facts(items)
        if facts:
            started_at = next((i.metadata.get("started_at") for i in items if i.metadata.get("started_at")), 0)
            with self._names:
                self._callers.execute(_SET_FACTS, (phone, facts, started_at or 0, conversation_id))
                self._callers.commit()
        for item in items:
            name, started_at = item.metadata.get("caller_name"), item.metadata.get("started_at")
            if isinstance(name, str) and name:
                with self._names:
                    self._callers.execute(_SET_NAME, (phone, name, started_at or 0, conversation_id))
                    self._callers.commit()
                return

    def _delete_where(self, memory: Any, filters: dict[str, Any]) -> int:
        """Delete matching memories and purge their history rows (``delete`` alone keeps the text there)."""
        self._finish_purges(memory)
        deleted = 0
        while True:
            with self._call:
                page = memory.get_all(filters=filters, top_k=_PAGE, show_expired=True)
            ids = [str(r["id"]) for r in page.get("results", [])]
            if not ids:
                return deleted
            self._note_purges(ids, pending=True)
            for memory_id in ids:
                if self.pace is not None:
                    self.pace()
                with self._call:
                    memory.delete(memory_id)
            self._purge_history(memory, ids)
            self._note_purges(ids, pending=False)
            deleted += len(ids)

    def _note_purges(self, ids: Ids, *, pending: bool) -> None:
        sql = (
            "INSERT OR IGNORE INTO history_purges VALUES (?)"
            if pending
            else "DELETE FROM history_purges WHERE memory_id = ?"
        )
        with self._names:
            self._callers.executemany(sql, [(memory_id,) for memory_id in ids])
            self._callers.commit()

    def _finish_purges(self, memory: Any) -> None:
        """The history rows of deletes a killed process did not get to purge (one history file serves every
        shard, so any shard's connection reaches them)."""
        with self._names:
            ids = [str(row[0]) for row in self._callers.execute("SELECT memory_id FROM history_purges")]
        for start in range(0, len(ids), _PAGE):
            chunk = ids[start : start + _PAGE]
            self._purge_history(memory, chunk)
            self._note_purges(chunk, pending=False)

    def _purge_history(self, memory: Any, ids: Ids) -> None:
        db = memory.db
        marks = ",".join("?" * len(ids))
        with self._call, db._lock:
            db.connection.execute(f"DELETE FROM history WHERE memory_id IN ({marks})", ids)  # noqa: S608 - marks only
            db.connection.commit()

    def _purge_messages(self, memory: Any, phone: str) -> None:
        """Mem0 keeps a caller's last messages (the transcript it inferred from) as context for the next
        extraction, in the history database: an erased caller's words must not stay there."""
        from mem0.memory.main import _build_session_scope

        db = memory.db
        with self._call, db._lock:
            db.connection.execute(
                "DELETE FROM messages WHERE session_scope = ?", (_build_session_scope({"user_id": phone}),)
            )
            db.connection.commit()

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except MemoryUnavailable:
            raise
        except Exception as exc:
            # The message may quote a memory's text or a phone number: keep only the type.
            raise MemoryUnavailable(f"the local memory store failed to {operation} ({type(exc).__name__})") from exc


def _stored(row: dict[str, Any]) -> StoredMemory:
    metadata = row.get("metadata") or {}
    score = row.get("score")
    return StoredMemory.from_metadata(
        str(row.get("id")),
        str(row.get("memory") or ""),
        metadata if isinstance(metadata, dict) else {},
        role=row.get("role") if isinstance(row.get("role"), str) else None,
        score=float(score) if isinstance(score, int | float) else None,
        created_at=row.get("created_at") if isinstance(row.get("created_at"), str) else None,
    )


def _batches(items: Sequence[MemoryItem]) -> list[list[MemoryItem]]:
    """One add per item, except the items to infer from: together, as one conversation."""
    batches: list[list[MemoryItem]] = []
    for item in items:
        if item.infer and batches and batches[-1][0].infer:
            batches[-1].append(item)
        else:
            batches.append([item])
    return batches

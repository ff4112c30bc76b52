"""``MemoryStore`` on the hosted Mem0 Platform (``mem0.MemoryClient``).

- The client is built on first use, not at start-up: its constructor makes a blocking ``GET
  /v1/ping/``, and a Mem0 outage must not stop the worker (or a Lambda cold start) from starting.
- We always hand it our own ``httpx.Client``: the SDK's default waits 300 s for an answer. Tests
  pass a client whose transport is a local stand-in.
- Each operation is retried with exponential backoff (and ``Retry-After`` on 429, capped) on
  transport errors, 408, 429 and 5xx. Everything else (401/403 bad key, 400/422 refused) fails
  at once. Either way the caller sees only ``MemoryUnavailable``, whose message never quotes
  the service's reply (it can echo memory text).
- Memories are added in a few requests per call (summary, collected data, evaluations, then the
  caller's statements) with ``infer=False``, each message becoming one memory. With inference on
  (``CALLVAULT_MEMORY_INFER``), the facts go the same way and the transcript goes in one request
  with ``infer=True``: Mem0 extracts and merges the caller's memories, each carrying the request's
  metadata, so deleting by ``conversation_id`` still replaces exactly one call's memories.
"""

import random
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from .domain import AGENT_KEY, Ids, Memories, MemoryItem, MemoryType, StoredMemory, facts_line, listing_order
from .errors import MemoryUnavailable
from .mem0_env import check_telemetry_off, prepare_mem0_environment
from .mem0_oss import LIST_SCAN_LIMIT

DEFAULT_HOST = "https://api.mem0.ai"
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_PAGE_SIZE = 100
_BATCH_DELETE = 1000  # the platform's batch limit
_MAX_RETRY_AFTER_SECS = 30.0
_PER_ITEM_KEYS = frozenset({"turn", "seq", "field"})  # one add request shares one metadata
T = TypeVar("T")
Rows = list[dict[str, Any]]


class Mem0PlatformMemoryStore:
    def __init__(
        self,
        api_key: str,
        host: str = DEFAULT_HOST,
        *,
        client: httpx.Client | None = None,
        timeout_secs: float = 10.0,
        max_retries: int = 3,
        backoff_secs: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        mem0_home: Path | None = None,
    ) -> None:
        prepare_mem0_environment(mem0_home)
        self._api_key = api_key
        self._host = host.rstrip("/")
        self._http = client or httpx.Client(timeout=httpx.Timeout(timeout_secs, connect=min(timeout_secs, 5.0)))
        self._max_retries = max_retries
        self._backoff = backoff_secs
        self._sleep = sleep
        self._client: Any = None
        self._lock = threading.Lock()

    # -- MemoryStore ---------------------------------------------------------------------------

    def add_conversation(self, phone: str, conversation_id: str, items: Sequence[MemoryItem]) -> int:
        where = {"AND": [{"user_id": phone}, {"metadata": {"conversation_id": conversation_id}}]}
        self._delete_ids(self._ids(where))
        stored = 0
        for group in _groups(items):
            metadata = {k: v for k, v in group[0].metadata.items() if k not in _PER_ITEM_KEYS}
            messages = [{"role": item.role, "content": item.text} for item in group]
            infer = group[0].infer
            self._call("add", partial(_add, messages=messages, phone=phone, metadata=metadata, infer=infer))
            # Inferred memories are extracted by Mem0, asynchronously: how many is not known here.
            stored += 0 if infer else len(group)
        return stored

    def search(self, phone: str, query: str, type: MemoryType | None = None, limit: int = 10) -> Memories:
        if not query.strip():
            return self.list(phone, type, limit)
        found = self._call("search", lambda c: c.search(query, filters=_where(phone, type), top_k=limit))
        return [_stored(r) for r in _results(found)][:limit]

    def list(self, phone: str, type: MemoryType | None = None, limit: int = 50) -> Memories:
        rows = self._all(_where(phone, type))
        memories = [_stored(r) for r in rows]
        memories.sort(key=listing_order)
        return memories[:limit]

    def caller_name(self, phone: str) -> str | None:
        """From the first page of the caller's factual memories (one request; no local copy to read)."""
        found = self._call("list", partial(_get_all, filters=_where(phone, "factual"), page=1))
        for memory in sorted((_stored(r) for r in _results(found)), key=listing_order):
            if memory.caller_name:
                return memory.caller_name
        return None

    def caller_facts(self, phone: str) -> str | None:
        """From the first page of the caller's factual memories: the newest call's collected values."""
        found = self._call("list", partial(_get_all, filters=_where(phone, "factual"), page=1))
        memories = sorted((_stored(r) for r in _results(found)), key=listing_order)
        newest = next((m.conversation_id for m in memories if m.source == "data_collection"), None)
        return facts_line([m.text for m in memories if m.source == "data_collection" and m.conversation_id == newest])

    def delete_caller(self, phone: str) -> int:
        count = len(self._ids({"user_id": phone}))

        def delete_user(client: Any) -> None:
            try:
                client.delete_users(user_id=phone)  # the user entity and all its memories
            except Exception as exc:
                if _status_of(exc) != 404:  # 404: nothing stored for this caller
                    raise

        self._call("delete", delete_user)
        return count

    # -- helpers -------------------------------------------------------------------------------

    def _all(self, filters: dict[str, Any]) -> Rows:
        rows: Rows = []
        page = 1
        while len(rows) < LIST_SCAN_LIMIT:
            found = self._call("list", partial(_get_all, filters=filters, page=page))
            batch = _results(found)
            rows.extend(batch)
            if not batch or not (isinstance(found, dict) and found.get("next")):
                break
            page += 1
        return rows

    def _ids(self, filters: dict[str, Any]) -> Ids:
        return [str(r["id"]) for r in self._all(filters) if r.get("id")]

    def _delete_ids(self, ids: Ids) -> None:
        for start in range(0, len(ids), _BATCH_DELETE):
            chunk = [{"memory_id": i} for i in ids[start : start + _BATCH_DELETE]]
            self._call("delete", partial(_batch_delete, chunk=chunk))

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                from mem0 import MemoryClient

                check_telemetry_off()
                self._client = MemoryClient(api_key=self._api_key, host=self._host, client=self._http)
            return self._client

    def _call(self, operation: str, fn: Callable[[Any], T]) -> T:
        attempt = 0
        while True:
            try:
                return fn(self._get_client())
            except Exception as exc:
                retryable, retry_after = _classify(exc)
                if not retryable or attempt >= self._max_retries:
                    raise MemoryUnavailable(
                        f"Mem0 Platform failed to {operation} ({_describe(exc)})", retryable=retryable
                    ) from exc
                delay = self._backoff * (2**attempt) * (0.5 + random.random())  # noqa: S311 - jitter
                self._sleep(min(max(delay, retry_after or 0.0), _MAX_RETRY_AFTER_SECS))
                attempt += 1


def _add(client: Any, *, messages: list[dict[str, str]], phone: str, metadata: dict[str, Any], infer: bool) -> Any:
    return client.add(messages, user_id=phone, metadata=metadata, infer=infer)


def _get_all(client: Any, *, filters: dict[str, Any], page: int) -> Any:
    return client.get_all(filters=filters, page=page, page_size=_PAGE_SIZE)


def _batch_delete(client: Any, *, chunk: list[dict[str, str]]) -> Any:
    return client.batch_delete(chunk)


def _groups(items: Sequence[MemoryItem]) -> list[list[MemoryItem]]:
    """Consecutive items of one type and source: one add request each (summary, collected data,
    evaluations, then what the caller said)."""
    groups: list[list[MemoryItem]] = []
    for item in items:
        first = groups[-1][0] if groups else None
        if first and (first.type, first.metadata.get("source"), first.infer) == (
            item.type,
            item.metadata.get("source"),
            item.infer,
        ):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def _where(phone: str, type: MemoryType | None) -> dict[str, Any]:
    if type is None:
        return {"user_id": phone}
    return {"AND": [{"user_id": phone}, {"metadata": {"type": type}}]}


def _results(found: Any) -> Rows:
    rows = found.get("results", []) if isinstance(found, dict) else found
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status behind an SDK error: its debug info, or the httpx error it was raised from."""
    debug = getattr(exc, "debug_info", None)
    if isinstance(debug, dict) and isinstance(debug.get("status_code"), int):
        return int(debug["status_code"])
    for cause in (exc, exc.__cause__, exc.__context__):
        if isinstance(cause, httpx.HTTPStatusError):
            return cause.response.status_code
    return None


def _classify(exc: BaseException) -> tuple[bool, float | None]:
    """(retryable, seconds the service asked us to wait)."""
    for cause in (exc, exc.__cause__, exc.__context__):
        if isinstance(cause, httpx.TransportError):
            return True, None
    status = _status_of(exc)
    if status is None:
        # The SDK's NetworkError without a status is a transport failure it wrapped.
        return type(exc).__name__ == "NetworkError", None
    retry_after = None
    debug = getattr(exc, "debug_info", None)
    if isinstance(debug, dict) and isinstance(debug.get("retry_after"), int):
        retry_after = float(debug["retry_after"])
    return status in _RETRY_STATUSES or status >= 500, retry_after


def _describe(exc: BaseException) -> str:
    status = _status_of(exc)
    return f"HTTP {status}" if status is not None else type(exc).__name__


def _stored(row: dict[str, Any]) -> StoredMemory:
    metadata = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    score = row.get("score")
    return StoredMemory.from_metadata(
        str(row.get("id")),
        str(row.get("memory") or ""),
        metadata or {},
        role=row.get("role") if isinstance(row.get("role"), str) else None,
        score=float(score) if isinstance(score, int | float) else None,
        created_at=row.get("created_at") if isinstance(row.get("created_at"), str) else None,
    )


__all__ = ["AGENT_KEY", "DEFAULT_HOST", "Mem0PlatformMemoryStore"]

"""Read-side use cases: a caller's memories, the conversation-initiation answer, the in-call tool.

The conversation-initiation webhook runs while the caller hears the phone ring, so it answers from
the call index and the memory store only (no LLM, no transcript reads), and it always answers:
a store that is down, slow or empty yields the first-time-caller answer, never an error, because
an error there could cost the call itself.
"""

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from services.core.domain import phone as phone_domain
from services.core.domain.errors import CallVaultError, InvalidCursor, StorageUnavailable, Unauthorized
from services.core.domain.matching import matches_any
from services.core.domain.models import STATUS_INITIATION_FAILED, CallQuery, CallRecord
from services.core.ports import CallIndex

from .domain import Memories, MemoryType, StoredMemory, listing_order
from .extract import near_duplicates
from .ports import MemoryStore

SECRET_HEADER = "X-CallVault-Secret"  # noqa: S105 - a header name
INIT_RESPONSE_TYPE = "conversation_initiation_client_data"
PAST_CALLS_COUNTED = 100  # one index page; beyond that the count says 100
SUMMARY_CHARS = 240
HISTORY_CHARS = 600
TOOL_LIMIT = 5
LIST_DEPTH = 5000  # a listing walks at most this many of one caller's memories (the stores' own scan bound)
TOOL_OVERFETCH = 4  # the tool asks for 4x its answer, so dropping duplicates still fills it
TOOL_FACTS_READ = 50  # factual memories the tool reads for an empty query (newest calls first)
TOOL_ITEM_CHARS = 300  # each answer item at most this long: what a caller says must not flood the agent's context
SEARCH_DEPTH = 500  # a search pages at most this deep into the ranking
MAX_CURSOR_CHARS = 1024
# The voice agent's reads wait at most this for the index and the memory store, all their requests together
# (a Platform client's first use pings, then the name and the facts are two more requests, each with its own
# timeout; DynamoDB's client waits up to 30 s a read).
AGENT_WAIT_SECS = 3.0
_AGENT_READERS = 4  # a store that hangs holds at most this many threads; later reads time out in the queue
_BAD_CURSOR = "cursor is not valid: pass back next_cursor unchanged, with the same q and type"


class AgentSecrets:
    """Secrets for ``X-CallVault-Secret``: any one matches, compared in constant time; empty refuses all."""

    def __init__(self, secrets: list[str]) -> None:
        self._secrets = tuple(s.encode("utf-8") for s in secrets if s)

    def __len__(self) -> int:
        return len(self._secrets)

    def check(self, presented: str | None) -> None:
        if not presented:
            raise Unauthorized(f"missing {SECRET_HEADER} header")
        value = presented.strip().encode("utf-8")
        if not matches_any(value, self._secrets):
            raise Unauthorized(f"{SECRET_HEADER} is not valid")


@dataclass(frozen=True)
class MemoryPage:
    items: Memories
    next_cursor: str | None = None


def caller_memories(
    phone: str,
    *,
    store: MemoryStore,
    query: str | None = None,
    type: MemoryType | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> MemoryPage:
    """One page of the caller's memories: semantic search when ``query`` is given, else newest first.

    ``cursor`` (from the previous page's ``next_cursor``) continues the walk. A listing cursor holds the
    last item's place in listing order, so memories added meanwhile neither repeat nor shift the walk;
    a search cursor holds an offset into the ranking (at most ``SEARCH_DEPTH`` deep). A caller with no
    memories gets an empty page: "we know nothing about this number" is an answer, not a missing
    resource.
    """
    text = query.strip() if query else ""
    scope = _scope(phone, text, type)
    position = decode_cursor(cursor, scope) if cursor else {}
    if text:
        offset = position.get("o", 0)
        if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < SEARCH_DEPTH:
            raise InvalidCursor(_BAD_CURSOR)
        found = store.search(phone, in_callers_words(text), type, min(offset + limit + 1, SEARCH_DEPTH))
        items = found[offset : offset + limit]
        more = len(found) > offset + limit and offset + limit < SEARCH_DEPTH
        return MemoryPage(items, encode_cursor({"o": offset + limit}, scope) if more else None)
    after = position.get("a")
    if after is not None and not _valid_key(after):
        raise InvalidCursor(_BAD_CURSOR)
    ordered = store.list(phone, type, LIST_DEPTH)
    rest = [m for m in ordered if after is None or _page_key(m) > tuple(after)]
    items = rest[:limit]
    more = len(rest) > limit
    return MemoryPage(items, encode_cursor({"a": list(_page_key(items[-1]))}, scope) if more else None)


_THIRD_PERSON = {
    "she": "I",
    "he": "I",
    "her": "my",
    "his": "my",
    "him": "me",
    "hers": "mine",
    "herself": "myself",
    "himself": "myself",
    "she's": "I'm",
    "he's": "I'm",
    "caller": "I",
    "caller's": "my",
}
_QUERY_WORD = re.compile(r"[A-Za-z']+")


def in_callers_words(query: str) -> str:
    """``"where did she grow up"`` -> ``"where did I grow up"``: memories are the caller's first person,
    and agents ask about the caller in the third (measured: the caller's answer went from second to first,
    benchmarks/memory_recall.py)."""
    text = re.sub(r"\bthe caller\b", "caller", query, flags=re.IGNORECASE)
    return _QUERY_WORD.sub(lambda m: _THIRD_PERSON.get(m.group(0).lower(), m.group(0)), text)


def encode_cursor(position: dict[str, Any], scope: str) -> str:
    body = orjson.dumps({"v": 1, "s": scope, "p": position}, option=orjson.OPT_SORT_KEYS)
    return base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, scope: str) -> dict[str, Any]:
    """The position in ``cursor``; ``InvalidCursor`` (400) when it is not one of ours or was issued for
    another caller, query or type. Not signed: a position only moves within what the key may read."""
    if len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii():
        raise InvalidCursor(_BAD_CURSOR)
    try:
        body = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidCursor(_BAD_CURSOR) from None
    if not isinstance(body, dict) or body.get("v") != 1 or not isinstance(body.get("p"), dict):
        raise InvalidCursor(_BAD_CURSOR)
    if body.get("s") != scope:
        raise InvalidCursor("cursor belongs to another caller, query or type; start again without a cursor")
    position: dict[str, Any] = body["p"]
    return position


def _scope(phone: str, query: str, type: MemoryType | None) -> str:
    canonical = orjson.dumps([phone, " ".join(query.split()), type])
    return hashlib.sha256(canonical).hexdigest()[:24]


def _page_key(memory: StoredMemory) -> tuple[int, str, int, int, str, str]:
    return (*listing_order(memory), memory.id)


def _valid_key(value: object) -> bool:
    kinds = (int, str, int, int, str, str)
    return (
        isinstance(value, list)
        and len(value) == len(kinds)
        and all(isinstance(v, k) and not isinstance(v, bool) for v, k in zip(value, kinds, strict=True))
    )


@dataclass(frozen=True)
class CallerProfile:
    """What the agent is told about the caller before saying hello."""

    phone: str | None
    past_calls: int = 0
    name: str | None = None
    last_call_at: int | None = None
    last_call_summary: str | None = None
    history_summary: str | None = None
    facts: str | None = None
    degraded: bool = False  # the index or the memory store did not answer: partial profile

    def dynamic_variables(self) -> dict[str, Any]:
        """Every variable, always: ElevenLabs requires each variable the agent's prompt uses."""
        return {
            "caller_known": self.past_calls > 0,
            "caller_name": self.name or "",
            "caller_past_calls": self.past_calls,
            "caller_last_call_at": _date(self.last_call_at),
            "caller_last_call_summary": self.last_call_summary or "",
            "caller_history_summary": self.history_summary or "",
            "caller_facts": self.facts or "",
        }


_agent_reads = ThreadPoolExecutor(_AGENT_READERS, thread_name_prefix="callvault-agent-read")  # threads start on use


def within(wait_secs: float | None, read: Callable[[], Any]) -> Any:
    """``read()``, or ``StorageUnavailable`` once ``wait_secs`` have passed (the read goes on in the
    background and its answer is dropped): the phone is ringing, the caller must not wait for Mem0."""
    if wait_secs is None:
        return read()
    future = _agent_reads.submit(read)
    try:
        return future.result(timeout=wait_secs)
    except FutureTimeout:
        future.cancel()
        raise StorageUnavailable(f"no answer within {wait_secs:g} s") from None


def caller_profile(
    caller_id: object,
    *,
    index: CallIndex,
    store: MemoryStore,
    default_region: str = "US",
    on_error: Callable[[str, BaseException], None] | None = None,
    wait_secs: float | None = None,
) -> CallerProfile:
    phone = _caller(caller_id, default_region)
    if phone is None:
        return CallerProfile(None)
    deadline = None if wait_secs is None else time.monotonic() + wait_secs

    def left() -> float | None:  # the index and the store share one wait: the phone rings through both
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    degraded = False
    calls: list[CallRecord] = []
    try:
        page = within(left(), lambda: index.list_calls(CallQuery(phone=phone, limit=PAST_CALLS_COUNTED)))
        calls = [c for c in page.items if c.status != STATUS_INITIATION_FAILED]
    except Exception as exc:
        degraded = True
        _report(on_error, "index", exc)
    name = facts = None
    if calls:  # a number we never spoke to has no memories: skip the store
        try:
            # Rows the store keeps for this moment, never a vector listing: that waits for the store's
            # lock behind the worker (measured: p99 146-178 ms instead of 17-40 ms).
            name, facts = within(left(), lambda: (store.caller_name(phone), store.caller_facts(phone)))
        except Exception as exc:
            degraded = True
            _report(on_error, "memory", exc)
    last = calls[0] if calls else None
    return CallerProfile(
        phone=phone,
        past_calls=len(calls),
        name=name,
        last_call_at=last.started_at if last else None,
        last_call_summary=_clip(last.summary or last.summary_title, SUMMARY_CHARS) if last else None,
        history_summary=_history(calls),
        facts=facts,
        degraded=degraded,
    )


def conversation_init_response(profile: CallerProfile, first_message: str | None = None) -> dict[str, Any]:
    """The body ElevenLabs expects: ``dynamic_variables`` and, optionally, a first-message override.

    The override is sent only for a returning caller whose name we know, and only when configured:
    ElevenLabs refuses overrides the agent's Security tab does not allow.
    """
    body: dict[str, Any] = {"type": INIT_RESPONSE_TYPE, "dynamic_variables": profile.dynamic_variables()}
    if first_message and profile.past_calls and profile.name:
        text = first_message.replace("{caller_name}", profile.name)
        body["conversation_config_override"] = {"agent": {"first_message": text}}
    return body


def memory_search_tool(
    query: object,
    caller_id: object,
    *,
    store: MemoryStore,
    default_region: str = "US",
    limit: int = TOOL_LIMIT,
    on_error: Callable[[str, BaseException], None] | None = None,
    wait_secs: float | None = None,
) -> dict[str, Any]:
    """What the agent's LLM gets back from ``memory-search``: short, plain, and never an error it
    would have to explain to the caller."""
    phone = _caller(caller_id, default_region)
    text = query.strip() if isinstance(query, str) else ""
    if phone is None:
        return {"caller_known": False, "results": [], "note": "no caller phone number for this conversation"}
    try:
        if text:
            question = in_callers_words(text)
            found = within(wait_secs, lambda: store.search(phone, question, None, limit * TOOL_OVERFETCH))
        else:  # no question: what we know, newest call first
            found = within(wait_secs, lambda: store.list(phone, "factual", TOOL_FACTS_READ))
    except CallVaultError as exc:
        _report(on_error, "memory", exc)
        return {"caller_known": None, "results": [], "note": "memory is temporarily unavailable"}
    return {"caller_known": bool(found), "results": [_tool_item(m) for m in best_memories(found, limit)]}


def best_memories(found: Memories, limit: int) -> Memories:
    """The first ``limit`` memories (in the order given: best or newest first) worth telling an agent:
    evaluation results are about the agent, not the caller; and what the caller said in several calls
    is told once."""
    best: Memories = []
    for memory in found:
        if memory.source == "evaluation" or not memory.text.strip():
            continue
        if any(near_duplicates(memory.text, kept.text) for kept in best):
            continue
        best.append(memory)
        if len(best) == limit:
            break
    return best


def _caller(caller_id: object, default_region: str) -> str | None:
    """The number the agent's caller has memories under; None without one, or for a placeholder many
    callers share (a withheld number), which knows nobody."""
    phone = phone_domain.to_e164(caller_id, default_region)
    return phone if phone is not None and phone_domain.names_one_caller(phone) else None


def _tool_item(memory: StoredMemory) -> dict[str, Any]:
    text = memory.text if len(memory.text) <= TOOL_ITEM_CHARS else memory.text[: TOOL_ITEM_CHARS - 1] + "…"
    return {
        "text": text,
        "type": memory.type,
        "role": memory.role,
        "source": memory.source,
        "conversation_id": memory.conversation_id,
        "call_date": _date(memory.started_at),
        "score": round(memory.score, 3) if memory.score is not None else None,
    }


def _history(calls: list[CallRecord]) -> str | None:
    """``"3 earlier calls. 2025-07-06: <summary>. 2025-07-01: <title>."`` within ``HISTORY_CHARS``."""
    if not calls:
        return None
    count = f"{len(calls)}{'+' if len(calls) >= PAST_CALLS_COUNTED else ''}"
    parts = [f"{count} earlier call{'s' if len(calls) != 1 else ''}."]
    for call in calls[:3]:
        about = call.summary_title or call.summary
        if about:
            parts.append(f"{_date(call.started_at) or 'undated'}: {_clip(about, 160)}")
    return _clip(" ".join(parts), HISTORY_CHARS)


def _clip(text: str | None, limit: int) -> str | None:
    if not text:
        return None
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _date(unix: int | None) -> str:
    return datetime.fromtimestamp(unix, UTC).date().isoformat() if unix else ""


def _report(on_error: Callable[[str, BaseException], None] | None, source: str, exc: BaseException) -> None:
    if on_error is not None:
        on_error(source, exc)

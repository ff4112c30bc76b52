"""Read-side use cases: a caller's memories, the conversation-initiation answer, the in-call tool.

The conversation-initiation webhook runs while the caller hears the phone ring, so it answers from
the call index and the memory store only (no LLM, no transcript reads), and it always answers:
a store that is down, slow or empty yields the first-time-caller answer, never an error, because
an error there could cost the call itself.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.core.domain import phone as phone_domain
from services.core.domain.errors import CallVaultError, Unauthorized
from services.core.domain.matching import matches_any
from services.core.domain.models import STATUS_INITIATION_FAILED, CallQuery, CallRecord
from services.core.ports import CallIndex

from .domain import Memories, MemoryType, StoredMemory
from .ports import MemoryStore

SECRET_HEADER = "X-CallVault-Secret"  # noqa: S105 - a header name
INIT_RESPONSE_TYPE = "conversation_initiation_client_data"
PAST_CALLS_COUNTED = 100  # one index page; beyond that the count says 100
SUMMARY_CHARS = 240
HISTORY_CHARS = 600
TOOL_LIMIT = 5


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


def caller_memories(
    phone: str, *, store: MemoryStore, query: str | None = None, type: MemoryType | None = None, limit: int = 20
) -> Memories:
    """Semantic search within the caller's memories when ``query`` is given, else newest first.

    A caller with no memories gets an empty list: "we know nothing about this number" is an
    answer, not a missing resource.
    """
    if query and query.strip():
        return store.search(phone, query.strip(), type, limit)
    return store.list(phone, type, limit)


@dataclass(frozen=True)
class CallerProfile:
    """What the agent is told about the caller before saying hello."""

    phone: str | None
    past_calls: int = 0
    name: str | None = None
    last_call_at: int | None = None
    last_call_summary: str | None = None
    history_summary: str | None = None
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
        }


def caller_profile(
    caller_id: object,
    *,
    index: CallIndex,
    store: MemoryStore,
    default_region: str = "US",
    on_error: Callable[[str, BaseException], None] | None = None,
) -> CallerProfile:
    phone = phone_domain.to_e164(caller_id, default_region)
    if phone is None:
        return CallerProfile(None)
    degraded = False
    calls: list[CallRecord] = []
    try:
        page = index.list_calls(CallQuery(phone=phone, limit=PAST_CALLS_COUNTED))
        calls = [c for c in page.items if c.status != STATUS_INITIATION_FAILED]
    except Exception as exc:
        degraded = True
        _report(on_error, "index", exc)
    name = None
    if calls:  # a number we never spoke to has no memories: skip the store
        try:
            name = store.caller_name(phone)
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
) -> dict[str, Any]:
    """What the agent's LLM gets back from ``memory-search``: short, plain, and never an error it
    would have to explain to the caller."""
    phone = phone_domain.to_e164(caller_id, default_region)
    text = query.strip() if isinstance(query, str) else ""
    if phone is None:
        return {"caller_known": False, "results": [], "note": "no caller phone number for this conversation"}
    try:
        found = store.search(phone, text, None, limit) if text else store.list(phone, "factual", limit)
    except CallVaultError as exc:
        _report(on_error, "memory", exc)
        return {"caller_known": None, "results": [], "note": "memory is temporarily unavailable"}
    return {"caller_known": bool(found), "results": [_tool_item(m) for m in found]}


def _tool_item(memory: StoredMemory) -> dict[str, Any]:
    return {
        "text": memory.text,
        "type": memory.type,
        "role": memory.role,
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

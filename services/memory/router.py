"""The memory routes (FastAPI). The app factory supplies the API-key dependency and ``app.state.memory``.

- ``GET /callers/{phone}/memories``: bearer API key, like ``/calls`` (the factory passes the search
  API's ``require_api_key``; the AWS memory function passes its own over the same keys).
- ``POST /webhooks/elevenlabs/conversation-init`` and ``POST /tools/memory-search``: called by
  ElevenLabs, authenticated with the shared secret in ``X-CallVault-Secret``. The secret is checked
  before the body is read or parsed, so an unauthenticated caller learns nothing from a 422.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from services.core.domain import phone as phone_domain
from services.core.domain.errors import InvalidPayload
from services.core.ports import CallIndex
from services.web.body import read_bounded
from services.web.edge import add_log_fields
from services.web.params import parse_phone
from services.web.query import UNKNOWN_PARAMETER, reject_unknown_query_params

from .domain import StoredMemory
from .ports import MemoryStore
from .service import (
    AGENT_WAIT_SECS,
    SECRET_HEADER,
    AgentSecrets,
    caller_memories,
    caller_profile,
    conversation_init_response,
    memory_search_tool,
)

MAX_AGENT_BODY_BYTES = 64 * 1024  # ElevenLabs sends a few hundred bytes
MAX_LIMIT = 100
CALLER = "+16125550142"


def _error(description: str, code: str, message: str) -> dict[str, Any]:
    """A ``responses`` entry: the one error envelope, with an example."""
    example = {"error": {"code": code, "message": message}, "request_id": "a1b2c3d4e5f60718"}
    return {"description": description, "content": {"application/json": {"example": example}}}


def _json_example(description: str, example: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"example": example}}}


# The agent routes read their body themselves (the secret is checked before it is parsed), so their
# request schema and the secret header are described here for /docs, where they can be tried.
_AGENT_SECRET = {
    "name": SECRET_HEADER,
    "in": "header",
    "required": True,
    "schema": {"type": "string"},
    "description": "The agent secret: `DATA_DIR/agent-secret` locally (`cat` it), the SSM parameter on AWS.",
}
_AGENT_UNAUTHORIZED = _error("missing or wrong agent secret", "unauthorized", f"{SECRET_HEADER} is not valid")


def _agent_body(description: str, properties: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties}
    return {
        "parameters": [_AGENT_SECRET],
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": schema, "example": example}},
        },
    }


_INIT_DOC = _agent_body(
    "What ElevenLabs sends before a call (unknown fields are ignored).",
    {
        "caller_id": {"type": "string", "description": "the caller's number"},
        "agent_id": {"type": "string"},
        "called_number": {"type": "string"},
        "call_sid": {"type": "string"},
    },
    {"caller_id": CALLER, "agent_id": "agent_01jxbrc1trfxev5sdp5xk4ra67", "called_number": "+16125550100"},
)
_INIT_ANSWER = {
    "type": "conversation_initiation_client_data",
    "dynamic_variables": {
        "caller_known": True,
        "caller_name": "Maria",
        "caller_past_calls": 2,
        "caller_last_call_at": "2025-07-06",
        "caller_last_call_summary": "Asked to move her appointment to Friday.",
        "caller_history_summary": "2 earlier calls. ...",
    },
}
_TOOL_DOC = _agent_body(
    "The agent tool's parameters.",
    {
        "query": {"type": "string", "description": "what to look for; empty lists the caller's facts"},
        "caller_id": {"type": "string", "description": "usually `{{system__caller_id}}`"},
    },
    {"query": "daughter visiting", "caller_id": CALLER},
)
_TOOL_ANSWER = {
    "caller_known": True,
    "results": [{"text": "My daughter Ana is visiting from Porto next week", "type": "semantic", "role": "user"}],
}
_MEMORIES_EXAMPLE = {
    "items": [
        {
            "id": "6f1c1a6e-2f0e-4a57-9d55-0c7d1c2b9f10",
            "text": "My daughter Ana is visiting from Porto next week",
            "type": "semantic",
            "role": "user",
            "source": "turn",
            "conversation_id": "conv_01jzfrjvcce0vsea1fcbpp9p04",
            "agent_id": "agent_01jxbrc1trfxev5sdp5xk4ra67",
            "started_at": 1751802015,
            "score": 0.61,
            "created_at": "2025-07-06T11:41:02+00:00",
        }
    ],
    "next_cursor": None,
}


@dataclass
class MemoryContext:
    """Everything the routes need, built once per process by the app factory (``app.state.memory``)."""

    store: MemoryStore
    index: CallIndex
    agent_secrets: AgentSecrets
    default_region: str = "US"
    first_message: str | None = None
    logger: Any = None
    clock: Callable[[], float] = field(default=time.time)
    agent_wait_secs: float | None = AGENT_WAIT_SECS  # the voice agent's reads give up on the store after this

    def on_error(self, source: str, exc: BaseException) -> None:
        if self.logger is not None:
            code = getattr(exc, "code", None)
            self.logger.warning(
                "memory read degraded",
                extra={"source": source, "error_code": code if isinstance(code, str) else type(exc).__name__},
            )


def get_memory_context(request: Request) -> MemoryContext:
    context: MemoryContext = request.app.state.memory
    return context


Context = Annotated[MemoryContext, Depends(get_memory_context)]


class MemoryOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "6f1c1a6e-2f0e-4a57-9d55-0c7d1c2b9f10",
                    "text": "I want to talk about my trip to Lisbon last spring",
                    "type": "semantic",
                    "role": "user",
                    "source": "turn",
                    "conversation_id": "conv_01jzfrjvcce0vsea1fcbpp9p04",
                    "agent_id": "agent_01jxbrc1trfxev5sdp5xk4ra67",
                    "started_at": 1751802015,
                    "score": 0.61,
                    "created_at": "2025-07-06T11:41:02+00:00",
                }
            ]
        }
    )

    id: str
    text: str
    type: str | None = Field(None, description="factual (summary, evaluations, collected data) or semantic (a turn)")
    role: str | None = Field(None, description="user: the caller's words, or a fact about the caller")
    source: str | None = Field(
        None, description="summary, data_collection or evaluation (factual); turn (what the caller said)"
    )
    conversation_id: str | None = None
    agent_id: str | None = None
    started_at: int | None = Field(None, description="the call's start, unix seconds UTC")
    score: float | None = Field(None, description="similarity to q (only with q)")
    created_at: str | None = None

    @classmethod
    def of(cls, memory: StoredMemory) -> "MemoryOut":
        return cls(
            id=memory.id,
            text=memory.text,
            type=memory.type,
            role=memory.role,
            source=memory.source,
            conversation_id=memory.conversation_id,
            agent_id=memory.agent_id,
            started_at=memory.started_at,
            score=memory.score,
            created_at=memory.created_at,
        )


class MemoryList(BaseModel):
    items: list[MemoryOut]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null on the last page")


def create_memory_router(require_api_key: Callable[..., Any]) -> APIRouter:
    router = APIRouter(
        tags=["memory"], dependencies=[Depends(reject_unknown_query_params)], responses={400: UNKNOWN_PARAMETER}
    )

    @router.get(
        "/callers/{phone}/memories",
        response_model=MemoryList,
        summary="A caller's memories (semantic search with q)",
        description=(
            "What CallVault remembers about one caller, each with the conversation it came from. Without "
            "`q`, newest call first; with `q`, the most similar first. Pages of `limit`: pass `next_cursor` "
            "back as `cursor` (with the same `q` and `type`) for the next. A caller with no memories gets an "
            "empty list."
        ),
        dependencies=[Depends(require_api_key)],
        responses={
            200: _json_example("the caller's memories", _MEMORIES_EXAMPLE),
            400: _error("the cursor is not one of ours", "invalid_cursor", "cursor is not valid"),
            401: _error("missing or wrong API key", "unauthorized", "API key is not valid"),
            422: _error("a parameter is wrong", "invalid_request", "phone is too short to be a phone number"),
        },
    )
    def list_caller_memories(
        request: Request,
        context: Context,
        phone: Annotated[str, Path(max_length=64, description="E.164 (`+16125550142`) or as typed; encode `+`")],
        q: Annotated[str | None, Query(max_length=500, description="search text")] = None,
        type: Annotated[Literal["factual", "semantic"] | None, Query(description="only this kind")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
        cursor: Annotated[
            str | None, Query(max_length=1024, description="`next_cursor` of the previous page (same q and type)")
        ] = None,
    ) -> MemoryList:
        e164 = parse_phone(phone, context.default_region)
        add_log_fields(request, phone=phone_domain.mask(e164), searched=bool(q), type=type, paged=bool(cursor))
        page = caller_memories(e164, store=context.store, query=q, type=type, limit=limit, cursor=cursor)
        add_log_fields(request, items=len(page.items))
        return MemoryList(items=[MemoryOut.of(m) for m in page.items], next_cursor=page.next_cursor)

    @router.post(
        "/webhooks/elevenlabs/conversation-init",
        summary="ElevenLabs conversation-initiation webhook: greet returning callers",
        description=(
            "ElevenLabs calls this while the phone rings with `{caller_id, agent_id, called_number, call_sid}`. "
            "Answers `dynamic_variables` (caller_known, caller_name, caller_past_calls, caller_last_call_at, "
            "caller_last_call_summary, caller_history_summary) from the index and the memory store, without an "
            f"LLM call. Always 200 once authenticated (`{SECRET_HEADER}`)."
        ),
        openapi_extra=_INIT_DOC,
        responses={
            200: _json_example("the caller's dynamic variables", _INIT_ANSWER),
            401: _AGENT_UNAUTHORIZED,
        },
    )
    async def conversation_init(request: Request, context: Context) -> JSONResponse:
        body = await _authenticated_json(request, context)
        started = time.perf_counter()
        profile = await run_in_threadpool(
            caller_profile,
            body.get("caller_id"),
            index=context.index,
            store=context.store,
            default_region=context.default_region,
            on_error=context.on_error,
            wait_secs=context.agent_wait_secs,
        )
        add_log_fields(
            request,
            phone=phone_domain.mask(profile.phone),
            past_calls=profile.past_calls,
            name_known=profile.name is not None,
            degraded=profile.degraded,
            lookup_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return JSONResponse(conversation_init_response(profile, context.first_message))

    @router.post(
        "/tools/memory-search",
        summary="ElevenLabs server tool: search the caller's memories during a call",
        description=(
            f"Body `{{query, caller_id}}`; `caller_id` is usually the `{{{{system__caller_id}}}}` dynamic variable. "
            f"Authenticated with `{SECRET_HEADER}`. Answers 200 with `results` (empty when nothing is known)."
        ),
        openapi_extra=_TOOL_DOC,
        responses={200: _json_example("what the agent's LLM reads", _TOOL_ANSWER), 401: _AGENT_UNAUTHORIZED},
    )
    async def memory_search(request: Request, context: Context) -> JSONResponse:
        body = await _authenticated_json(request, context)
        result = await run_in_threadpool(
            memory_search_tool,
            body.get("query"),
            body.get("caller_id"),
            store=context.store,
            default_region=context.default_region,
            on_error=context.on_error,
            wait_secs=context.agent_wait_secs,
        )
        add_log_fields(request, results=len(result["results"]))
        return JSONResponse(result)

    return router


async def _authenticated_json(request: Request, context: MemoryContext) -> dict[str, Any]:
    context.agent_secrets.check(request.headers.get(SECRET_HEADER))
    raw = await read_bounded(request, MAX_AGENT_BODY_BYTES)
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidPayload("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidPayload("body must be a JSON object")
    return body

"""``DELETE /callers/{phone}`` (erase a caller) and ``GET /audit`` (the audit trail), for ``admin``
keys. The app factory supplies the API-key dependency (it returns the request's ``Principal``) and
``app.state.privacy``."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from starlette.concurrency import run_in_threadpool

from services.core.domain import keys
from services.core.domain import phone as phone_domain
from services.core.domain.errors import NotFound
from services.web.auth import Principal, require_role
from services.web.edge import documented_error
from services.web.params import parse_instant, parse_phone
from services.web.query import UNKNOWN_PARAMETER, reject_unknown_query_params

from .audit import Auditor
from .service import Eraser


@dataclass
class PrivacyContext:
    eraser: Eraser
    default_region: str = "US"
    audit: Auditor | None = None


def create_privacy_router(require_api_key: Callable[..., Principal], context: PrivacyContext) -> APIRouter:
    # Strict like every data route, after the key (cached: the routes' Caller reuses it): a misspelt
    # `?dry-run=true`, ignored, would erase the caller for real.
    router = APIRouter(
        tags=["privacy"],
        dependencies=[Depends(require_api_key), Depends(reject_unknown_query_params)],
        responses={
            400: UNKNOWN_PARAMETER,
            401: documented_error("missing or wrong API key", "unauthorized", "API key is not valid"),
            403: documented_error("a key below admin", "forbidden", "erasure needs a key with the 'admin' role"),
        },
    )
    Caller = Annotated[Principal, Depends(require_api_key)]

    @router.delete(
        "/callers/{phone}",
        summary="Erase a caller everywhere (admin key)",
        description="Every archive object (and S3 version), index row, analytics row, memory and memory "
        "job of the caller. `dry_run=true` counts what would go. `upstream=true` also deletes the "
        "conversations at ElevenLabs (the server needs `ELEVENLABS_API_KEY`); those it could not delete are "
        "listed in `upstream.failed` and keep their index row: send the same request again. Idempotent.",
        responses={
            409: documented_error(
                "data under a legal hold",
                "held",
                "under legal hold hold_0123456789ab (*******0142) since 2026-11-02: 'case 2026-114'; "
                "release it first (`callvault release hold_0123456789ab`)",
            ),
            503: documented_error("a store did not answer; retry", "storage_unavailable", "storage is unavailable"),
        },
    )
    async def erase_caller(
        caller: Caller,
        phone: Annotated[str, Path(description="the number as people type it")],
        dry_run: Annotated[bool, Query()] = False,
        upstream: Annotated[bool, Query(description="also delete the conversations at ElevenLabs")] = False,
    ) -> dict[str, Any]:
        require_role(caller, "admin", "erasure")
        e164 = parse_phone(phone, context.default_region)

        def run() -> dict[str, Any]:
            plan = context.eraser.plan_caller(e164)
            eraser = context.eraser
            if dry_run:
                summary = eraser.dry_run(plan, upstream=upstream)
            else:
                summary = eraser.erase(plan, actor=caller.key_id, upstream=upstream)
            return summary.to_dict()

        result = await run_in_threadpool(run)
        result["phone"] = phone_domain.mask(e164)
        return result

    @router.get(
        "/audit",
        summary="The audit trail (admin key)",
        description="Erasures, key changes and every transcript or audio access, oldest first, with the "
        "chain check. Conversations are named by keyed hash: `conversation` finds one call's entries. "
        "Without `after`, the newest `limit` entries; with `after=SEQ`, the first `limit` entries after that "
        "one, and `next_after` names the next page's `after` (null: none left).",
        responses={404: documented_error("no audit trail kept here", "not_found", "no audit trail on this deployment")},
    )
    async def audit_trail(
        caller: Caller,
        since: Annotated[str | None, Query(description="ISO 8601 or unix seconds")] = None,
        conversation: Annotated[str | None, Query(max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        after: Annotated[int | None, Query(ge=0, description="page forward: entries after this seq")] = None,
    ) -> dict[str, Any]:
        require_role(caller, "admin", "the audit trail")
        if context.audit is None:
            raise NotFound("no audit trail on this deployment")
        auditor = context.audit
        start = parse_instant("since", since) if since else None
        cid = keys.check_conversation_id(conversation) if conversation else None

        def run() -> dict[str, Any]:
            entries = auditor.entries(since=start, conversation_id=cid)
            check = auditor.check()
            if after is None:
                page, next_after = entries[-limit:], None
            else:
                rest = [entry for entry in entries if entry.seq > after]
                page = rest[:limit]
                next_after = page[-1].seq if len(rest) > limit else None
            return {
                "items": [entry.to_dict() for entry in page],
                "next_after": next_after,
                "chain": {"ok": check.ok, "entries": check.entries, "head": check.head, "problem": check.problem},
            }

        return await run_in_threadpool(run)

    return router


def mount_privacy(app: Any, context: PrivacyContext, require_api_key: Callable[..., Principal]) -> None:
    app.state.privacy = context
    app.include_router(create_privacy_router(require_api_key, context))

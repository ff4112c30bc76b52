"""``DELETE /callers/{phone}``: erase a caller, for an ``admin`` key. The app factory supplies the
API-key dependency (it returns the request's ``Principal``) and ``app.state.privacy``."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from starlette.concurrency import run_in_threadpool

from services.core.domain import phone as phone_domain
from services.web.auth import Principal, require_role
from services.web.params import parse_phone

from .service import Eraser


@dataclass
class PrivacyContext:
    eraser: Eraser
    default_region: str = "US"


def create_privacy_router(require_api_key: Callable[..., Principal], context: PrivacyContext) -> APIRouter:
    router = APIRouter(tags=["privacy"])
    Caller = Annotated[Principal, Depends(require_api_key)]

    @router.delete(
        "/callers/{phone}",
        summary="Erase a caller everywhere (admin key)",
        description="Every archive object (and S3 version), index row, analytics row, memory and memory "
        "job of the caller. `dry_run=true` counts what would go. Idempotent.",
    )
    async def erase_caller(
        caller: Caller,
        phone: Annotated[str, Path(description="the number as people type it")],
        dry_run: Annotated[bool, Query()] = False,
    ) -> dict[str, Any]:
        require_role(caller, "admin", "erasure")
        e164 = parse_phone(phone, context.default_region)

        def run() -> dict[str, Any]:
            plan = context.eraser.plan_caller(e164)
            summary = context.eraser.dry_run(plan) if dry_run else context.eraser.erase(plan)
            return summary.to_dict()

        result = await run_in_threadpool(run)
        result["phone"] = phone_domain.mask(e164)
        return result

    return router


def mount_privacy(app: Any, context: PrivacyContext, require_api_key: Callable[..., Principal]) -> None:
    app.state.privacy = context
    app.include_router(create_privacy_router(require_api_key, context))

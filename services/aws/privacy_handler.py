"""Lambda entry of the privacy function: ``services.aws.privacy_handler.lambda_handler``.

``DELETE /callers/{phone}`` and ``GET /audit`` (admin keys), a function of its own so that only it
holds the rights erasure needs (deleting every object version, rewriting analytics, the Mem0 key):
the search function, which answers every reader, keeps read-only grants (docs/decisions.md). The
Eraser is the one the CLI builds (``privacy.wiring.build_eraser``), with the caller's memories on
Mem0 Platform when memory is on. Without a tombstone key it refuses to start (an erasure without
tombstones comes back with the next webhook retry or sync), and without the audit table (it keeps the
legal holds: a held caller would be erased, and the erasure would go unrecorded).
"""

import functools
from typing import Any

from mangum import Mangum

from services.core.config import get_settings
from services.core.logging import get_logger
from services.core.ports import CallerData
from services.core.wiring import build_erased, build_storage
from services.memory.erasure import MemoryErasure
from services.memory.wiring import build_memory_store, memory_enabled
from services.privacy.app import create_privacy_app
from services.privacy.router import PrivacyContext
from services.privacy.wiring import build_eraser
from services.web.auth import ApiKeys
from services.web.credentials import configured_api_keys


@functools.cache
def _handler() -> Mangum:
    settings = get_settings()
    if build_erased(settings) is None:
        raise RuntimeError(
            "set CALLVAULT_TOMBSTONE_KEY_PARAM (the stack's TombstoneKeyParameterName) for the privacy function"
        )
    if not settings.audit_table:  # it keeps the legal holds: without it a held caller would be erased
        raise RuntimeError(
            "set CALLVAULT_AUDIT_TABLE (the stack's AuditTable) for the privacy function: it keeps the legal holds "
            "and the audit trail"
        )
    memory: CallerData | None = MemoryErasure(build_memory_store(settings)) if memory_enabled(settings) else None
    eraser = build_eraser(settings, build_storage(settings), memory)
    app = create_privacy_app(
        PrivacyContext(eraser, settings.default_region, eraser.audit),
        ApiKeys(configured_api_keys(settings)),
        get_logger("callvault-privacy", settings.log_level),
    )
    return Mangum(app, lifespan="off", api_gateway_base_path=settings.api_base_path)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response: dict[str, Any] = _handler()(event, context)
    return response

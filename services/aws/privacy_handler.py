"""Lambda entry of the privacy function: ``services.aws.privacy_handler.lambda_handler``.

``DELETE /callers/{phone}`` and ``GET /audit`` (admin keys), a function of its own so that only it
holds the rights erasure needs (deleting every object version, rewriting analytics, the Mem0 key):
the search function, which answers every reader, keeps read-only grants (docs/decisions.md). The
Eraser is the one the CLI builds (``privacy.wiring.build_eraser``), with the caller's memories on
Mem0 Platform when memory is on. Without a tombstone key (an erasure without tombstones comes back
with the next webhook retry or sync), or without the audit table (it keeps the legal holds: a held
caller would be erased, and the erasure would go unrecorded), it erases nothing: every request gets
401 without a valid key, and 503 naming the missing setting with one.
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
from services.privacy.app import create_privacy_app, create_unconfigured_privacy_app
from services.privacy.router import PrivacyContext
from services.privacy.wiring import build_eraser
from services.web.auth import ApiKeys
from services.web.credentials import configured_api_keys

# What an admin is told when the function cannot erase safely (it starts anyway: see _handler).
NO_TOMBSTONE_KEY = (
    "the privacy API needs TombstoneKeyParameterName set: docs/privacy.md "
    "(without tombstones an erased caller comes back with the next webhook retry or sync)"
)
NO_AUDIT_TABLE = (
    "the privacy API needs CALLVAULT_AUDIT_TABLE (the stack's AuditTable): it keeps the legal holds and the audit trail"
)


@functools.cache
def _handler() -> Mangum:
    settings = get_settings()
    logger = get_logger("callvault-privacy", settings.log_level)
    keys = ApiKeys(configured_api_keys(settings))
    # Not set up to erase: refuse every request (401 without a key, 503 naming the setting with one)
    # rather than fail the start, which answers anyone with a 500 and fires the Errors alarm.
    # The template's default has no tombstone key; the audit table keeps the legal holds.
    reason = NO_TOMBSTONE_KEY if build_erased(settings) is None else None
    if reason is None and not settings.audit_table:
        reason = NO_AUDIT_TABLE
    if reason is not None:
        logger.warning("privacy API not configured: every request is refused", extra={"reason": reason})
        app = create_unconfigured_privacy_app(reason, keys, logger)
    else:
        memory: CallerData | None = MemoryErasure(build_memory_store(settings)) if memory_enabled(settings) else None
        eraser = build_eraser(settings, build_storage(settings), memory)
        app = create_privacy_app(PrivacyContext(eraser, settings.default_region, eraser.audit), keys, logger)
    return Mangum(app, lifespan="off", api_gateway_base_path=settings.api_base_path)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response: dict[str, Any] = _handler()(event, context)
    return response

"""Lambda entry of the memory API function: ``services.aws.memory_api_handler.lambda_handler``.

The memory read routes (``services.memory.api_handler.build_memory_api_app``) with the access audit
of #13 over them, as ``callvault serve`` has it: ``GET /callers/{phone}/memories`` (what was learnt
from a caller's transcripts) is recorded as ``memory_read`` before the response starts, by the key's
id and the masked number. Without an audit table and tombstone key it serves unaudited.
"""

import functools
from typing import Any

from mangum import Mangum

from services.core.config import get_settings
from services.memory.api_handler import build_memory_api_app
from services.privacy.access_audit import AccessAuditMiddleware
from services.privacy.wiring import build_auditor


@functools.cache
def _handler() -> Mangum:
    settings = get_settings()
    app = build_memory_api_app(settings)
    auditor = build_auditor(settings)
    if auditor is not None:
        app.add_middleware(AccessAuditMiddleware, auditor=auditor)
    return Mangum(app, lifespan="off", api_gateway_base_path=settings.api_base_path)


def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    return _handler()(event, context)

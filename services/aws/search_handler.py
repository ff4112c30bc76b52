"""Lambda entry of the search function: ``services.aws.search_handler.lambda_handler``.

The search API and console (``services.search.handler.build_search_app``) with the access audit of
#13 over them, as ``callvault serve`` has it: every transcript or audio link issued, console view and
transcript search is recorded in the audit table before the response starts (fail closed), by
``privacy.access_audit.AccessAuditMiddleware``, so the search routes stay unaware of it. Without an
audit table and tombstone key configured (``build_auditor`` is None) the function serves unaudited,
as stacks deployed before the audit did.
"""

import functools
from typing import Any

from mangum import Mangum

from services.core.config import get_settings
from services.privacy.access_audit import AccessAuditMiddleware
from services.privacy.wiring import build_auditor
from services.search.handler import build_search_app


@functools.cache
def _handler() -> Mangum:
    settings = get_settings()
    app = build_search_app(settings)
    auditor = build_auditor(settings)
    if auditor is not None:
        app.add_middleware(AccessAuditMiddleware, auditor=auditor)
    return Mangum(app, lifespan="off", api_gateway_base_path=settings.api_base_path)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response: dict[str, Any] = _handler()(event, context)
    return response

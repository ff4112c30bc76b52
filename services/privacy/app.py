"""The privacy routes on their own (``DELETE /callers/{phone}``, ``GET /audit``): the app of the AWS
privacy function, which alone holds the rights to erase (docs/decisions.md, 2026-12-05). Locally the
same router is mounted on ``callvault serve``'s app (``mount_privacy``)."""

from collections.abc import Callable
from typing import Annotated, NoReturn

from aws_lambda_powertools import Logger
from fastapi import Depends, FastAPI, Request

from services.core.domain.errors import NotConfigured
from services.core.logging import get_logger
from services.web.auth import ApiKeys, Principal, require_role
from services.web.edge import RequestContextMiddleware, add_log_fields, install_error_handlers

from .router import PrivacyContext, mount_privacy


def api_key_principal(keys: ApiKeys) -> Callable[[Request], Principal]:
    """The bearer-key check of an app without a search context: the key's id and role go to the log
    line (and to the audit entry the route writes), never the key."""

    def require_api_key(request: Request) -> Principal:
        principal = keys.check_header(request.headers.get("authorization"))
        add_log_fields(request, key_id=principal.key_id, role=principal.role)
        return principal

    return require_api_key


def create_privacy_app(context: PrivacyContext, api_keys: ApiKeys, logger: Logger | None = None) -> FastAPI:
    logger = logger or get_logger("callvault-privacy")
    app = FastAPI(
        title="CallVault privacy",
        version="0.1.0",
        description="Erase a caller everywhere, and read the audit trail (admin keys).",
        docs_url=None,  # no CDN page: on AWS the search function serves /docs, locally `serve` does
        redoc_url=None,
    )
    mount_privacy(app, context, api_key_principal(api_keys))
    app.state.logger = logger
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, logger=logger)
    return app


def create_unconfigured_privacy_app(reason: str, api_keys: ApiKeys, logger: Logger | None = None) -> FastAPI:
    """The privacy routes of a deployment that may not erase yet (no tombstone key, no audit table).

    The key is checked as ever (401 without a valid one, 403 below admin), then ``reason`` is the
    answer, a 503: never a start-up error, which would answer anyone with a 500 and fire the alarms.
    """
    logger = logger or get_logger("callvault-privacy")
    app = FastAPI(title="CallVault privacy (not configured)", version="0.1.0", docs_url=None, redoc_url=None)
    Caller = Annotated[Principal, Depends(api_key_principal(api_keys))]

    def refuse(caller: Principal, what: str) -> NoReturn:
        require_role(caller, "admin", what)
        raise NotConfigured(reason)

    @app.delete("/callers/{phone}", include_in_schema=False)
    async def erase_caller(caller: Caller, phone: str) -> None:
        refuse(caller, "erasure")

    @app.get("/audit", include_in_schema=False)
    async def audit_trail(caller: Caller) -> None:
        refuse(caller, "the audit trail")

    app.state.logger = logger
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, logger=logger)
    return app

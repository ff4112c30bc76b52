"""The privacy routes on their own (``DELETE /callers/{phone}``, ``GET /audit``): the app of the AWS
privacy function, which alone holds the rights to erase (docs/decisions.md, 2026-12-05). Locally the
same router is mounted on ``callvault serve``'s app (``mount_privacy``)."""

from collections.abc import Callable

from aws_lambda_powertools import Logger
from fastapi import FastAPI, Request

from services.core.logging import get_logger
from services.web.auth import ApiKeys, Principal
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
    )
    mount_privacy(app, context, api_key_principal(api_keys))
    app.state.logger = logger
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, logger=logger)
    return app

"""``create_app``: the search API as a FastAPI app. The Lambda wraps it with Mangum; the local server
(``services.local.app``) mounts the webhook and file routes next to it."""

import time
from collections.abc import Callable

from aws_lambda_powertools import Logger
from fastapi import FastAPI

from services.analytics.reader import AnalyticsReader
from services.core.config import Settings
from services.core.logging import get_logger
from services.core.wiring import Storage
from services.web.auth import ApiKeys
from services.web.edge import RequestContextMiddleware, install_error_handlers

from .cursor import CursorCodec
from .dependencies import SearchContext
from .links import LinkSigner
from .routes import calls, health, transcripts

VERSION = "0.1.0"
DESCRIPTION = """\
Find archived ElevenLabs calls by phone number, agent, time and outcome, and download their transcripts
and audio.

**Authentication.** Every `/calls` route needs `Authorization: Bearer <key>`. Keys come from
`CALLVAULT_API_KEYS` (comma-separated; raw or `sha256:<hex>`), on AWS from the SSM parameter named by
`CALLVAULT_API_KEYS_PARAM`; `callvault serve` generates one on first run into `DATA_DIR/api-key`.
`/healthz`, this document and the download links (which carry their own signature) need none.
On AWS you may instead put IAM authorization on the HTTP API routes (SigV4-signed requests); see
docs/search.md.

**Errors** always have the shape `{"error": {"code", "message"}, "request_id"}`.
"""
TAGS = [
    {"name": "calls", "description": "Search the call index and fetch one call with its download links."},
    {"name": "files", "description": "Local signed download links (the local twin of presigned S3 URLs)."},
    {"name": "webhooks", "description": "ElevenLabs post-call webhooks (local server; a separate Lambda on AWS)."},
    {"name": "ops", "description": "Health."},
]


def create_app(
    settings: Settings,
    storage: Storage,
    *,
    api_keys: ApiKeys,
    cursors: CursorCodec,
    links: LinkSigner,
    clock: Callable[[], float] = time.time,
    logger: Logger | None = None,
    analytics: AnalyticsReader | None = None,
) -> FastAPI:
    """The search app over ``storage.index``. Nothing here chooses adapters: callers pass the link
    signer (S3 presign on AWS, HMAC links locally) and the secrets they resolved. ``/docs`` loads
    Swagger UI from this server, never a CDN: a CDN script would run on the console's origin."""
    logger = logger or get_logger("callvault-search", settings.log_level)
    if settings.api_auth == "key" and not len(api_keys):
        logger.warning("no API key configured: every /calls request will be refused with 401")
    app = FastAPI(
        title="CallVault",
        version=VERSION,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN: ours below serves its own files
        redoc_url=None,  # ReDoc loads its script and fonts from a CDN; /docs (Swagger UI) is the one page
    )
    from services.web.docs import install_offline_docs

    install_offline_docs(app)
    app.state.search = SearchContext(
        index=storage.index,
        links=links,
        cursors=cursors,
        api_keys=api_keys,
        link_ttl_secs=settings.link_ttl_secs,
        default_region=settings.default_region,
        clock=clock,
        public_url=settings.public_url,
        auth=settings.api_auth,
        analytics=analytics,
    )
    app.state.logger = logger
    app.include_router(health.router)
    app.include_router(calls.router)
    app.include_router(transcripts.router)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, logger=logger)
    return app

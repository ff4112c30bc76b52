"""Lambda entry for the search API: ``services.search.handler.lambda_handler``.

Mangum translates API Gateway HTTP API (payload 2.0) and REST API (1.0) events to ASGI; the app is
built once per cold start (clients, secrets, key hashes reused). Imports only the search app: not
the ingest code, not mem0.
"""

import time
from typing import Any

from fastapi import FastAPI
from mangum import Mangum

from services.analytics.reader import AnalyticsReader
from services.console.app import ConsoleContext, mount_console
from services.console.session import SessionCodec
from services.core.config import Settings, get_settings
from services.core.wiring import build_storage
from services.web.auth import ApiKeys
from services.web.credentials import configured_api_keys, configured_signing_key

from .app import create_app
from .cursor import CursorCodec
from .finder import SearchFinder
from .wiring import build_link_signer

_handler: Mangum | None = None
ATHENA_TIMEOUT_SECS = 8.0  # per query: the dashboard runs three in one request, all within the 29 s


def _build() -> Mangum:
    settings = get_settings()
    return Mangum(build_search_app(settings), lifespan="off", api_gateway_base_path=settings.api_base_path)


def build_search_app(settings: Settings) -> FastAPI:
    """The search API and the console over the AWS stores; ``services/aws/search_handler.py`` adds
    what other features bring to the same function (the access audit, #13)."""
    signing_key = configured_signing_key(settings)
    if signing_key is None:
        # Every instance must verify the cursors the others issued: a per-instance random key would not.
        raise RuntimeError("set CALLVAULT_SIGNING_KEY or CALLVAULT_SIGNING_KEY_PARAM for the search function")
    storage = build_storage(settings)
    api_keys = ApiKeys(configured_api_keys(settings))
    cursors = CursorCodec(signing_key)
    links = build_link_signer(settings, storage, signing_key, time.time)
    analytics = None
    if settings.search_analytics == "athena":
        # Each query must end, and be stopped, before the function does (29 s; API Gateway waits 30 s).
        analytics = AnalyticsReader.athena(
            settings.athena_workgroup, settings.athena_database, timeout_secs=ATHENA_TIMEOUT_SECS
        )
    app = create_app(settings, storage, api_keys=api_keys, cursors=cursors, links=links, analytics=analytics)
    # The review console, from the same function: sessions are signed cookies (nothing kept between
    # invocations); its search and dashboard run on Athena when it is wired.
    finder = SearchFinder(storage.index, cursors, links, settings.link_ttl_secs, settings.default_region)
    mount_console(
        app,
        ConsoleContext(
            finder=finder,
            blobs=storage.blobs,
            api_keys=api_keys,
            sessions=SessionCodec(signing_key),
            default_region=settings.default_region,
            reports=analytics,
        ),
    )
    return app


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _handler  # built on the first event of each cold start
    if _handler is None:
        _handler = _build()
    response: dict[str, Any] = _handler(event, context)
    return response

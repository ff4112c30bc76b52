"""The one-machine deployment: the search API, the webhook receiver, signed file downloads, the
review console and /healthz in one FastAPI process (``callvault serve``).

Composition only: the search app (``services.search.app.create_app``) is the base, the webhook route
and the ``/files`` route are mounted on it, so every route shares one error envelope, one request id
and one log format.
"""

import secrets as token_source
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI

from services.analytics.reader import AnalyticsReader
from services.console.app import ConsoleContext, mount_console
from services.console.session import FileSignedOutSessions, SessionCodec
from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.config import Settings
from services.core.logging import get_logger
from services.core.wiring import Storage, build_storage
from services.ingest.router import router as webhook_router
from services.ingest.service import WebhookReceiver
from services.ingest.wiring import build_archiver
from services.memory.app import mount_memory
from services.memory.erasure import MemoryErasure
from services.privacy.access_audit import AccessAuditMiddleware
from services.privacy.router import PrivacyContext, mount_privacy
from services.privacy.wiring import build_eraser
from services.search.app import create_app
from services.search.cursor import CursorCodec
from services.search.dependencies import require_api_key
from services.search.files import LocalFiles
from services.search.finder import SearchFinder
from services.search.links import HmacLinkSigner
from services.search.routes import files as files_routes
from services.search.wiring import build_link_signer
from services.web.auth import ApiKeys, KeyEntry
from services.web.credentials import configured_api_keys, configured_signing_key
from services.web.keystore import KeyFile

if TYPE_CHECKING:  # the memory stack (Mem0, Qdrant, ONNX) loads only when `serve` builds it
    from services.memory.local import LocalMemory


def create_local_app(
    settings: Settings,
    secrets: list[str],
    storage: Storage | None = None,
    *,
    api_key_hashes: list[KeyEntry] | list[bytes] | None = None,
    signing_key: bytes | None = None,
    clock: Callable[[], float] = time.time,
    memory: "LocalMemory | None" = None,
    on_late_analytics_write: Callable[[str], None] | None = None,
) -> FastAPI:
    """The local server's app. ``callvault serve`` passes the API key hashes and signing key it keeps
    in the data dir; when a caller passes none, the configured ones are used, else no API key (every
    search is a 401) and a throwaway signing key, so building an app never writes to the data dir."""
    storage = storage or build_storage(settings)
    if api_key_hashes is None:
        api_key_hashes = configured_api_keys(settings)
    if signing_key is None:
        signing_key = configured_signing_key(settings) or token_source.token_bytes(32)
    local = isinstance(storage.blobs, FsBlobStore)
    analytics = AnalyticsReader.local(settings.data_dir) if local else None
    logger = get_logger("callvault", settings.log_level)
    key_file = KeyFile.in_data_dir(settings.data_dir, on_invalid=lambda exc: logger.error(str(exc)))
    app = create_app(
        settings,
        storage,
        api_keys=ApiKeys(api_key_hashes, managed=key_file.entries),
        cursors=CursorCodec(signing_key),
        links=build_link_signer(settings, storage, signing_key, clock),
        clock=clock,
        logger=logger,
        analytics=analytics,
    )
    archiver = build_archiver(
        settings, storage, memory.jobs if memory is not None else None, on_late_write=on_late_analytics_write
    )
    if memory is not None:
        mount_memory(app, memory.context, require_api_key)
    memory_erasure = MemoryErasure(memory.store, memory.outbox) if memory is not None else None
    eraser = build_eraser(settings, storage, memory_erasure, upstream=True)  # used only when a request asks
    mount_privacy(app, PrivacyContext(eraser, settings.default_region, eraser.audit), require_api_key)
    if eraser.audit is not None:  # every transcript or audio access, recorded (#13)
        app.add_middleware(AccessAuditMiddleware, auditor=eraser.audit)
    app.state.receiver = WebhookReceiver(archiver, secrets, settings.max_body_bytes)
    app.state.storage = storage
    app.include_router(webhook_router)
    search = app.state.search
    mount_console(
        app,
        ConsoleContext(
            finder=SearchFinder(
                storage.index, search.cursors, search.links, settings.link_ttl_secs, settings.default_region
            ),
            blobs=storage.blobs,
            api_keys=search.api_keys,
            sessions=SessionCodec(
                signing_key,
                clock=clock,
                signed_out=FileSignedOutSessions(settings.data_dir / "console-signed-out", clock),
            ),
            default_region=settings.default_region,
            reports=analytics,
            memories=memory.context.store if memory is not None else None,
            clock=clock,
        ),
    )
    if isinstance(storage.blobs, FsBlobStore):
        # The archive is a folder: serve it through signed links, as S3 serves presigned URLs.
        context = app.state.search
        context.file_links = HmacLinkSigner(signing_key, clock)
        context.files = LocalFiles(storage.blobs.root)
        app.include_router(files_routes.router)
    return app

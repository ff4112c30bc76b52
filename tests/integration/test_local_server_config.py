"""``callvault serve``'s server configuration: the settings reach uvicorn, the protocol and the webhook route."""

import logging
from pathlib import Path

import pytest

from services.core.config import Settings
from services.ingest.router import WebhookFastPath, body_intake
from services.local.app import create_local_app
from services.local.runtime import RepeatFilter
from services.local.server import (
    BACKLOG,
    MAX_HEAD_BYTES,
    GuardedH11Protocol,
    build_server,
    default_limit_concurrency,
)
from tests.support import SECRET


def test_local_server_build_server_applies_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        backend="local",
        data_dir=tmp_path / "data",
        memory_backend="none",
        max_bodies_in_flight=3,
        header_timeout_secs=4.5,
        body_timeout_secs=7.0,
        send_timeout_secs=9.5,
    )
    app = create_local_app(settings, [SECRET])
    # The filters build_server adds to process-wide loggers are removed again afterwards.
    for name in ("asyncio", "uvicorn.error", "callvault", "callvault-server"):
        monkeypatch.setattr(logging.getLogger(name), "filters", list(logging.getLogger(name).filters))

    async def stored_elsewhere(raw: bytes, signature: str | None, request_id: str) -> tuple[int, dict[str, str]]:
        return 200, {}

    server = build_server(app, settings, host="127.0.0.1", port=0, store_elsewhere=stored_elsewhere)
    config = server.config
    assert isinstance(config.http, type) and issubclass(config.http, GuardedH11Protocol)
    limits = config.http.limits
    assert (limits.header_timeout, limits.body_timeout, limits.send_timeout) == (4.5, 7.0, 9.5)
    assert config.backlog == BACKLOG == 128
    assert config.h11_max_incomplete_event_size == MAX_HEAD_BYTES
    assert config.access_log is False
    assert isinstance(config.app, WebhookFastPath) and config.app.app is app  # webhooks skip the router
    assert config.limit_concurrency == default_limit_concurrency()
    intake = body_intake(app)
    assert (intake.max_in_flight, intake.spool_dir) == (3, settings.data_dir)
    assert intake.store_elsewhere is stored_elsewhere  # `serve`'s ingest processes get the bodies
    assert any(isinstance(f, RepeatFilter) for f in logging.getLogger("asyncio").filters)

"""Fixtures for the search integration tests: the local app in process (SeaweedFS: tests/conftest.py)."""

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.core.config import Settings
from services.core.domain.models import CallRecord
from services.local.app import create_local_app
from services.web.auth import hash_key
from tests.support import SECRET, fixture_bytes, signed_headers

SEARCH_KEY = "cvk_integration-test-key"
SEARCH_SIGNING_KEY = b"integration-signing-key-0123456789"


class HttpResponse(Protocol):
    """What the checks read: TestClient returns httpx2 responses, real HTTP tests httpx ones."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Any: ...

    @property
    def text(self) -> str: ...

    @property
    def content(self) -> bytes: ...

    def json(self) -> Any: ...


@dataclass
class Clock:
    """The app's clock for links: tests move it to expire them."""

    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


@dataclass
class SearchApp:
    app: FastAPI
    client: TestClient
    data_dir: Path
    clock: Clock
    auth: dict[str, str]

    def ingest(self, name: str, body: bytes | None = None) -> None:
        raw = body if body is not None else fixture_bytes(name)
        response = self.client.post("/webhooks/elevenlabs", content=raw, headers=signed_headers(raw))
        assert response.status_code == 200, response.text

    def add(self, record: CallRecord) -> None:
        self.app.state.storage.index.save_call(record, int(time.time()))


@pytest.fixture
def search_app(tmp_path: Path) -> Iterator[SearchApp]:
    """The local app over SQLite and files in a temp data dir, with one API key."""
    data_dir = tmp_path / "data"
    clock = Clock()
    app = create_local_app(
        Settings(data_dir=data_dir),
        [SECRET],
        api_key_hashes=[hash_key(SEARCH_KEY)],
        signing_key=SEARCH_SIGNING_KEY,
        clock=clock,
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield SearchApp(app, client, data_dir, clock, {"Authorization": f"Bearer {SEARCH_KEY}"})

"""Worlds for the privacy tests: the archive, index and analytics on each back end, with the Archiver."""

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from services.analytics.compaction import compact_closed_days
from services.analytics.rows import decode
from services.analytics.writer import AnalyticsWriter
from services.core.adapters.dynamo_call_index import DynamoCallIndex
from services.core.adapters.dynamo_tombstones import DynamoTombstones
from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex, MemoryTombstones
from services.core.adapters.s3_blob_store import S3BlobStore
from services.core.adapters.sqlite_call_index import SqliteCallIndex
from services.core.adapters.sqlite_tombstones import SqliteTombstones
from services.core.config import Settings
from services.core.domain import payload
from services.core.erased import ErasedConversations
from services.core.ports import BlobStore, CallIndex
from services.ingest.service import Archiver
from services.local.app import create_local_app
from services.web.auth import parse_key_entries
from tests.contract.conftest import aws  # noqa: F401 - the moto fixture, shared
from tests.memory.support import call_envelope, envelope_bytes
from tests.support import AUDIO, SECRET, TRANSCRIPTION, TRANSCRIPTION_WEB, fixture_bytes, fixture_json, signed_headers

DAY = 86_400
T0 = 1_751_802_015  # 2025-07-06
ARCHIVE, ANALYTICS, TABLE = "privacy-archive", "privacy-analytics", "privacy-calls"


def audio_envelope(conversation_id: str, at: int) -> dict[str, Any]:
    envelope = copy.deepcopy(fixture_json(AUDIO))
    envelope["data"]["conversation_id"] = conversation_id
    envelope["event_timestamp"] = at
    return envelope


@dataclass
class World:
    name: str
    blobs: BlobStore
    index: CallIndex
    analytics: BlobStore
    s3: Any = None  # boto3 client on moto
    erased: ErasedConversations = field(default_factory=lambda: ErasedConversations(b"k" * 32, MemoryTombstones()))
    now: float = float(T0 + 5 * DAY)
    archiver: Archiver = field(init=False)

    def __post_init__(self) -> None:
        self.archiver = Archiver(
            self.blobs,
            self.index,
            self.clock,
            analytics=AnalyticsWriter(self.analytics, self.clock),
            erased=self.erased,
        )

    def clock(self) -> float:
        return self.now

    def deliver(self, envelope: dict[str, Any]) -> str:
        return self.archiver.archive(payload.parse_envelope(envelope_bytes(envelope))).outcome

    def call(self, conversation_id: str, phone: str | None, started_at: int, *, audio: bool = False) -> None:
        envelope = call_envelope(conversation_id, phone, started_at=started_at, event_at=started_at + 60)
        assert self.deliver(envelope) == "stored"
        if audio:
            assert self.deliver(audio_envelope(conversation_id, started_at + 61)) == "stored"

    def compact(self) -> None:
        compact_closed_days(self.analytics, now=self.now)

    def archive_listing(self) -> list[str]:
        """Every object in the archive; on S3 every version and delete marker too."""
        if self.s3 is None:
            return sorted(self.blobs.list_keys())
        listing = self.s3.list_object_versions(Bucket=ARCHIVE)
        return sorted(
            [f"{v['Key']}@{v['VersionId']}" for v in listing.get("Versions", [])]
            + [f"{m['Key']}@marker" for m in listing.get("DeleteMarkers", [])]
        )

    def analytics_rows(self) -> list[dict[str, Any]]:
        return [row for key in self.analytics.list_keys() for row in decode(self.analytics.get_bytes(key))]

    def archive_bytes(self) -> dict[str, bytes]:
        return {key: self.blobs.get_bytes(key) for key in self.blobs.list_keys()}


@pytest.fixture(params=["memory", "local", "moto"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    if request.param == "memory":
        yield World("memory", MemoryBlobStore(), MemoryCallIndex(), MemoryBlobStore())
    elif request.param == "local":
        index = SqliteCallIndex(tmp_path / "index.sqlite3")
        tombstones = ErasedConversations(b"k" * 32, SqliteTombstones(tmp_path / "privacy.sqlite3"))
        yield World(
            "local", FsBlobStore(tmp_path / "archive"), index, FsBlobStore(tmp_path / "analytics"), erased=tombstones
        )
        index.close()
    else:
        request.getfixturevalue("aws")
        client = boto3.client("s3")
        for bucket in (ARCHIVE, ANALYTICS):
            client.create_bucket(Bucket=bucket)
        client.put_bucket_versioning(Bucket=ARCHIVE, VersioningConfiguration={"Status": "Enabled"})
        dynamo = DynamoCallIndex(TABLE)
        dynamo.create_table()
        tombstones = ErasedConversations(b"k" * 32, DynamoTombstones(TABLE))
        yield World("moto", S3BlobStore(ARCHIVE), dynamo, S3BlobStore(ANALYTICS), s3=client, erased=tombstones)


READ, LISTEN, ADMIN = "cvk_role-read", "cvk_role-listen", "cvk_role-admin"


@pytest.fixture
def data_dir(tmp_path: Path, owner_only_umask: None) -> Path:
    return tmp_path / "data"  # written as `serve` writes it: owner-only


@pytest.fixture
def client(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The local app (no memory) with a read, a listen and an admin key, holding three archived events."""
    monkeypatch.setenv("CALLVAULT_MEMORY_BACKEND", "none")
    entries = parse_key_entries([f"read:{READ}", f"listen:{LISTEN}", ADMIN])
    app = create_local_app(Settings(data_dir=data_dir), [SECRET], api_key_hashes=entries, signing_key=b"k" * 32)
    with TestClient(app, raise_server_exceptions=False) as client:
        for name in (TRANSCRIPTION, AUDIO, TRANSCRIPTION_WEB):
            raw = fixture_bytes(name)
            assert client.post("/webhooks/elevenlabs", content=raw, headers=signed_headers(raw)).status_code == 200
        yield client

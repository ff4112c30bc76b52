"""Presigned S3 links against SeaweedFS, a real S3 implementation that verifies SigV4 signatures.

Calls are archived into SeaweedFS by the real ingest code; links come from ``GET /calls/{id}`` of
the search app; the downloads are plain HTTP requests to SeaweedFS, as a browser would make them.
"""

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from services.core.adapters.memory import MemoryCallIndex
from services.core.adapters.s3_blob_store import S3BlobStore
from services.core.config import Settings
from services.core.domain import payload
from services.core.wiring import Storage
from services.ingest.service import Archiver
from services.search.app import create_app
from services.search.cursor import CursorCodec
from services.search.wiring import build_link_signer
from services.web.auth import ApiKeys, hash_key
from tests.conftest_seaweed import SeaweedS3, s3_client
from tests.support import AUDIO, TRANSCRIPTION, fixture_json

if TYPE_CHECKING:
    pass

CONVERSATION = "conv_01jzfrjvcce0vsea1fcbpp9p04"
KEY = "cvk_presign-test"
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass
class Archive:
    server: SeaweedS3
    bucket: str
    store: S3BlobStore
    index: MemoryCallIndex

    def app(self, ttl: int = 900, store: S3BlobStore | None = None) -> TestClient:
        settings = Settings(backend="aws", bucket=self.bucket, link_ttl_secs=ttl)
        storage = Storage(store or self.store, self.index)
        app = create_app(
            settings,
            storage,
            api_keys=ApiKeys([hash_key(KEY)]),
            cursors=CursorCodec(b"p" * 32),
            links=build_link_signer(settings, storage, b"p" * 32, time.time),
        )
        return TestClient(app)

    def links(self, ttl: int = 900, store: S3BlobStore | None = None) -> dict[str, Any]:
        response = self.app(ttl, store).get(f"/calls/{CONVERSATION}", headers=AUTH)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()["links"]
        return found


@pytest.fixture(scope="module")
def archive(seaweed: SeaweedS3) -> Iterator[Archive]:
    bucket = f"callvault-presign-{uuid.uuid4().hex[:8]}"
    client = s3_client(seaweed)
    client.create_bucket(Bucket=bucket)
    store, index = S3BlobStore(bucket, client=client), MemoryCallIndex()
    archiver = Archiver(store, index, time.time)
    for name in (TRANSCRIPTION, AUDIO):
        archiver.archive(payload.as_transcription_event(fixture_json(name)))
    yield Archive(seaweed, bucket, store, index)


def with_query(url: str, **changes: str) -> str:
    split = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(split.query).items()} | changes
    return f"{split.scheme}://{split.netloc}{split.path}?{urlencode(query)}"


def assert_refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 403, response.text
    assert f"<Code>{code}</Code>" in response.text or code in response.text


def test_search_presigned_link_returns_exactly_the_archived_bytes(archive: Archive) -> None:
    links = archive.links()
    for kind, suffix in (("transcript", "json"), ("audio", "mp3")):
        key = f"16125550142/{CONVERSATION}.{suffix}"
        stored = archive.store.get_bytes(key)
        response = httpx.get(links[kind]["url"])
        assert response.status_code == 200, response.text
        assert response.content == stored
        assert len(stored) == links[kind]["bytes"]
        disposition = "inline" if suffix == "mp3" else "attachment"  # audio plays in the browser (#14)
        assert response.headers["content-disposition"] == f'{disposition}; filename="{CONVERSATION}.{suffix}"'


def test_search_presigned_audio_link_answers_range_requests(archive: Archive) -> None:
    stored = archive.store.get_bytes(f"16125550142/{CONVERSATION}.mp3")
    response = httpx.get(archive.links()["audio"]["url"], headers={"Range": "bytes=100-199"})
    assert response.status_code == 206
    assert response.content == stored[100:200]


@pytest.mark.parametrize(
    "change",
    [
        {"X-Amz-Signature": "0" * 64},
        {"X-Amz-Expires": "604800"},
        {"response-content-disposition": 'attachment; filename="evil.html"'},
    ],
    ids=["signature", "longer-expiry", "other-download-name"],
)
def test_search_presigned_link_tampered_is_refused(archive: Archive, change: dict[str, str]) -> None:
    url = archive.links()["transcript"]["url"]
    assert httpx.get(url).status_code == 200  # the untouched link works
    assert_refused(httpx.get(with_query(url, **change)), "SignatureDoesNotMatch")


def test_search_presigned_signature_reused_for_another_object_is_refused(archive: Archive) -> None:
    url = archive.links()["transcript"]["url"]
    other = url.replace(f"{CONVERSATION}.json", f"{CONVERSATION}.mp3")
    assert other != url
    assert_refused(httpx.get(other), "SignatureDoesNotMatch")


def test_search_presigned_link_signed_with_the_wrong_secret_is_refused(archive: Archive) -> None:
    wrong = S3BlobStore(archive.bucket, client=s3_client(archive.server, secret="not-the-secret"))
    assert_refused(httpx.get(archive.links(store=wrong)["transcript"]["url"]), "SignatureDoesNotMatch")


def test_search_presigned_link_expires(archive: Archive) -> None:
    link = archive.links(ttl=1)["transcript"]
    assert "X-Amz-Expires=1&" in link["url"] or link["url"].endswith("X-Amz-Expires=1")
    time.sleep(2.2)
    response = httpx.get(link["url"])
    assert response.status_code == 403, response.text
    assert "expired" in response.text.lower()

"""Answers that may hold a transcript, a link or a number are never cached, sniffed or framed; the
documentation is served from this server only (no ReDoc page pulling scripts and fonts from a CDN)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.core.config import Settings
from services.local.app import create_local_app
from services.web.auth import parse_key_entries
from tests.support import SECRET, TRANSCRIPTION, fixture_bytes, signed_headers

CALL_ID = "conv_01jzfrjvcce0vsea1fcbpp9p04"
KEY = "cvk_headers-listen"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("CALLVAULT_MEMORY_BACKEND", "none")
    entries = parse_key_entries([f"listen:{KEY}"])
    app = create_local_app(
        Settings(data_dir=tmp_path / "data"), [SECRET], api_key_hashes=entries, signing_key=b"k" * 32
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        raw = fixture_bytes(TRANSCRIPTION)
        assert client.post("/webhooks/elevenlabs", content=raw, headers=signed_headers(raw)).status_code == 200
        yield client


def _assert_private(response_headers: dict[str, str]) -> None:
    assert response_headers["cache-control"] == "no-store"
    assert response_headers["x-content-type-options"] == "nosniff"
    assert response_headers["x-frame-options"] == "DENY"


def test_api_answers_and_signed_files_are_never_cached_sniffed_or_framed(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    listing = client.get("/calls", headers=auth)
    detail = client.get(f"/calls/{CALL_ID}", headers=auth)
    refused = client.get("/calls")
    assert (listing.status_code, detail.status_code, refused.status_code) == (200, 200, 401)
    downloaded = client.get(detail.json()["links"]["transcript"]["url"])
    assert downloaded.status_code == 200

    for response in (listing, detail, refused, downloaded, client.get("/docs"), client.get("/openapi.json")):
        _assert_private(dict(response.headers))


def test_a_route_keeps_its_own_cache_policy(client: TestClient) -> None:
    asset = client.get("/docs/assets/swagger-ui.css")
    assert asset.status_code == 200 and asset.headers["cache-control"] == "public, max-age=86400"


def test_there_is_no_cdn_documentation_page(client: TestClient) -> None:
    assert client.get("/redoc").status_code == 404
    assert "cdn" not in client.get("/docs").text.lower()


def test_console_scripts_are_kept_and_revalidated_not_downloaded_each_page(client: TestClient) -> None:
    script = client.get("/console/static/console.js")
    assert script.status_code == 200 and script.headers["cache-control"] == "no-cache"
    again = client.get("/console/static/console.js", headers={"if-none-match": script.headers["etag"]})
    assert again.status_code == 304

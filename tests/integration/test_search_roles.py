"""Roles on API keys, honoured by the search API: read keys see metadata and transcripts, never audio."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.core.config import Settings
from services.local.app import create_local_app
from services.web.auth import parse_key_entries
from services.web.keystore import KeyFile
from tests.support import AUDIO, SECRET, TRANSCRIPTION, TRANSCRIPTION_WEB, fixture_bytes, signed_headers

CALL_ID = "conv_01jzfrjvcce0vsea1fcbpp9p04"  # with audio
WEB = "conv_01jzfrjvcce0vsea1fcbpp9p06"  # without
READ, LISTEN, ADMIN = "cvk_role-read", "cvk_role-listen", "cvk_role-admin"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    entries = parse_key_entries([f"read:{READ}", f"listen:{LISTEN}", ADMIN])
    app = create_local_app(
        Settings(data_dir=tmp_path / "data"), [SECRET], api_key_hashes=entries, signing_key=b"k" * 32
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        for name in (TRANSCRIPTION, AUDIO, TRANSCRIPTION_WEB):
            raw = fixture_bytes(name)
            assert client.post("/webhooks/elevenlabs", content=raw, headers=signed_headers(raw)).status_code == 200
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_search_roles_read_key_gets_transcript_link_but_no_audio_link(client: TestClient) -> None:
    body = client.get(f"/calls/{CALL_ID}", headers=bearer(READ)).json()
    assert body["links"]["transcript"] is not None
    assert body["links"]["audio"] is None
    for key in (LISTEN, ADMIN):
        assert client.get(f"/calls/{CALL_ID}", headers=bearer(key)).json()["links"]["audio"] is not None


def test_search_roles_read_key_gets_403_on_the_audio_route(client: TestClient) -> None:
    refused = client.get(f"/calls/{CALL_ID}/audio", headers=bearer(READ), follow_redirects=False)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert "'listen' role" in refused.json()["error"]["message"]


def test_search_roles_listen_key_is_redirected_to_a_streamable_link(client: TestClient) -> None:
    moved = client.get(f"/calls/{CALL_ID}/audio", headers=bearer(LISTEN), follow_redirects=False)
    assert moved.status_code == 307
    part = client.get(moved.headers["location"], headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.content) == 100
    assert client.get(f"/calls/{WEB}/audio", headers=bearer(ADMIN)).status_code == 404
    assert client.get(f"/calls/{CALL_ID}/audio").status_code == 401


def test_search_roles_managed_keys_work_and_revocation_is_immediate(client: TestClient, tmp_path: Path) -> None:
    store = KeyFile.in_data_dir(tmp_path / "data")
    key, record = store.create("qa", "read")
    assert client.get("/calls", headers=bearer(key)).status_code == 200
    assert client.get(f"/calls/{CALL_ID}/audio", headers=bearer(key), follow_redirects=False).status_code == 403
    store.revoke(record.id)
    assert client.get("/calls", headers=bearer(key)).status_code == 401

"""Happy paths through the in-process local app: every fixture stored at its key, byte-faithfully."""

import base64
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.core.config import Settings
from services.core.domain.models import CallRecord
from services.ingest.router import WebhookFastPath
from services.local.app import create_local_app
from tests.support import (
    ALL_FIXTURES,
    AUDIO,
    FIXTURES,
    INITIATION_FAILURE,
    SECRET,
    TRANSCRIPTION,
    TRANSCRIPTION_OUTBOUND,
    TRANSCRIPTION_WEB,
    fixture_bytes,
    fixture_json,
    signed_headers,
)

URL = "/webhooks/elevenlabs"
MP3 = (FIXTURES / "hello.mp3").read_bytes()

# fixture -> (conversation id, the only archive file it creates)
EXPECTED_KEYS = {
    TRANSCRIPTION: ("conv_01jzfrjvcce0vsea1fcbpp9p04", "16125550142/conv_01jzfrjvcce0vsea1fcbpp9p04.json"),
    TRANSCRIPTION_OUTBOUND: ("conv_01jzfrjvcce0vsea1fcbpp9p05", "16125550177/conv_01jzfrjvcce0vsea1fcbpp9p05.json"),
    TRANSCRIPTION_WEB: ("conv_01jzfrjvcce0vsea1fcbpp9p06", "unknown/conv_01jzfrjvcce0vsea1fcbpp9p06.json"),
    AUDIO: ("conv_01jzfrjvcce0vsea1fcbpp9p04", "_pending-audio/conv_01jzfrjvcce0vsea1fcbpp9p04.mp3"),
    INITIATION_FAILURE: ("conv_01jzfrjvcce0vsea1fcbpp9p07", "16125550188/conv_01jzfrjvcce0vsea1fcbpp9p07.json"),
}


@dataclass
class Local:
    client: TestClient
    data_dir: Path
    app: FastAPI

    @property
    def archive(self) -> Path:
        return self.data_dir / "archive"

    def archived_files(self) -> list[str]:
        return sorted(p.relative_to(self.archive).as_posix() for p in self.archive.rglob("*") if p.is_file())

    def row(self, conversation_id: str) -> CallRecord:
        row = self.app.state.storage.index.get(conversation_id)
        assert isinstance(row, CallRecord)
        return row

    def post(self, body: bytes) -> dict[str, Any]:
        response = self.client.post(URL, content=body, headers=signed_headers(body))
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture(params=["app-route", "fast-path"])
def local(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Local]:
    """The app's own route (in-process users, OpenAPI) and the fast path `callvault serve` runs."""
    data_dir = tmp_path / "data"
    app = create_local_app(Settings(backend="local", data_dir=data_dir, max_body_bytes=1024 * 1024), [SECRET])
    served = WebhookFastPath(app) if request.param == "fast-path" else app
    with TestClient(served) as client:
        yield Local(client, data_dir, app)


def test_webhook_app_expected_keys_cover_every_fixture() -> None:
    assert set(EXPECTED_KEYS) == set(ALL_FIXTURES)


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_webhook_app_stores_each_fixture_at_its_key(local: Local, name: str) -> None:
    envelope = fixture_json(name)
    conversation_id, key = EXPECTED_KEYS[name]

    result = local.post(fixture_bytes(name))

    assert result["status"] == "stored"
    assert (result["type"], result["conversation_id"]) == (envelope["type"], conversation_id)
    assert result["request_id"]
    assert local.archived_files() == [key]
    stored = (local.archive / key).read_bytes()
    if key.endswith(".json"):
        assert stored.count(b"\n") == 0, "the archived document must be one line"
        assert json.loads(stored) == envelope["data"]
        assert local.row(conversation_id).transcript_key == key
        assert local.row(conversation_id).transcript_bytes == len(stored)
    else:
        assert stored == MP3 == base64.b64decode(envelope["data"]["full_audio"])
        assert local.row(conversation_id).audio_key == key


@pytest.mark.parametrize("first", [TRANSCRIPTION, AUDIO], ids=["transcript-first", "audio-first"])
def test_webhook_app_transcript_and_audio_end_side_by_side(local: Local, first: str) -> None:
    second = AUDIO if first == TRANSCRIPTION else TRANSCRIPTION
    local.post(fixture_bytes(first))
    local.post(fixture_bytes(second))

    conv = "conv_01jzfrjvcce0vsea1fcbpp9p04"
    assert local.archived_files() == [f"16125550142/{conv}.json", f"16125550142/{conv}.mp3"]
    assert (local.archive / f"16125550142/{conv}.mp3").read_bytes() == MP3
    row = local.row(conv)
    assert (row.phone, row.has_audio, row.audio_key, row.audio_bytes) == (
        "+16125550142",
        True,
        f"16125550142/{conv}.mp3",
        len(MP3),
    )
    assert (row.duration_s, row.message_count, row.direction) == (7, 1, "inbound")


def test_webhook_app_keeps_unknown_fields(local: Local) -> None:
    envelope = fixture_json(TRANSCRIPTION)
    extra = {"nested": {"list": [1, {"deeper": None, "text": "ünïcode ✓"}], "flag": False}, "n": 1.25}
    envelope["data"]["metadata"]["vendor_added_in_2026"] = extra
    envelope["data"]["brand_new_top_level_field"] = ["kept", {"as": "is"}]
    envelope["brand_new_envelope_field"] = "ignored by design"
    body = json.dumps(envelope, indent=2).encode()  # pretty-printed on the wire, one line in the archive

    local.post(body)

    stored = (local.archive / EXPECTED_KEYS[TRANSCRIPTION][1]).read_bytes()
    assert b"\n" not in stored
    document = json.loads(stored)
    assert document == envelope["data"]
    assert document["metadata"]["vendor_added_in_2026"] == extra
    assert document["brand_new_top_level_field"] == ["kept", {"as": "is"}]


def test_webhook_app_accepts_a_string_event_timestamp(local: Local) -> None:
    envelope = fixture_json(TRANSCRIPTION)
    envelope["event_timestamp"] = str(envelope["event_timestamp"])
    local.post(json.dumps(envelope).encode())
    assert local.row("conv_01jzfrjvcce0vsea1fcbpp9p04").event_at == 1751802025


def test_webhook_app_numbers_no_index_can_hold_are_refused_before_anything_is_written(local: Local) -> None:
    # Once an OverflowError in SQLite: 500 on every retry, with the transcript already archived. Now a
    # 400 that names the field, and nothing stored (tests/unit/test_payload_storable.py has every field).
    envelope = fixture_json(TRANSCRIPTION)
    envelope["data"]["metadata"]["start_time_unix_secs"] = 2**63
    envelope["data"]["metadata"]["cost"] = 2**64 - 1

    body = json.dumps(envelope).encode()
    response = local.client.post(URL, content=body, headers=signed_headers(body))

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_payload"
    assert "start_time_unix_secs" in response.json()["error"]["message"]
    assert local.archived_files() == []
    assert local.app.state.storage.index.get("conv_01jzfrjvcce0vsea1fcbpp9p04") is None


def test_webhook_app_duplicate_delivery_is_200_and_idempotent(local: Local) -> None:
    body = fixture_bytes(TRANSCRIPTION)
    local.post(body)
    before = (local.archived_files(), local.row("conv_01jzfrjvcce0vsea1fcbpp9p04").to_dict())
    assert local.post(body)["status"] == "stored"
    after = (local.archived_files(), local.row("conv_01jzfrjvcce0vsea1fcbpp9p04").to_dict())
    assert before[0] == after[0]
    assert {k: v for k, v in before[1].items() if k != "updated_at"} == {
        k: v for k, v in after[1].items() if k != "updated_at"
    }


def test_webhook_app_healthz(local: Local) -> None:
    response = local.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_webhook_app_openapi_lists_the_webhook_route(local: Local) -> None:
    response = local.client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    operation = spec["paths"][URL]["post"]
    assert "/healthz" in spec["paths"]
    names = {p["name"].lower() for p in operation.get("parameters", [])}
    assert "elevenlabs-signature" in names
    assert "application/json" in operation["requestBody"]["content"]


def test_webhook_app_unknown_route_and_method_use_the_envelope(local: Local) -> None:
    for response, status in [(local.client.get(URL), 405), (local.client.post("/nope", content=b"{}"), 404)]:
        assert response.status_code == status
        body = response.json()
        assert set(body) == {"error", "request_id"} and set(body["error"]) == {"code", "message"}


# --- logs ---------------------------------------------------------------------------------------


@contextmanager
def app_logs_to_current_stdout(local: Local) -> Iterator[None]:
    """Point the app's Powertools handler at the ``sys.stdout`` of this moment (capsys's, in a test body).

    Powertools binds ``sys.stdout`` when a service's logger is first configured and reuses that handler
    for every later ``Logger(service=...)``, so its lines otherwise go wherever an earlier test left them.
    The level is reset to INFO for the same reason. The stream is swapped by assignment: ``setStream``
    would flush the old one, which may be closed.
    """
    logger = logging.getLogger(local.app.state.logger.service)
    handlers = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]
    assert handlers, "the app logger has no stream handler"
    previous_streams, previous_level = [h.stream for h in handlers], logger.level
    for handler in handlers:
        handler.stream = sys.stdout
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(previous_level)
        for handler, stream in zip(handlers, previous_streams, strict=True):
            handler.stream = stream


def test_webhook_app_logs_hold_no_transcript_text_and_no_full_phone(
    local: Local, capsys: pytest.CaptureFixture[str]
) -> None:
    with app_logs_to_current_stdout(local):
        for name in (TRANSCRIPTION, AUDIO, TRANSCRIPTION_OUTBOUND, INITIATION_FAILURE):
            local.post(fixture_bytes(name))
        refused = fixture_bytes(TRANSCRIPTION)
        unsigned = local.client.post(URL, content=refused, headers=signed_headers(refused, secret="x"))
        assert unsigned.status_code == 401
        bad = b'{"type": "post_call_audio", "data": {"conversation_id": "c", "full_audio": "tel:+16125550142"}}'
        assert local.client.post(URL, content=bad, headers=signed_headers(bad)).status_code == 400
        out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(lines) >= 6, out  # one structured line per webhook

    assert "0142" in out  # the masked number: enough to tell calls apart
    for secret_value in ("16125550142", "6125550142", "+1612555 0177", "16125550177", "16125550188"):
        assert secret_value not in out
    transcript = fixture_json(TRANSCRIPTION)["data"]
    for text in (
        transcript["transcript"][0]["message"][:30],
        transcript["analysis"]["transcript_summary"][:30],
        "Maria",
        fixture_json(AUDIO)["data"]["full_audio"][:40],
        SECRET,
    ):
        assert text not in out
    stored = [line for line in lines if line.get("status") == 200]
    assert {line.get("conversation_id") for line in stored} >= {"conv_01jzfrjvcce0vsea1fcbpp9p04"}


def test_a_redelivery_is_logged_as_unchanged(local: Local, capsys: pytest.CaptureFixture[str]) -> None:
    """Operators tell a retry from a new version in the logs; the sender still gets 200 "stored"."""
    body = fixture_bytes(TRANSCRIPTION)
    with app_logs_to_current_stdout(local):
        first = local.client.post(URL, content=body, headers=signed_headers(body))
        again = local.client.post(URL, content=body, headers=signed_headers(body))
        out = capsys.readouterr().out
    assert first.json()["status"] == again.json()["status"] == "stored"
    stored = [json.loads(line) for line in out.splitlines() if '"webhook stored"' in line]
    assert [line.get("unchanged") for line in stored] == [None, True]


def test_webhook_app_body_and_header_carry_the_same_request_id(local: Local) -> None:
    body = fixture_bytes(TRANSCRIPTION)
    response = local.client.post(URL, content=body, headers=signed_headers(body))
    assert response.json()["request_id"] == response.headers["x-request-id"]
    refused = local.client.post(URL, content=body, headers={"ElevenLabs-Signature": "t=1,v0=00"})
    assert refused.json()["request_id"] == refused.headers["x-request-id"]


def test_webhook_app_fast_path_logs_one_request_line_with_the_route_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    app = create_local_app(Settings(backend="local", data_dir=data_dir), [SECRET])
    with TestClient(WebhookFastPath(app)) as client:
        local = Local(client, data_dir, app)
        with app_logs_to_current_stdout(local):
            body = fixture_bytes(TRANSCRIPTION)
            response = client.post(URL, content=body, headers=signed_headers(body))
            assert client.get("/healthz").status_code == 200  # everything else: the app as it is
            out = capsys.readouterr().out
    assert response.status_code == 200
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("message") == "request"]
    assert [(r["method"], r["route"], r["status"]) for r in requests] == [
        ("POST", URL, 200),
        ("GET", "/healthz", 200),
    ]
    assert requests[0]["request_id"] == response.headers["x-request-id"] == response.json()["request_id"]


def test_webhook_app_fast_path_skips_the_apps_router_and_middleware_for_webhooks_only(tmp_path: Path) -> None:
    app = create_local_app(Settings(backend="local", data_dir=tmp_path / "data"), [SECRET])
    seen: list[tuple[str, str]] = []

    class Recorder:  # the innermost middleware: what reaches the app's stack
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                seen.append((scope["method"], scope["path"]))
            await self.inner(scope, receive, send)

    app.add_middleware(Recorder)
    body = fixture_bytes(TRANSCRIPTION)
    with TestClient(WebhookFastPath(app)) as client:
        assert client.post(URL, content=body, headers=signed_headers(body)).status_code == 200
        assert client.get(URL).status_code == 405
        assert (
            client.post(URL + "/", content=body, headers=signed_headers(body), follow_redirects=False).status_code
            == 307
        )
    assert seen == [("GET", URL), ("POST", URL + "/")]
    with TestClient(app) as client:  # the app's own route: through the stack, and stored alike
        assert client.post(URL, content=body, headers=signed_headers(body)).status_code == 200
    assert seen[-1] == ("POST", URL)


def test_webhook_app_trailing_slash_is_redirected_not_stored(local: Local) -> None:
    body = fixture_bytes(TRANSCRIPTION)
    response = local.client.post(URL + "/", content=body, headers=signed_headers(body), follow_redirects=False)
    assert response.status_code == 307
    assert local.archived_files() == []

"""A bad-input corpus against the in-process local app.

Every case must get its documented status and the one error envelope, write nothing (no archive
file, no index row), and leave the server accepting the next valid webhook.
"""

import base64
import hashlib
import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
from services.core.config import Settings
from services.core.domain import signing
from services.core.domain.errors import StorageUnavailable
from services.core.domain.models import CallRecord
from services.core.wiring import Storage
from services.ingest.router import BodyIntake, WebhookFastPath, body_intake, install_body_intake
from services.local.app import create_local_app
from tests.integration.conftest import HttpResponse
from tests.support import (
    AUDIO,
    INITIATION_FAILURE,
    SECRET,
    TRANSCRIPTION,
    TRANSCRIPTION_WEB,
    fixture_bytes,
    fixture_json,
    signed_headers,
)

URL = "/webhooks/elevenlabs"
MAX_BODY = 64 * 1024
Headers = dict[str, str] | dict[bytes, bytes]


def _files(data_dir: Path) -> dict[str, bytes]:
    """Every file under the data dir but the index database itself, with its digest."""
    return {
        p.relative_to(data_dir).as_posix(): hashlib.sha256(p.read_bytes()).digest()
        for p in data_dir.rglob("*")
        if p.is_file() and not p.name.startswith("index.sqlite3")
    }


@dataclass
class Local:
    client: TestClient
    data_dir: Path
    # What start-up wrote (secrets, the privacy database...): a request may neither change nor add to it.
    started: dict[str, bytes] = field(default_factory=dict)

    def archived_files(self) -> list[str]:
        root = self.data_dir / "archive"
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    def written_files(self) -> list[str]:
        """Files (but the index database) added or changed since start-up: analytics, secrets, strays..."""
        return sorted(name for name, digest in _files(self.data_dir).items() if self.started.get(name) != digest)

    def index_rows(self) -> int:
        with closing(sqlite3.connect(self.data_dir / "index.sqlite3")) as conn:
            count: int = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
            return count


@pytest.fixture(params=[False, True], ids=["app-route", "fast-path"])
def direct(request: pytest.FixtureRequest) -> bool:
    """The app's own route (in-process users, OpenAPI), or the fast path `callvault serve` runs."""
    return bool(request.param)


@pytest.fixture
def local(tmp_path: Path, direct: bool) -> Iterator[Local]:
    data_dir = tmp_path / "data"
    app = create_local_app(Settings(backend="local", data_dir=data_dir, max_body_bytes=MAX_BODY), [SECRET])
    with TestClient(_served(app, direct)) as client:
        yield Local(client, data_dir, _files(data_dir))


def _served(app: FastAPI, direct: bool) -> Any:
    return WebhookFastPath(app) if direct else app


def assert_error_envelope(response: HttpResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["request_id"], str) and body["request_id"]
    for leak in ("Traceback", 'File "', "services/", ".py", SECRET):
        assert leak not in response.text
    return body


def assert_still_serving(local: Local) -> None:
    body = fixture_bytes(TRANSCRIPTION_WEB)
    response = local.client.post(URL, content=body, headers=signed_headers(body))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "stored"
    assert local.archived_files() == ["unknown/conv_01jzfrjvcce0vsea1fcbpp9p06.json"]
    assert local.index_rows() == 1


# --- the corpus ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    content: bytes | Iterator[bytes]
    headers: Headers


def _signed(body: bytes) -> Request:
    return Request(body, signed_headers(body))


def _with_header(body: bytes, value: str) -> Request:
    return Request(body, {signing.HEADER: value, "content-type": "application/json"})


def _fixture_with(name: str, change: Callable[[dict[str, Any]], None]) -> bytes:
    envelope = fixture_json(name)
    change(envelope)
    return json.dumps(envelope).encode()


def _set_data(key: str, value: object, name: str = TRANSCRIPTION) -> bytes:
    return _fixture_with(name, lambda env: env["data"].__setitem__(key, value))


def _set_envelope(key: str, value: object, name: str = TRANSCRIPTION) -> bytes:
    return _fixture_with(name, lambda env: env.__setitem__(key, value))


def _drop(key: str, name: str = TRANSCRIPTION, in_data: bool = False) -> bytes:
    return _fixture_with(name, lambda env: (env["data"] if in_data else env).pop(key))


def _oversized() -> bytes:
    return _set_data("padding", "x" * (MAX_BODY + 1))


def _chunked(body: bytes, size: int = 8 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _now() -> int:
    return int(time.time())


def _set_metadata(key: str, value: object) -> bytes:
    return _fixture_with(TRANSCRIPTION, lambda env: env["data"]["metadata"].__setitem__(key, value))


def _nested(levels: int) -> bytes:
    """The transcription with ``levels`` nested arrays as a data-collection value (json.dumps cannot write it)."""
    marker = "__nested__"
    body = _fixture_with(
        TRANSCRIPTION, lambda env: env["data"]["analysis"].__setitem__("data_collection_results", {"x": marker})
    )
    return body.replace(json.dumps(marker).encode(), b"[" * levels + b"]" * levels)


@dataclass(frozen=True)
class Case:
    id: str
    status: int
    code: str
    build: Callable[[], Request]


BODY = fixture_bytes(TRANSCRIPTION)

CASES = [
    # -- signature: 401, checked before anything reads the body
    Case("no-signature-header", 401, "invalid_signature", lambda: Request(BODY, {"content-type": "application/json"})),
    Case("empty-signature-header", 401, "invalid_signature", lambda: _with_header(BODY, "")),
    Case("wrong-secret", 401, "invalid_signature", lambda: Request(BODY, signed_headers(BODY, secret="wsec_other"))),
    Case(
        "tampered-body",
        401,
        "invalid_signature",
        lambda: Request(BODY.replace(b"16125550142", b"16125550143"), signed_headers(BODY)),
    ),
    Case(
        "stale-signature-31min", 401, "invalid_signature", lambda: Request(BODY, signed_headers(BODY, at=_now() - 1860))
    ),
    Case(
        "future-signature-10min", 401, "invalid_signature", lambda: Request(BODY, signed_headers(BODY, at=_now() + 600))
    ),
    Case("malformed-signature-abc", 401, "invalid_signature", lambda: _with_header(BODY, "abc")),
    Case("malformed-signature-commas", 401, "invalid_signature", lambda: _with_header(BODY, ",,,")),
    Case(
        "signature-t-not-a-number",
        401,
        "invalid_signature",
        lambda: _with_header(BODY, signing.sign(BODY, SECRET, _now()).replace("t=", "t=x", 1)),
    ),
    Case(
        "signature-non-ascii-bytes",
        401,
        "invalid_signature",
        lambda: Request(BODY, {signing.HEADER.encode(): "t=١٧٥١٨٠٢٠٢٥,v0=é".encode()}),
    ),
    Case("unsigned-non-json", 401, "invalid_signature", lambda: Request(b"<xml/>", {"content-type": "text/xml"})),
    # -- envelope: 400
    Case("empty-body", 400, "invalid_payload", lambda: _signed(b"")),
    Case("not-json", 400, "invalid_payload", lambda: _signed(b"type=post_call_audio&data=1")),
    Case("invalid-utf8", 400, "invalid_payload", lambda: _signed(b'{"type": "\xff", "data": {}}')),
    Case("json-array", 400, "invalid_payload", lambda: _signed(b"[]")),
    Case("json-string", 400, "invalid_payload", lambda: _signed(b'"post_call_transcription"')),
    Case("json-null", 400, "invalid_payload", lambda: _signed(b"null")),
    Case("missing-data", 400, "invalid_payload", lambda: _signed(_drop("data"))),
    Case("data-not-object", 400, "invalid_payload", lambda: _signed(_set_envelope("data", [1, 2]))),
    Case("data-string", 400, "invalid_payload", lambda: _signed(_set_envelope("data", "{}"))),
    Case("missing-type", 400, "invalid_payload", lambda: _signed(_drop("type"))),
    Case("type-not-string", 400, "invalid_payload", lambda: _signed(_set_envelope("type", ["post_call_audio"]))),
    Case("event-timestamp-word", 400, "invalid_payload", lambda: _signed(_set_envelope("event_timestamp", "today"))),
    Case("event-timestamp-float", 400, "invalid_payload", lambda: _signed(_set_envelope("event_timestamp", 1.5))),
    Case("event-timestamp-bool", 400, "invalid_payload", lambda: _signed(_set_envelope("event_timestamp", True))),
    Case("event-timestamp-object", 400, "invalid_payload", lambda: _signed(_set_envelope("event_timestamp", {}))),
    Case(
        "event-timestamp-beyond-int64",
        400,
        "invalid_payload",
        lambda: _signed(_set_envelope("event_timestamp", 2**64 - 1)),
    ),
    Case(
        "base64-encoded-body-is-not-decoded",
        400,
        "invalid_payload",
        lambda: _signed(base64.b64encode(BODY)),
    ),
    # -- conversation_id: 400 before any key is built
    Case("conversation-id-missing", 400, "invalid_payload", lambda: _signed(_drop("conversation_id", in_data=True))),
    Case(
        "conversation-id-traversal",
        400,
        "invalid_payload",
        lambda: _signed(_set_data("conversation_id", "../../etc/passwd")),
    ),
    Case(
        "conversation-id-with-slash", 400, "invalid_payload", lambda: _signed(_set_data("conversation_id", "conv/01"))
    ),
    Case(
        "conversation-id-with-nul", 400, "invalid_payload", lambda: _signed(_set_data("conversation_id", "conv\x0001"))
    ),
    Case("conversation-id-too-long", 400, "invalid_payload", lambda: _signed(_set_data("conversation_id", "c" * 129))),
    Case("conversation-id-number", 400, "invalid_payload", lambda: _signed(_set_data("conversation_id", 12345))),
    Case("conversation-id-empty", 400, "invalid_payload", lambda: _signed(_set_data("conversation_id", ""))),
    Case(
        "audio-conversation-id-traversal",
        400,
        "invalid_payload",
        lambda: _signed(_set_data("conversation_id", "../../etc/passwd", AUDIO)),
    ),
    Case(
        "failure-conversation-id-traversal",
        400,
        "invalid_payload",
        lambda: _signed(_set_data("conversation_id", "..", INITIATION_FAILURE)),
    ),
    # -- audio: 400
    Case(
        "audio-invalid-base64", 400, "invalid_payload", lambda: _signed(_set_data("full_audio", "not base64!", AUDIO))
    ),
    Case("audio-bad-padding", 400, "invalid_payload", lambda: _signed(_set_data("full_audio", "SUQzA", AUDIO))),
    Case("audio-empty", 400, "invalid_payload", lambda: _signed(_set_data("full_audio", "", AUDIO))),
    Case("audio-not-a-string", 400, "invalid_payload", lambda: _signed(_set_data("full_audio", [1, 2], AUDIO))),
    Case("audio-missing", 400, "invalid_payload", lambda: _signed(_drop("full_audio", AUDIO, in_data=True))),
    # -- values no store can hold: 400 before anything is written (issue #10, hostile input)
    Case(
        "start-time-year-10000",
        400,
        "invalid_payload",
        lambda: _signed(_set_metadata("start_time_unix_secs", 253402300800)),
    ),
    Case("start-time-1e15", 400, "invalid_payload", lambda: _signed(_set_metadata("start_time_unix_secs", 1e15))),
    Case(
        "start-time-minus-1e15", 400, "invalid_payload", lambda: _signed(_set_metadata("start_time_unix_secs", -1e15))
    ),
    Case(
        "event-timestamp-year-10000",
        400,
        "invalid_payload",
        lambda: _signed(_set_envelope("event_timestamp", 253402300800)),
    ),
    Case("duration-negative", 400, "invalid_payload", lambda: _signed(_set_metadata("call_duration_secs", -1))),
    Case("cost-beyond-int64", 400, "invalid_payload", lambda: _signed(_set_metadata("cost", 2**63))),
    Case("cost-fiat-1e300", 400, "invalid_payload", lambda: _signed(_set_metadata("cost_fiat", 1e300))),
    Case(
        "turn-time-negative",
        400,
        "invalid_payload",
        lambda: _signed(
            _fixture_with(TRANSCRIPTION, lambda e: e["data"]["transcript"][0].__setitem__("time_in_call_secs", -5))
        ),
    ),
    Case("agent-id-3000-chars", 400, "invalid_payload", lambda: _signed(_set_data("agent_id", "a" * 3000))),
    Case("nested-256-levels", 400, "invalid_payload", lambda: _signed(_nested(256))),
    Case("nested-1000-levels", 400, "invalid_payload", lambda: _signed(_nested(1000))),  # orjson decodes, cannot encode
    Case("nested-20000-levels", 400, "invalid_payload", lambda: _signed(_nested(20_000))),
    # -- size: 413 before the body is held
    Case("oversized-with-content-length", 413, "payload_too_large", lambda: _signed(_oversized())),
    Case(
        "oversized-chunked-no-content-length",
        413,
        "payload_too_large",
        lambda: Request(_chunked(_oversized()), signed_headers(_oversized())),
    ),
    Case(
        "oversized-and-unsigned",
        413,
        "payload_too_large",
        lambda: Request(b"x" * (MAX_BODY + 1), {"content-type": "application/json"}),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_webhook_bad_input_is_refused_with_the_envelope_and_writes_nothing(local: Local, case: Case) -> None:
    request = case.build()
    response = local.client.post(URL, content=request.content, headers=request.headers)

    assert_error_envelope(response, case.status, case.code)
    assert local.written_files() == []
    assert local.index_rows() == 0
    assert_still_serving(local)


def test_webhook_bad_input_corpus_is_large_enough() -> None:
    assert len(CASES) >= 20
    assert len({c.id for c in CASES}) == len(CASES)


def test_webhook_bad_input_chunked_request_without_content_length_really_has_none(local: Local) -> None:
    # Guard the corpus: the chunked case must reach the streaming limit, not the Content-Length check.
    request = httpx.Request("POST", "http://testserver" + URL, content=_chunked(_oversized()))
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"


def test_webhook_bad_input_streamed_chunks_over_the_limit_get_413(tmp_path: Path, direct: bool) -> None:
    """A real multi-message ASGI stream (httpx's ASGI transport), refused while it streams."""
    data_dir = tmp_path / "data"
    app = create_local_app(Settings(backend="local", data_dir=data_dir, max_body_bytes=MAX_BODY), [SECRET])
    body = _oversized()
    sent: list[int] = []

    async def stream() -> AsyncIterator[bytes]:
        for chunk in _chunked(body, 4096):
            sent.append(len(chunk))
            yield chunk

    async def run() -> tuple[HttpResponse, HttpResponse]:
        transport = httpx.ASGITransport(app=_served(app, direct))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            refused = await client.post(URL, content=stream(), headers=signed_headers(body))
            small = fixture_bytes(TRANSCRIPTION_WEB)
            accepted = await client.post(URL, content=small, headers=signed_headers(small))
            return refused, accepted

    refused, accepted = anyio.run(run)
    assert_error_envelope(refused, 413, "payload_too_large")
    # Refused while streaming: the reader stopped soon after the limit, not after the whole body.
    assert sum(sent) < len(body)
    assert sum(sent) <= MAX_BODY + 2 * 4096
    assert accepted.status_code == 200
    local = Local(TestClient(app), data_dir)
    assert local.archived_files() == ["unknown/conv_01jzfrjvcce0vsea1fcbpp9p06.json"]


def test_webhook_unknown_type_is_acknowledged_and_writes_nothing(local: Local) -> None:
    body = _set_envelope("type", "answering_machine_detection", AUDIO)
    response = local.client.post(URL, content=body, headers=signed_headers(body))

    assert response.status_code == 200
    payload = response.json()
    assert (payload["status"], payload["type"]) == ("ignored", "answering_machine_detection")
    assert payload["request_id"]
    assert local.written_files() == []
    assert local.index_rows() == 0
    assert_still_serving(local)


def test_webhook_unknown_type_with_traversal_id_still_writes_nothing(local: Local) -> None:
    def unknown_with_traversal(envelope: dict[str, Any]) -> None:
        envelope["type"] = "unredacted_audio"
        envelope["data"]["conversation_id"] = "../x"

    body = _fixture_with(AUDIO, unknown_with_traversal)
    response = local.client.post(URL, content=body, headers=signed_headers(body))
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert local.written_files() == []
    assert local.index_rows() == 0


# --- storage failures ---------------------------------------------------------------------------


class UnavailableBlobStore(MemoryBlobStore):
    """Every write fails the way a full disk or an S3 outage does; the message quotes a key with a phone."""

    def _store(self, key: str, data: bytes, version: str | None = None) -> None:
        # Every write of the in-memory store (plain, conditional, copy, move) ends here.
        raise StorageUnavailable(f"cannot write /srv/archive/{key}")


class ExplodingIndex(MemoryCallIndex):
    """A bug, not an outage: a plain exception whose text must never reach the client."""

    def get(self, conversation_id: str) -> CallRecord | None:
        raise RuntimeError(f"boom for +16125550142 in {conversation_id}")


class ExplodingOnWriteIndex(MemoryCallIndex):
    def save_call(
        self,
        record: CallRecord,
        now: int,
        *,
        expect_version: bool = False,
        expected_version: str | None = None,
    ) -> bool:
        raise KeyError(f"boom for {record.phone}")


def _client_with(tmp_path: Path, storage: Storage, *, direct: bool = False) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", max_body_bytes=MAX_BODY)
    return TestClient(_served(create_local_app(settings, [SECRET], storage=storage), direct))


@pytest.mark.parametrize("name", [TRANSCRIPTION, AUDIO, INITIATION_FAILURE])
def test_webhook_storage_unavailable_is_503_with_the_envelope(tmp_path: Path, name: str, direct: bool) -> None:
    blobs, index = UnavailableBlobStore(), MemoryCallIndex()
    client = _client_with(tmp_path, Storage(blobs, index), direct=direct)
    body = fixture_bytes(name)

    response = client.post(URL, content=body, headers=signed_headers(body))

    envelope = assert_error_envelope(response, 503, "storage_unavailable")
    assert "16125550" not in envelope["error"]["message"] and "/srv/" not in envelope["error"]["message"]
    assert blobs.objects == {}
    # The write protocol may have claimed the call's folder; no row names an object that is not there.
    for row in index.rows.values():
        assert (row.transcript_key, row.audio_key) == (None, None)


@pytest.mark.parametrize(
    ("index", "name"),
    [
        (ExplodingIndex(), TRANSCRIPTION),
        (ExplodingIndex(), AUDIO),
        (ExplodingIndex(), INITIATION_FAILURE),
        (ExplodingOnWriteIndex(), TRANSCRIPTION),
    ],
    ids=["read-transcription", "read-audio", "read-failure", "write-transcription"],
)
def test_webhook_unexpected_error_is_500_internal_never_200(
    tmp_path: Path, index: MemoryCallIndex, name: str, direct: bool
) -> None:
    client = _client_with(tmp_path, Storage(MemoryBlobStore(), index), direct=direct)
    body = fixture_bytes(name)

    response = client.post(URL, content=body, headers=signed_headers(body))

    envelope = assert_error_envelope(response, 500, "internal")
    assert "boom" not in response.text and "16125550142" not in response.text
    assert envelope["error"]["message"].startswith("internal error")


def test_webhook_server_recovers_once_storage_is_back(tmp_path: Path) -> None:
    class FlakyBlobStore(MemoryBlobStore):
        down = True

        def _store(self, key: str, data: bytes, version: str | None = None) -> None:
            if self.down:
                raise StorageUnavailable("down")
            super()._store(key, data, version)

    blobs, index = FlakyBlobStore(), MemoryCallIndex()
    client = _client_with(tmp_path, Storage(blobs, index))
    body = fixture_bytes(TRANSCRIPTION)
    assert client.post(URL, content=body, headers=signed_headers(body)).status_code == 503
    blobs.down = False
    retry = client.post(URL, content=body, headers=signed_headers(body))  # the sender's identical retry
    assert retry.status_code == 200
    assert set(blobs.objects) == {"16125550142/conv_01jzfrjvcce0vsea1fcbpp9p04.json"}
    assert list(index.rows) == ["conv_01jzfrjvcce0vsea1fcbpp9p04"]


# --- bounded work per request: the header before the body, bodies in flight, spooling -----------


def _counting_stream(body: bytes, sent: list[int], size: int = 4096) -> AsyncIterator[bytes]:
    async def stream() -> AsyncIterator[bytes]:
        for chunk in _chunked(body, size):
            sent.append(len(chunk))
            yield chunk

    return stream()


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "application/json"},
        {signing.HEADER: "abc"},
        {signing.HEADER: f"t={int(time.time()) - 3600},v0={'0' * 64}"},
        {signing.HEADER: f"t={int(time.time()) + 3600},v0={'0' * 64}"},
    ],
    ids=["missing", "malformed", "expired", "from-the-future"],
)
def test_webhook_bad_signature_header_is_refused_before_any_body_is_read(
    tmp_path: Path, headers: dict[str, str], direct: bool
) -> None:
    app = create_local_app(Settings(backend="local", data_dir=tmp_path / "data", max_body_bytes=MAX_BODY), [SECRET])
    sent: list[int] = []

    async def run() -> HttpResponse:
        transport = httpx.ASGITransport(app=_served(app, direct))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.post(URL, content=_counting_stream(BODY, sent), headers=headers)

    response = anyio.run(run)
    assert_error_envelope(response, 401, "invalid_signature")
    assert sent == []  # not one chunk of the unauthenticated body was pulled


def test_webhook_forged_signature_is_refused_after_streaming_and_writes_nothing(local: Local) -> None:
    forged = {signing.HEADER: f"t={_now()},v0={'0' * 64}", "content-type": "application/json"}
    response = local.client.post(URL, content=_chunked(BODY, 1000), headers=forged)
    assert_error_envelope(response, 401, "invalid_signature")
    assert local.written_files() == []
    assert_still_serving(local)


def test_webhook_more_bodies_in_flight_than_the_cap_get_503_with_retry_after(tmp_path: Path, direct: bool) -> None:
    app = create_local_app(Settings(backend="local", data_dir=tmp_path / "data", max_body_bytes=MAX_BODY), [SECRET])
    install_body_intake(app, BodyIntake(max_in_flight=1))
    intake = body_intake(app)
    held = fixture_bytes(TRANSCRIPTION)
    release = anyio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield held[:100]
        await release.wait()
        yield held[100:]

    async def run() -> tuple[HttpResponse, HttpResponse, HttpResponse]:
        transport = httpx.ASGITransport(app=_served(app, direct))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            results: dict[str, HttpResponse] = {}

            async def holder() -> None:
                results["held"] = await client.post(URL, content=slow_body(), headers=signed_headers(held))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(holder)
                for _ in range(500):  # until the first body holds the only slot
                    if intake.in_flight == 1:
                        break
                    await anyio.sleep(0.01)
                assert intake.in_flight == 1
                small = fixture_bytes(TRANSCRIPTION_WEB)
                results["busy"] = await client.post(URL, content=small, headers=signed_headers(small))
                release.set()
            after = await client.post(URL, content=small, headers=signed_headers(small))
            return results["held"], results["busy"], after

    held_response, busy, after = anyio.run(run)
    assert_error_envelope(busy, 503, "server_busy")
    assert busy.headers["retry-after"] == "5"
    assert "retry" in busy.json()["error"]["message"]
    assert held_response.status_code == 200, held_response.text
    assert after.status_code == 200, after.text  # the slot came back
    assert intake.in_flight == 0


def test_webhook_large_body_is_spooled_to_an_unnamed_temp_file_in_the_spool_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    settings = Settings(backend="local", data_dir=tmp_path / "data", max_body_bytes=4 << 20)
    app = create_local_app(settings, [SECRET])
    install_body_intake(app, BodyIntake(spool_bytes=64 * 1024, spool_dir=spool_dir))
    rolled: list[str | None] = []
    real_temporary_file = tempfile.TemporaryFile

    def recording_temporary_file(*args: Any, **kwargs: Any) -> Any:
        rolled.append(kwargs.get("dir"))
        return real_temporary_file(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", recording_temporary_file)
    client = TestClient(_served(app, direct))
    small = fixture_bytes(TRANSCRIPTION)
    assert client.post(URL, content=small, headers=signed_headers(small)).status_code == 200
    assert rolled == []  # a transcript stays in memory

    audio = os.urandom(300 * 1024)
    body = _set_data("full_audio", base64.b64encode(audio).decode(), AUDIO)
    response = client.post(URL, content=body, headers=signed_headers(body))

    assert response.status_code == 200, response.text
    assert rolled == [str(spool_dir)]  # past 64 KiB the body went to disk
    assert list(spool_dir.iterdir()) == []  # unnamed or unlinked: nothing left behind
    assert (settings.data_dir / "archive" / "16125550142" / "conv_01jzfrjvcce0vsea1fcbpp9p04.mp3").read_bytes() == audio


def test_webhook_bodies_in_memory_are_stored_one_at_a_time_on_the_ingest_thread_and_spooled_ones_elsewhere(
    tmp_path: Path, direct: bool
) -> None:
    settings = Settings(backend="local", data_dir=tmp_path / "data", max_body_bytes=4 << 20)
    app = create_local_app(settings, [SECRET])
    install_body_intake(app, BodyIntake(spool_bytes=64 * 1024))
    receiver = app.state.receiver
    real_receive = receiver.receive_verified
    threads: list[str] = []
    running = [0, 0]  # now, most at once

    def observed_receive(raw: bytes) -> Any:
        threads.append(threading.current_thread().name)
        running[0] += 1
        running[1] = max(running)
        try:
            time.sleep(0.02)  # long enough for the other requests to arrive meanwhile
            return real_receive(raw)
        finally:
            running[0] -= 1

    receiver.receive_verified = observed_receive
    base = fixture_json(TRANSCRIPTION)
    bodies = []
    for n in range(6):
        base["data"]["conversation_id"] = f"conv_thread_{n}"
        bodies.append(json.dumps(base).encode())

    async def run() -> list[HttpResponse]:
        transport = httpx.ASGITransport(app=_served(app, direct))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            responses: list[HttpResponse] = []

            async def post(body: bytes) -> None:
                responses.append(await client.post(URL, content=body, headers=signed_headers(body)))

            async with anyio.create_task_group() as tasks:
                for body in bodies:
                    tasks.start_soon(post, body)
            return responses

    responses = anyio.run(run)
    assert [r.status_code for r in responses] == [200] * 6
    assert set(threads) == {"callvault-ingest_0"}
    assert running[1] == 1  # queued, never side by side

    audio = _set_data("full_audio", base64.b64encode(os.urandom(300 * 1024)).decode(), AUDIO)
    response = TestClient(_served(app, direct)).post(URL, content=audio, headers=signed_headers(audio))
    assert response.status_code == 200, response.text
    assert threads[-1] != "callvault-ingest_0"  # a spooled body does not queue behind transcripts

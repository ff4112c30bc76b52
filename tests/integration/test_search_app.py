"""The search API in process (the local app over SQLite and files): routes, auth, errors, paging, logs."""

import io
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from services.core.adapters.memory import MemoryCallIndex
from services.core.domain.errors import StorageUnavailable
from services.core.domain.models import CallPage, CallQuery, CallRecord
from services.search.dependencies import get_index
from tests.integration.conftest import SEARCH_KEY, HttpResponse, SearchApp
from tests.support import (
    AUDIO,
    INITIATION_FAILURE,
    TRANSCRIPTION,
    TRANSCRIPTION_OUTBOUND,
    TRANSCRIPTION_WEB,
)

CONVERSATION = "conv_01jzfrjvcce0vsea1fcbpp9p04"  # +16125550142, with audio
OUTBOUND = "conv_01jzfrjvcce0vsea1fcbpp9p05"  # +16125550177
WEB = "conv_01jzfrjvcce0vsea1fcbpp9p06"  # no phone
FAILED = "conv_01jzfrjvcce0vsea1fcbpp9p07"  # +16125550188, initiation failure


@pytest.fixture
def loaded(search_app: SearchApp) -> SearchApp:
    for name in (TRANSCRIPTION, AUDIO, TRANSCRIPTION_OUTBOUND, TRANSCRIPTION_WEB, INITIATION_FAILURE):
        search_app.ingest(name)
    return search_app


def assert_envelope(response: HttpResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "request_id"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["request_id"] and body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


def ids(response: HttpResponse) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["conversation_id"] for item in response.json()["items"]]


# --- auth ---------------------------------------------------------------------------------------

DATA_ROUTES = ["/calls", f"/calls/{CONVERSATION}", "/calls?phone=%2B16125550142"]


@pytest.mark.parametrize("url", DATA_ROUTES)
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Bearer cvk_wrong"}, "not valid"),
        ({"Authorization": f"Basic {SEARCH_KEY}"}, "malformed"),
        ({"Authorization": SEARCH_KEY}, "malformed"),
        ({"X-Api-Key": SEARCH_KEY}, "missing API key"),
    ],
    ids=["no-key", "wrong-key", "basic-scheme", "no-scheme", "other-header"],
)
def test_search_app_data_routes_need_the_right_key(
    loaded: SearchApp, url: str, headers: dict[str, str], message: str
) -> None:
    body = assert_envelope(loaded.client.get(url, headers=headers), 401, "unauthorized")
    assert message in body["error"]["message"]
    assert loaded.client.get(url, headers=headers).headers["www-authenticate"].startswith("Bearer")
    assert loaded.client.get(url, headers=loaded.auth).status_code == 200


@pytest.mark.parametrize("url", ["/healthz", "/openapi.json", "/docs"])
def test_search_app_open_routes_need_no_key(loaded: SearchApp, url: str) -> None:
    assert loaded.client.get(url).status_code == 200


def test_search_app_key_configured_as_a_hash_works(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from fastapi.testclient import TestClient

    from services.core.config import Settings
    from services.local.app import create_local_app

    monkeypatch.setenv("CALLVAULT_API_KEYS", "sha256:" + hashlib.sha256(b"cvk_hashed").hexdigest() + ",cvk_raw")
    client = TestClient(create_local_app(Settings(data_dir=tmp_path), []))
    for key, status in [("cvk_hashed", 200), ("cvk_raw", 200), ("cvk_other", 401)]:
        assert client.get("/calls", headers={"Authorization": f"Bearer {key}"}).status_code == status
    # Building an app never writes secrets into the data dir (only `callvault serve` does).
    assert not {"api-key", "signing-key"} & {p.name for p in tmp_path.iterdir()}


# --- GET /calls ---------------------------------------------------------------------------------


def test_search_app_without_filters_lists_the_most_recent_calls(loaded: SearchApp) -> None:
    response = loaded.client.get("/calls", headers=loaded.auth)
    assert ids(response) == [OUTBOUND, FAILED, WEB, CONVERSATION]  # newest first; ties by id
    assert response.json()["next_cursor"] is None
    item = response.json()["items"][3]
    assert item["phone"] == "+16125550142" and item["has_audio"] is True and item["audio_bytes"] > 0
    assert "transcript_key" not in item and "archive_prefix" not in item  # the summary, not the storage layout


PHONE_QUERIES = [
    "phone=%2B16125550142",
    "phone=+16125550142",  # unencoded: the "+" arrives as a space
    "phone=%2B1%20612-555-0142",
    "phone=+1 612-555-0142",
    "phone=(612)%20555-0142",
    "phone=16125550142",
    "phone=612.555.0142",
]


@pytest.mark.parametrize("query", PHONE_QUERIES)
def test_search_app_finds_a_phone_however_it_is_typed(loaded: SearchApp, query: str) -> None:
    assert ids(loaded.client.get(f"/calls?{query}", headers=loaded.auth)) == [CONVERSATION]


def test_search_app_bad_phone_is_422_saying_what_is_wrong(loaded: SearchApp) -> None:
    body = assert_envelope(loaded.client.get("/calls?phone=555-0142", headers=loaded.auth), 422, "invalid_request")
    assert "area code" in body["error"]["message"]
    body = assert_envelope(loaded.client.get("/calls?phone=hello", headers=loaded.auth), 422, "invalid_request")
    assert "no digits" in body["error"]["message"]


def test_search_app_filters_by_agent_time_status_and_outcome(loaded: SearchApp) -> None:
    get = loaded.client.get
    auth = loaded.auth
    assert ids(get("/calls?agent_id=agent_01jxbrc1trfxev5sdp5xk4ra67", headers=auth)) == [
        OUTBOUND,
        FAILED,
        WEB,
        CONVERSATION,
    ]
    assert ids(get("/calls?agent_id=agent_nobody", headers=auth)) == []
    assert ids(get("/calls?status=initiation_failed", headers=auth)) == [FAILED]
    assert ids(get("/calls?call_successful=failure&status=done", headers=auth)) == [OUTBOUND, WEB, CONVERSATION]
    assert ids(get("/calls?since=2025-07-07", headers=auth)) == [OUTBOUND]
    assert ids(get("/calls?until=1751805625", headers=auth)) == [WEB, CONVERSATION]
    assert ids(get("/calls?since=2025-07-06T12:40:25%2B00:00&until=2025-07-06T13:40:26Z", headers=auth)) == [FAILED]
    assert ids(get("/calls?since=2025-07-06T14:40:25+02:00", headers=auth)) == [OUTBOUND, FAILED]  # "+" as space
    assert ids(get("/calls?phone=%2B16125550142&since=2025-07-07", headers=auth)) == []


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("since=yesterday", "since is neither"),
        ("until=2025-02-30", "until is neither"),
        ("since=2025-07-07&until=2025-07-06", "until must be later than since"),
        ("agent_id=%3Cscript%3E", "agent_id must be"),
        ("status=a%20b", "status must be"),
        ("phone=" + "1" * 65, "phone"),
    ],
)
def test_search_app_bad_parameters_are_422_with_the_envelope(loaded: SearchApp, query: str, fragment: str) -> None:
    body = assert_envelope(loaded.client.get(f"/calls?{query}", headers=loaded.auth), 422, "invalid_request")
    assert fragment in body["error"]["message"]


def record(n: int, started_at: int, phone: str = "+14155550100") -> CallRecord:
    return CallRecord(
        f"conv_walk_{n:05d}",
        phone=phone,
        archive_prefix=phone.removeprefix("+"),
        agent_id="agent_walk",
        started_at=started_at,
        status="done",
        event_at=started_at,
    )


def test_search_app_pagination_has_no_duplicates_and_no_gaps_while_calls_arrive(search_app: SearchApp) -> None:
    base = 1_760_000_000
    initial = set()
    for n in range(53):
        search_app.add(record(n, base + (n // 2) * 60))  # pairs share a second
        initial.add(f"conv_walk_{n:05d}")
    seen: list[str] = []
    arrived_older: set[str] = set()
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"phone": "(415) 555-0100", "limit": 10}
        if cursor:
            params["cursor"] = cursor
        response = search_app.client.get("/calls", params=params, headers=search_app.auth)
        page = response.json()
        seen += [item["conversation_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        pages += 1
        search_app.add(record(1000 + pages, base + 10_000_000 + pages))  # newer than the walk: not in it
        search_app.add(record(2000 + pages, base - pages))  # older than the walk's position: must show up
        arrived_older.add(f"conv_walk_{2000 + pages:05d}")
        search_app.add(record(3000 + pages, base + 60, phone="+14155550199"))  # other phone
    assert pages >= 5
    assert len(seen) == len(set(seen))
    assert set(seen) == initial | arrived_older


def test_search_app_tampered_cursor_is_400_never_another_query(loaded: SearchApp) -> None:
    first = loaded.client.get("/calls", params={"limit": 1}, headers=loaded.auth).json()
    cursor = first["next_cursor"]
    assert cursor
    for tampered in [cursor[:-1] + ("A" if cursor[-1] != "A" else "B"), "x" + cursor, cursor[:20], "garbage", "."]:
        response = loaded.client.get("/calls", params={"limit": 1, "cursor": tampered}, headers=loaded.auth)
        assert_envelope(response, 400, "invalid_cursor")
    other = loaded.client.get("/calls", params={"limit": 1, "cursor": cursor, "status": "done"}, headers=loaded.auth)
    body = assert_envelope(other, 400, "invalid_cursor")
    assert "other filters" in body["error"]["message"]
    same = loaded.client.get("/calls", params={"limit": 1, "cursor": cursor}, headers=loaded.auth)
    assert ids(same) == [FAILED]


# --- GET /calls/{id} ----------------------------------------------------------------------------


def test_search_app_call_detail_has_the_full_record_and_links(loaded: SearchApp) -> None:
    response = loaded.client.get(f"/calls/{CONVERSATION}", headers=loaded.auth)
    assert response.status_code == 200
    call = response.json()
    assert call["conversation_id"] == CONVERSATION and call["phone"] == "+16125550142"
    assert call["transcript_key"] == f"16125550142/{CONVERSATION}.json"
    assert call["audio_key"] == f"16125550142/{CONVERSATION}.mp3"
    transcript, audio = call["links"]["transcript"], call["links"]["audio"]
    assert transcript["url"].startswith(f"http://testserver/files/16125550142/{CONVERSATION}.json?")
    assert transcript["bytes"] == call["transcript_bytes"]
    assert audio["bytes"] == call["audio_bytes"] > 0
    assert transcript["expires_at"] == int(loaded.clock.now) + 900
    downloaded = loaded.client.get(transcript["url"])  # no API key: the link carries its own signature
    assert downloaded.status_code == 200
    archived = (loaded.data_dir / "archive" / call["transcript_key"]).read_bytes()
    assert downloaded.content == archived and len(archived) == transcript["bytes"]
    assert downloaded.headers["content-disposition"] == f'attachment; filename="{CONVERSATION}.json"'


def test_search_app_call_without_audio_has_a_null_audio_link(loaded: SearchApp) -> None:
    call = loaded.client.get(f"/calls/{WEB}", headers=loaded.auth).json()
    assert call["phone"] is None and call["links"]["audio"] is None and call["links"]["transcript"]["url"]


def test_search_app_public_url_setting_is_used_for_links(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    from services.core.config import Settings
    from services.local.app import create_local_app
    from services.web.auth import hash_key
    from tests.support import SECRET, fixture_bytes, signed_headers

    settings = Settings(data_dir=tmp_path, public_url="https://calls.example.org/vault")
    client = TestClient(create_local_app(settings, [SECRET], api_key_hashes=[hash_key("k")]))
    body = fixture_bytes(TRANSCRIPTION)
    client.post("/webhooks/elevenlabs", content=body, headers=signed_headers(body))
    call = client.get(f"/calls/{CONVERSATION}", headers={"Authorization": "Bearer k"}).json()
    assert call["links"]["transcript"]["url"].startswith("https://calls.example.org/vault/files/16125550142/")


def test_search_app_unknown_call_is_404_and_bad_id_is_422(loaded: SearchApp) -> None:
    assert_envelope(loaded.client.get("/calls/conv_missing", headers=loaded.auth), 404, "not_found")
    for bad in ["conv.bad", "a%20b", "x" * 129, "conv_%C3%A9"]:
        body = assert_envelope(loaded.client.get(f"/calls/{bad}", headers=loaded.auth), 422, "invalid_request")
        assert "conversation_id" in body["error"]["message"]


# --- every error is the envelope ----------------------------------------------------------------


class ExplodingIndex(MemoryCallIndex):
    def get(self, conversation_id: str) -> CallRecord | None:
        raise RuntimeError(f"boom for +16125550142 in {conversation_id}")

    def list_calls(self, query: CallQuery) -> CallPage:
        raise KeyError(f"boom for {query.phone}")


class DownIndex(MemoryCallIndex):
    def get(self, conversation_id: str) -> CallRecord | None:
        raise StorageUnavailable("the call index is unavailable (GetItem: /srv/16125550142)")

    def list_calls(self, query: CallQuery) -> CallPage:
        raise StorageUnavailable("the call index is unavailable (Query: /srv/16125550142)")


@pytest.mark.parametrize("url", ["/calls?phone=%2B16125550142", f"/calls/{CONVERSATION}"])
def test_search_app_unexpected_error_is_500_internal_without_a_trace(search_app: SearchApp, url: str) -> None:
    search_app.app.dependency_overrides[get_index] = ExplodingIndex
    body = assert_envelope(search_app.client.get(url, headers=search_app.auth), 500, "internal")
    assert body["error"]["message"] == "internal error"
    assert "boom" not in json.dumps(body) and "16125550142" not in json.dumps(body)


@pytest.mark.parametrize("url", ["/calls", f"/calls/{CONVERSATION}"])
def test_search_app_storage_outage_is_503_without_details(search_app: SearchApp, url: str) -> None:
    search_app.app.dependency_overrides[get_index] = DownIndex
    body = assert_envelope(search_app.client.get(url, headers=search_app.auth), 503, "storage_unavailable")
    assert "/srv/" not in body["error"]["message"] and "16125550142" not in body["error"]["message"]


def test_search_app_framework_errors_use_the_envelope(loaded: SearchApp) -> None:
    assert_envelope(loaded.client.get("/nope", headers=loaded.auth), 404, "not_found")
    assert_envelope(loaded.client.post("/calls", headers=loaded.auth), 405, "method_not_allowed")
    assert_envelope(loaded.client.delete(f"/calls/{CONVERSATION}", headers=loaded.auth), 405, "method_not_allowed")


# --- logs ---------------------------------------------------------------------------------------


@contextmanager
def captured_logs(search_app: SearchApp) -> Iterator[io.StringIO]:
    """Point the app logger's stream handler at a buffer (Powertools shares one handler per service)."""
    logger = logging.getLogger(search_app.app.state.logger.service)
    handlers = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]
    assert handlers
    buffer = io.StringIO()
    previous = [h.stream for h in handlers]
    level = logger.level
    for handler in handlers:
        handler.stream = buffer
    logger.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        logger.setLevel(level)
        for handler, stream in zip(handlers, previous, strict=True):
            handler.stream = stream


def test_search_app_logs_one_masked_line_per_request_and_no_query_string(loaded: SearchApp) -> None:
    with captured_logs(loaded) as buffer:
        loaded.client.get("/calls?phone=%2B16125550142&since=2025-07-01", headers=loaded.auth)
        loaded.client.get("/calls?phone=(612)%20555-0177", headers={"Authorization": "Bearer nope"})
        detail = loaded.client.get(f"/calls/{CONVERSATION}", headers=loaded.auth).json()
        loaded.client.get(detail["links"]["audio"]["url"], headers={"Range": "bytes=0-99"})
        loaded.app.dependency_overrides[get_index] = ExplodingIndex
        loaded.client.get("/calls?phone=%2B16125550142", headers=loaded.auth)
    text = buffer.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["message"] == "request"]
    assert [r["route"] for r in requests] == [
        "/calls",
        "/calls",
        "/calls/{conversation_id}",
        "/files/{key:path}",
        "/calls",
    ]
    assert [r["status"] for r in requests] == [200, 401, 200, 206, 500]
    assert requests[0]["filters"] == ["phone", "since"] and requests[0]["phone"] == "*******0142"
    assert requests[0]["items"] == 1
    assert requests[1]["error_code"] == "unauthorized"
    assert any(line["message"] == "request failed" and line["error_type"] == "KeyError" for line in lines)
    assert not re.search(r"555\D?0142|6125550177|555-0177|since=|signature=|boom", text), text


# --- OpenAPI ------------------------------------------------------------------------------------


def test_search_app_openapi_documents_examples_auth_and_the_envelope(loaded: SearchApp) -> None:
    spec = loaded.client.get("/openapi.json").json()
    listing, detail = spec["paths"]["/calls"]["get"], spec["paths"]["/calls/{conversation_id}"]["get"]
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    for operation in (listing, detail):
        assert operation["security"] == [{"ApiKey": []}]
        assert all(p.get("examples") for p in operation["parameters"] if p["name"] not in {"limit", "cursor"})
        for status in ("401", "422", "503"):
            error = operation["responses"][status]["content"]["application/json"]
            assert error["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"} and error["example"]["error"]
    assert {p["name"] for p in listing["parameters"]} == {
        "phone",
        "agent_id",
        "since",
        "until",
        "status",
        "call_successful",
        "limit",
        "cursor",
    }
    schemas = spec["components"]["schemas"]
    assert schemas["CallList"]["examples"][0]["items"][0]["phone"] == "+16125550142"
    assert schemas["CallDetail"]["examples"][0]["links"]["transcript"]["url"].startswith("https://")
    for open_path in ("/healthz", "/files/{key}"):
        assert "security" not in spec["paths"][open_path]["get"]
    assert "Swagger UI" in loaded.client.get("/docs").text

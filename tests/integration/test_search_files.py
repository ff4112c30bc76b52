"""Local signed file links over HTTP: like presigned S3 URLs (403 when altered, expired or moved to
another file), no API key needed, Range answered with 206 so audio players can seek."""

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.integration.conftest import HttpResponse, SearchApp
from tests.support import AUDIO, TRANSCRIPTION, TRANSCRIPTION_OUTBOUND

CONVERSATION = "conv_01jzfrjvcce0vsea1fcbpp9p04"
OUTBOUND = "conv_01jzfrjvcce0vsea1fcbpp9p05"


@pytest.fixture
def loaded(search_app: SearchApp) -> SearchApp:
    for name in (TRANSCRIPTION, AUDIO, TRANSCRIPTION_OUTBOUND):
        search_app.ingest(name)
    return search_app


def links(app: SearchApp, conversation_id: str = CONVERSATION) -> dict[str, Any]:
    response = app.client.get(f"/calls/{conversation_id}", headers=app.auth)
    assert response.status_code == 200
    found: dict[str, Any] = response.json()["links"]
    return found


def archived(app: SearchApp, key: str) -> bytes:
    return (app.data_dir / "archive" / key).read_bytes()


def with_query(url: str, **changes: str) -> str:
    split = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(split.query).items()} | changes
    return f"{split.scheme}://{split.netloc}{split.path}?{urlencode(query)}"


def assert_refused(response: HttpResponse, status: int = 403, code: str = "forbidden") -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "request_id"} and body["error"]["code"] == code
    message: str = body["error"]["message"]
    return message


def test_search_files_valid_link_returns_exactly_the_archived_bytes(loaded: SearchApp) -> None:
    audio = links(loaded)["audio"]
    response = loaded.client.get(audio["url"])
    assert response.status_code == 200
    assert response.content == archived(loaded, f"16125550142/{CONVERSATION}.mp3")
    assert len(response.content) == audio["bytes"]
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.headers["accept-ranges"] == "bytes"
    # inline: a browser that opens the link plays the audio instead of saving it (issue #14)
    assert response.headers["content-disposition"] == f'inline; filename="{CONVERSATION}.mp3"'


def test_search_files_transcripts_download_as_attachments(loaded: SearchApp) -> None:
    response = loaded.client.get(links(loaded)["transcript"]["url"])
    assert response.status_code == 200
    assert response.headers["content-disposition"] == f'attachment; filename="{CONVERSATION}.json"'


@pytest.mark.parametrize("kind", ["audio", "transcript"])
def test_search_files_head_answers_the_get_headers_without_a_body(loaded: SearchApp, kind: str) -> None:
    url = links(loaded)[kind]["url"]
    got = loaded.client.get(url)
    head = loaded.client.head(url)
    assert head.status_code == 200 and head.content == b""
    for name in ("content-type", "content-length", "content-disposition", "accept-ranges"):
        assert head.headers[name] == got.headers[name], name
    ranged = loaded.client.head(url, headers={"range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.headers["content-length"] == "10"
    assert ranged.headers["content-range"] == f"bytes 0-9/{len(got.content)}"
    assert loaded.client.head(with_query(url, signature="0" * 64)).status_code == 403


def test_search_files_links_need_no_api_key_and_a_key_does_not_replace_the_signature(loaded: SearchApp) -> None:
    url = links(loaded)["transcript"]["url"]
    assert loaded.client.get(url).status_code == 200
    unsigned = url.split("?")[0]
    assert_refused(loaded.client.get(unsigned, headers=loaded.auth))


@pytest.mark.parametrize(
    "change",
    [
        {"signature": "0" * 64},
        {"signature": ""},
        {"expires": "9999999999"},
        {"filename": "evil.html"},
    ],
    ids=["signature", "empty-signature", "later-expiry", "other-filename"],
)
def test_search_files_tampered_link_is_403(loaded: SearchApp, change: dict[str, str]) -> None:
    url = links(loaded)["audio"]["url"]
    message = assert_refused(loaded.client.get(with_query(url, **change)))
    assert "expired" not in message


def test_search_files_signature_reused_for_another_file_is_403(loaded: SearchApp) -> None:
    url = links(loaded)["transcript"]["url"]
    other = url.replace(f"16125550142/{CONVERSATION}.json", f"16125550177/{OUTBOUND}.json")
    assert other != url
    assert_refused(loaded.client.get(other))
    audio_path = url.replace(".json?", ".mp3?")  # same call, the other object
    assert_refused(loaded.client.get(audio_path))


def test_search_files_expired_link_is_403(loaded: SearchApp) -> None:
    url = links(loaded)["transcript"]["url"]
    loaded.clock.now += 900
    assert loaded.client.get(url).status_code == 200  # valid through its last second
    loaded.clock.now += 1
    assert "expired" in assert_refused(loaded.client.get(url))


RANGES = [
    ("bytes=0-99", 0, 99),
    ("bytes=100-", 100, None),
    ("bytes=-50", -50, None),
    ("bytes=16000-999999", 16000, None),
]


@pytest.mark.parametrize(("header", "start", "end"), RANGES, ids=[h for h, _, _ in RANGES])
def test_search_files_range_is_206_with_the_right_bytes(
    loaded: SearchApp, header: str, start: int, end: int | None
) -> None:
    data = archived(loaded, f"16125550142/{CONVERSATION}.mp3")
    expected = data[start : (end + 1 if end is not None else None)]
    response = loaded.client.get(links(loaded)["audio"]["url"], headers={"Range": header})
    assert response.status_code == 206
    assert response.content == expected
    first = start if start >= 0 else len(data) + start
    assert response.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{len(data)}"
    assert response.headers["content-length"] == str(len(expected))


def test_search_files_player_can_seek_through_the_whole_file(loaded: SearchApp) -> None:
    url = links(loaded)["audio"]["url"]
    data = archived(loaded, f"16125550142/{CONVERSATION}.mp3")
    pieces = [
        loaded.client.get(url, headers={"Range": f"bytes={i}-{i + 4095}"}).content for i in range(0, len(data), 4096)
    ]
    assert b"".join(pieces) == data


def test_search_files_range_past_the_end_is_416_with_the_envelope(loaded: SearchApp) -> None:
    audio = links(loaded)["audio"]
    response = loaded.client.get(audio["url"], headers={"Range": f"bytes={audio['bytes']}-"})
    assert_refused(response, 416, "range_not_satisfiable")
    assert response.headers["content-range"] == f"bytes */{audio['bytes']}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=9-2", "lines=1-2", "bytes=x-"])
def test_search_files_range_not_understood_sends_the_whole_file(loaded: SearchApp, header: str) -> None:
    response = loaded.client.get(links(loaded)["audio"]["url"], headers={"Range": header})
    assert response.status_code == 200
    assert response.content == archived(loaded, f"16125550142/{CONVERSATION}.mp3")


def test_search_files_a_range_on_a_tampered_link_is_still_403(loaded: SearchApp) -> None:
    url = with_query(links(loaded)["audio"]["url"], signature="f" * 64)
    assert_refused(loaded.client.get(url, headers={"Range": "bytes=0-10"}))


@pytest.mark.parametrize(
    "path",
    [
        "/files/..%2F..%2Fetc%2Fpasswd",
        "/files/%2Fetc%2Fpasswd",
        "/files/16125550142/..%2F..%2F..%2Fwebhook-secret",
        "/files/..%5C..%5Cwebhook-secret",
    ],
)
def test_search_files_keys_outside_the_archive_are_refused(loaded: SearchApp, path: str) -> None:
    # Even a correctly signed link for a key outside the archive is refused before any file is opened.
    signer = loaded.app.state.search.file_links
    key = httpx.URL("http://x" + path).path.removeprefix("/files/")
    signed = signer.sign(key, 60, "x.json")
    query = signed.url.split("?", 1)[1]
    response = loaded.client.get(f"{path}?{query}")
    assert "not inside the archive" in assert_refused(response)
    assert "wsec_" not in response.text and "root:" not in response.text


def test_search_files_signed_link_for_a_deleted_object_is_404(loaded: SearchApp) -> None:
    url = links(loaded)["transcript"]["url"]
    (loaded.data_dir / "archive" / f"16125550142/{CONVERSATION}.json").unlink()
    assert_refused(loaded.client.get(url), 404, "not_found")

"""The search API of the real `callvault serve` process over real HTTP: ingest the shipped fixtures
through the webhook, find them, download them. Files on disk are the oracle for downloads."""

import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import (
    ALL_FIXTURES,
    ServedArchive,
    fixture_bytes,
    serve_archive,
    signed_headers,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CALL_ID = "conv_01jzfrjvcce0vsea1fcbpp9p04"  # +16125550142, with audio
OUTBOUND = "conv_01jzfrjvcce0vsea1fcbpp9p05"
WEB = "conv_01jzfrjvcce0vsea1fcbpp9p06"
FAILED = "conv_01jzfrjvcce0vsea1fcbpp9p07"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedArchive]:
    with serve_archive(tmp_path / "data") as archive:
        for name in ALL_FIXTURES:
            body = fixture_bytes(name)
            response = httpx.post(archive.url + "/webhooks/elevenlabs", content=body, headers=signed_headers(body))
            assert response.status_code == 200, response.text
        yield archive


def api_key(served: ServedArchive) -> str:
    return (served.data_dir / "api-key").read_text().strip()


def auth(served: ServedArchive) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key(served)}"}


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["conversation_id"] for item in response.json()["items"]]


def test_serve_search_generates_and_keeps_an_api_key_and_says_where(served: ServedArchive) -> None:
    key_file = served.data_dir / "api-key"
    key = api_key(served)
    assert key.startswith("cvk_") and len(key) > 40
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key not in served.logs() and f"cat {key_file}" in served.logs()  # where it is, never its value
    assert httpx.get(served.url + "/calls").status_code == 401
    assert httpx.get(served.url + "/calls", headers={"Authorization": "Bearer cvk_wrong"}).status_code == 401
    assert httpx.get(served.url + "/calls", headers=auth(served)).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "phone=%2B16125550142",
        "phone=+16125550142",
        "phone=+1 612-555-0142",
        "phone=(612) 555-0142",
        "phone=16125550142",
    ],
)
def test_serve_search_finds_calls_by_phone_as_typed(served: ServedArchive, query: str) -> None:
    # Sent as raw bytes on the request line: no client-side re-encoding of "+" or spaces.
    url = served.url + "/calls?" + query.replace(" ", "%20")
    assert ids(httpx.get(url, headers=auth(served))) == [CALL_ID]


def test_serve_search_lists_pages_and_filters(served: ServedArchive) -> None:
    headers = auth(served)
    everything = ids(httpx.get(served.url + "/calls", headers=headers))
    assert everything == [OUTBOUND, FAILED, WEB, CALL_ID]
    walked: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = httpx.get(served.url + "/calls", params=params, headers=headers).json()
        walked += [item["conversation_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == everything
    assert ids(httpx.get(served.url + "/calls", params={"status": "initiation_failed"}, headers=headers)) == [FAILED]
    assert ids(httpx.get(served.url + "/calls", params={"since": "2025-07-07"}, headers=headers)) == [OUTBOUND]


def test_serve_search_show_and_download_the_archived_files(served: ServedArchive) -> None:
    response = httpx.get(f"{served.url}/calls/{CALL_ID}", headers=auth(served))
    assert response.status_code == 200
    call = response.json()
    archive = served.data_dir / "archive"
    transcript = httpx.get(call["links"]["transcript"]["url"])  # no API key on downloads
    assert transcript.status_code == 200
    assert transcript.content == (archive / call["transcript_key"]).read_bytes()
    assert transcript.headers["content-disposition"] == f'attachment; filename="{CALL_ID}.json"'
    assert json.loads(transcript.content)["conversation_id"] == CALL_ID
    audio_url = call["links"]["audio"]["url"]
    assert audio_url.startswith(served.url + "/files/")
    mp3 = (archive / call["audio_key"]).read_bytes()
    assert httpx.get(audio_url).content == mp3
    part = httpx.get(audio_url, headers={"Range": "bytes=1000-1999"})
    assert (part.status_code, part.content) == (206, mp3[1000:2000])
    tampered = audio_url.replace("signature=", "signature=0")
    assert httpx.get(tampered).status_code == 403
    assert httpx.get(f"{served.url}/calls/conv_missing", headers=auth(served)).json()["error"]["code"] == "not_found"


def test_serve_search_key_and_links_survive_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serve_archive(data_dir) as first:
        body = fixture_bytes(ALL_FIXTURES[0])
        httpx.post(first.url + "/webhooks/elevenlabs", content=body, headers=signed_headers(body))
        key = api_key(first)
        link = httpx.get(f"{first.url}/calls/{CALL_ID}", headers=auth(first)).json()["links"]["transcript"]["url"]
        cursor_page = httpx.get(first.url + "/calls", params={"limit": 1}, headers=auth(first)).json()
    with serve_archive(data_dir) as second:
        assert api_key(second) == key
        assert key not in second.logs()  # shown once, then only where it is kept
        assert "api-key" in second.logs()
        moved = link.replace(first.url, second.url)
        assert httpx.get(moved).status_code == 200  # same signing key: links outlive the process
        assert (
            cursor_page["next_cursor"] is None
            or httpx.get(
                second.url + "/calls", params={"limit": 1, "cursor": cursor_page["next_cursor"]}, headers=auth(second)
            ).status_code
            == 200
        )


def test_serve_search_configured_keys_replace_the_generated_one(tmp_path: Path) -> None:
    with serve_archive(tmp_path / "data", env={"CALLVAULT_API_KEYS": "cvk_from_env"}) as served:
        assert not (served.data_dir / "api-key").exists()
        assert httpx.get(served.url + "/calls", headers={"Authorization": "Bearer cvk_from_env"}).status_code == 200


def test_serve_search_logs_hold_no_full_phone_number(served: ServedArchive) -> None:
    headers = auth(served)
    httpx.get(served.url + "/calls?phone=%2B16125550142", headers=headers)
    httpx.get(served.url + "/calls?phone=(612)%20555-0177", headers=headers)
    httpx.get(served.url + "/calls?phone=bad", headers=headers)
    call = httpx.get(f"{served.url}/calls/{CALL_ID}", headers=headers).json()
    httpx.get(call["links"]["audio"]["url"])
    logs = served.logs()
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(line.get("route") == "/calls" and line.get("phone") == "*******0142" for line in lines)
    for digits in ("6125550142", "6125550177", "555-0177"):
        assert digits not in logs


def cli(served: ServedArchive, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "services.cli", *args, "--data-dir", str(served.data_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_serve_search_cli_reads_the_same_archive_while_serving(served: ServedArchive) -> None:
    listed = cli(served, "calls", "--phone", "(612) 555-0142", "--json")
    assert listed.returncode == 0, listed.stderr
    api = httpx.get(served.url + "/calls?phone=%2B16125550142", headers=auth(served)).json()
    assert json.loads(listed.stdout) == api

    table = cli(served, "calls", "--limit", "2")
    assert table.returncode == 0, table.stderr
    assert OUTBOUND in table.stdout and FAILED in table.stdout and CALL_ID not in table.stdout
    assert "--cursor" in table.stderr

    shown = cli(served, "show", CALL_ID, "--json", "--base-url", served.url)
    assert shown.returncode == 0, shown.stderr
    detail: dict[str, Any] = json.loads(shown.stdout)
    assert detail["phone"] == "+16125550142"
    downloaded = httpx.get(detail["links"]["audio"]["url"])  # a link made by the CLI, served by the server
    assert downloaded.status_code == 200
    assert downloaded.content == (served.data_dir / "archive" / detail["audio_key"]).read_bytes()

    bad = cli(served, "calls", "--phone", "555-0142")
    assert bad.returncode == 2 and "area code" in bad.stderr
    missing = cli(served, "show", "conv_missing")
    assert missing.returncode == 1 and "no call" in missing.stderr

"""The console and search API at their edges: long-open pages, errors met in the console, the audit
trail's view of searches and of a player seeking, reversed ranges. The local app with a test clock."""

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.core.config import Settings
from services.local.app import create_local_app
from services.web.auth import parse_key_entries
from tests.support import AUDIO, SECRET, TRANSCRIPTION, fixture_bytes, signed_headers
from tests.support_console import csrf_of, sign_in

CALL_ID = "conv_01jzfrjvcce0vsea1fcbpp9p04"
ADMIN, LISTEN = "cvk_edges-admin", "cvk_edges-listen"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("CALLVAULT_MEMORY_BACKEND", "none")
    entries = parse_key_entries([ADMIN, f"listen:{LISTEN}"])
    settings = Settings(data_dir=tmp_path / "data")
    app = create_local_app(settings, [SECRET], api_key_hashes=entries, signing_key=b"e" * 32, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        for name in (TRANSCRIPTION, AUDIO):
            raw = fixture_bytes(name)
            stored = test_client.post("/webhooks/elevenlabs", content=raw, headers=signed_headers(raw))
            assert stored.status_code == 200, stored.text
        yield test_client


def _trail(client: TestClient) -> list[dict[str, Any]]:
    answer = client.get("/audit", params={"limit": 1000}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 200
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_the_transcript_download_of_a_page_open_longer_than_a_link_lives_still_works(
    client: TestClient, clock: Clock
) -> None:
    sign_in(client, LISTEN)
    page = client.get(f"/console/calls/{CALL_ID}").text
    found = re.search(r'<a href="([^"]+)" download>Transcript', page)
    assert found is not None
    clock.now += 16 * 60  # past the 15-minute link lifetime: the reviewer read the call first
    downloaded = client.get(found.group(1).replace("&amp;", "&"))
    assert downloaded.status_code == 200, downloaded.text
    assert downloaded.json()["conversation_id"] == CALL_ID


def test_opening_the_console_search_without_words_is_not_a_search_in_the_trail(client: TestClient) -> None:
    sign_in(client, ADMIN)
    before = len(_trail(client))
    assert client.get("/console/search").status_code == 200
    assert client.get("/console/search", params={"q": " "}).status_code in (200, 400)
    assert [entry["action"] for entry in _trail(client)[before:]] == []
    assert client.get("/console/search", params={"q": "hello"}).status_code == 200
    assert [entry["action"] for entry in _trail(client)[before:]] == ["transcript_search"]


def test_a_player_seeking_with_one_link_is_one_download_and_a_new_link_is_another(
    client: TestClient, clock: Clock
) -> None:
    def audio_link() -> str:
        answer = client.get(f"/calls/{CALL_ID}", headers={"Authorization": f"Bearer {LISTEN}"})
        url: str = answer.json()["links"]["audio"]["url"]
        return url

    url = audio_link()
    before = len(_trail(client))
    for start in (0, 1000, 2000, 3000):  # the first request, then seeks
        assert client.get(url, headers={"Range": f"bytes={start}-"}).status_code == 206
    assert client.get(url).status_code == 200  # and the whole file again
    downloads = [entry for entry in _trail(client)[before:] if entry["action"] == "file_download"]
    assert len(downloads) == 1
    clock.now += 1  # a link issued in the same second is the same link (its signature covers its expiry)
    second = audio_link()
    assert second != url
    assert client.get(second, headers={"Range": "bytes=500-"}).status_code == 206  # a seek first still counts
    downloads = [entry for entry in _trail(client)[before:] if entry["action"] == "file_download"]
    assert len(downloads) == 2


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/console/calls/not.an.id", 404),
        ("/console/calls/conv_nope/audio", 404),
        ("/console/calls/conv_nope/transcript", 404),
        ("/console/callers/" + "1" * 70, 400),
        ("/console/nowhere", 404),
    ],
)
def test_errors_in_the_console_are_pages_with_a_way_back(client: TestClient, path: str, status: int) -> None:
    sign_in(client, LISTEN)
    answer = client.get(path)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/html"), answer.text
    assert 'href="/console/calls"' in answer.text
    assert "content-security-policy" in answer.headers


@pytest.mark.parametrize(
    ("method", "path", "words"),
    [
        ("GET", "/console/nowhere", "There is no console page at this address"),
        ("GET", "/console/calls/" + CALL_ID + "/nothing", "There is no console page at this address"),
        ("GET", "/console/signout", "This address is for a form to send, not a page to open"),
    ],
)
def test_an_unknown_console_address_says_what_to_do_not_the_frameworks_words(
    client: TestClient, method: str, path: str, words: str
) -> None:
    sign_in(client, LISTEN)
    answer = client.request(method, path)
    assert answer.headers["content-type"].startswith("text/html") and words in answer.text
    assert "Not Found" not in answer.text and "Method Not Allowed" not in answer.text


def test_a_caller_link_too_long_for_a_number_is_not_a_phone_number_not_a_parameter_error(client: TestClient) -> None:
    sign_in(client, LISTEN)
    answer = client.get("/console/callers/" + "1" * 70)
    assert answer.status_code == 400 and "Not a phone number" in answer.text
    assert "phone is longer than 64 characters" in answer.text and "String should" not in answer.text


def test_an_error_page_keeps_the_signed_in_header_so_one_can_sign_out_from_it(client: TestClient) -> None:
    stranger = client.get("/console/nowhere")
    assert stranger.status_code == 404 and "Sign out" not in stranger.text
    sign_in(client, LISTEN)
    for path in ("/console/nowhere", "/console/signout", "/console/calls/conv_nope/audio"):
        answer = client.get(path)
        assert answer.status_code >= 400 and 'action="/console/signout"' in answer.text, path
        assert 'href="/console/search"' in answer.text, path
        signed_out = client.post("/console/signout", data={"csrf": csrf_of(answer.text)}, follow_redirects=False)
        assert signed_out.status_code == 303, path
        sign_in(client, LISTEN)


def test_the_consoles_own_address_opens_the_calls_not_a_json_404(client: TestClient) -> None:
    sign_in(client, LISTEN)
    answer = client.get("/console", follow_redirects=False)
    assert (answer.status_code, answer.headers.get("location")) == (303, "/console/calls")


def test_a_call_link_with_a_stray_character_says_what_an_id_looks_like_not_a_pattern(client: TestClient) -> None:
    sign_in(client, LISTEN)
    answer = client.get("/console/calls/" + CALL_ID + ".")  # a link copied with the sentence's full stop
    assert answer.status_code == 404
    assert "No call with this id. A conversation id is 1-128 letters, digits, _ or -" in answer.text
    assert "pattern" not in answer.text and "[A-Za-z0-9_-]" not in answer.text


def test_api_errors_stay_json(client: TestClient) -> None:
    answer = client.get("/calls/not.an.id", headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_request"
    assert client.get("/console/static/nothing.js").status_code == 404


def test_a_call_whose_transcript_file_is_missing_is_a_page_saying_so(client: TestClient, tmp_path: Path) -> None:
    for transcript in (tmp_path / "data" / "archive").rglob(f"{CALL_ID}.json"):
        transcript.unlink()
    sign_in(client, LISTEN)
    answer = client.get(f"/console/calls/{CALL_ID}")
    assert answer.status_code == 404 and "callvault verify" in answer.text


def test_signing_out_with_an_expired_session_then_signing_in_lands_on_a_page(client: TestClient, clock: Clock) -> None:
    sign_in(client, ADMIN)
    csrf = csrf_of(client.get("/console/calls").text)
    clock.now += 9 * 3600  # the tab stayed open overnight: the session is over
    out = client.post("/console/signout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    target = out.headers["location"].split("next=", 1)[1] if "next=" in out.headers["location"] else "/console/calls"
    signed = sign_in(client, ADMIN, next_path=target)
    assert signed.status_code == 303
    landed = client.get(signed.headers["location"])
    assert landed.status_code == 200, (signed.headers["location"], landed.status_code)


def test_search_refuses_a_reversed_range_as_calls_does(client: TestClient) -> None:
    answer = client.get(
        "/search",
        params={"q": "Maria", "since": "2025-07-10", "until": "2025-07-01"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert answer.status_code == 422 and "until" in answer.json()["error"]["message"]
    one_day = client.get(
        "/search",
        params={"q": "Maria", "since": "2025-07-06", "until": "2025-07-06"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert one_day.status_code == 200  # both days inclusive: one day is a range


def test_an_eight_digit_date_finds_calls_from_that_day_on(client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    later = client.get("/calls", params={"since": "20990101"}, headers=headers)
    assert later.status_code == 200 and later.json()["items"] == []  # 2099, not 1970-08-23
    year = client.get("/calls", params={"since": "2025"}, headers=headers)
    assert year.status_code == 422 and "2025-01-01" in year.json()["error"]["message"]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"since": "2025-13-45"}, "From is not a day"),
        ({"until": "bad"}, "To is not a day"),
        ({"since": "2025-07-10", "until": "2025-07-01"}, "To is before From"),
    ],
)
def test_the_dashboard_says_which_date_it_cannot_use_instead_of_showing_all_time(
    client: TestClient, query: dict[str, str], says: str
) -> None:
    sign_in(client, ADMIN)
    answer = client.get("/console/dashboard", params=query)
    assert answer.status_code == 400 and 'role="alert"' in answer.text and says in answer.text
    assert "Calls per day" not in answer.text  # no figures for a period nobody asked for
    assert client.get("/console/dashboard", params={"since": "2025-07-01"}).status_code == 200


def test_a_search_longer_than_the_field_allows_says_so_instead_of_searching_a_cut_version(client: TestClient) -> None:
    sign_in(client, ADMIN)
    answer = client.get("/console/search", params={"q": "hello " * 30})
    assert answer.status_code == 400 and "at most 100 characters" in answer.text


def test_filters_in_the_link_that_the_form_cannot_show_are_listed(client: TestClient) -> None:
    sign_in(client, LISTEN)
    page = client.get("/console/calls", params={"since": "1751790000", "status": "initiated"}).text
    assert "Also filtered by From “1751790000” (from the link" in page
    assert '<option value="initiated" selected>' in page  # the list offers every status the filter takes
    plain = client.get("/console/calls", params={"since": "2025-07-06", "status": "done"}).text
    assert "Also filtered by" not in plain


def test_a_status_no_call_can_have_is_refused_naming_the_statuses(client: TestClient) -> None:
    sign_in(client, LISTEN)
    answer = client.get("/console/calls", params={"status": "custom_status"})
    assert answer.status_code == 400
    assert "status must be done, failed, initiation_failed, in-progress, processing or initiated" in answer.text


def test_a_reversed_period_on_the_calls_page_is_said_with_the_forms_labels(client: TestClient) -> None:
    sign_in(client, LISTEN)
    for since, until in (("2025-07-07", "2025-07-01"), ("2025-07-06", "2025-07-06")):
        answer = client.get("/console/calls", params={"since": since, "until": until})
        assert answer.status_code == 400
        assert "Before must be a later day than From (From is included, Before is not)." in answer.text
        assert "until must be" not in answer.text  # the API's names: the page says From and Before


def test_a_failure_no_one_foresaw_is_a_page_with_what_to_do_not_the_apis_json(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug or a broken store behind a page: the reviewer gets a page (headers, a way back, the request
    id to quote), never the API's JSON envelope nor the failure's message; the log keeps where it failed."""
    sign_in(client, LISTEN)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk I/O error at /srv/secret/path")

    client.app.state.console.finder.details = broken  # type: ignore[attr-defined]
    answer = client.get("/console/calls/" + CALL_ID)
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html"), answer.text
    assert "content-security-policy" in answer.headers and answer.headers["cache-control"] == "no-store"
    assert "Something went wrong" in answer.text and 'href="/console/calls"' in answer.text
    assert answer.headers["x-request-id"] in answer.text  # what to quote to whoever runs CallVault
    assert "secret" not in answer.text and "RuntimeError" not in answer.text
    failed = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert [r.__dict__.get("error_type") for r in failed] == ["RuntimeError"]
    assert "secret" not in str(failed[0].__dict__)
    api = client.get("/calls/" + CALL_ID, headers={"Authorization": f"Bearer {ADMIN}"})
    assert api.status_code == 200  # the API's own finder is not the console's

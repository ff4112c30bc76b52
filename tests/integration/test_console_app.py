"""The review console in process (the local app): sign-in and sessions, CSRF, redirects, roles, and
every transcript field rendered escaped. The browser tests (tests/e2e/test_console_browser.py) drive
the same pages in Chromium."""

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.core.config import Settings
from services.core.domain.models import CallRecord
from services.local.app import create_local_app
from services.web.auth import parse_key_entries
from services.web.keystore import KeyFile
from tests.support import ALL_FIXTURES, SECRET, fixture_bytes, signed_headers
from tests.support_console import RICH_ID, RICH_PHONE, XSS, csrf_of, dated_call, rich_audio, rich_call, sign_in

ADMIN, READ, LISTEN = "cvk_console-admin", "cvk_console-read", "cvk_console-listen"
CALL_ID = "conv_01jzfrjvcce0vsea1fcbpp9p04"
PAGES = (
    "/console/calls",
    f"/console/calls/{RICH_ID}",
    f"/console/callers/{RICH_PHONE}",
    "/console/dashboard",
    "/console/search?q=hello",
)


def _app(data_dir: Path) -> TestClient:
    entries = parse_key_entries([ADMIN, f"read:{READ}", f"listen:{LISTEN}"])
    app = create_local_app(Settings(data_dir=data_dir), [SECRET], api_key_hashes=entries, signing_key=b"c" * 32)
    return TestClient(app, raise_server_exceptions=False)


def _ingest(client: TestClient, raw: bytes) -> None:
    assert client.post("/webhooks/elevenlabs", content=raw, headers=signed_headers(raw)).status_code == 200


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with _app(tmp_path / "data") as client:
        for name in ALL_FIXTURES:
            _ingest(client, fixture_bytes(name))
        _ingest(client, rich_call(hostile=XSS))
        _ingest(client, rich_audio())
        yield client


def test_console_root_sends_a_stranger_to_sign_in_and_back(client: TestClient) -> None:
    response = client.get("/console/calls/" + CALL_ID, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/signin?next=/console/calls/{CALL_ID}"
    assert client.get("/", follow_redirects=True).url.path == "/console/signin"
    signed = sign_in(client, ADMIN, f"/console/calls/{CALL_ID}")
    assert (signed.status_code, signed.headers["location"]) == (303, f"/console/calls/{CALL_ID}")
    assert client.get("/").headers.get("content-type", "").startswith("text/html")
    assert "Calls" in client.get("/", follow_redirects=True).text


def test_console_session_cookie_flags(client: TestClient) -> None:
    header = sign_in(client, ADMIN).headers["set-cookie"]
    session = next(part for part in header.split(", cv_") if part.startswith("cv_session=") or "session=" in part)
    assert "HttpOnly" in session and "SameSite=lax" in session and "Path=/" in session
    assert "Max-Age=28800" in session
    assert "Secure" not in session  # plain HTTP on loopback: a Secure cookie would never come back


def test_console_session_cookie_is_secure_over_https(tmp_path: Path) -> None:
    with _app(tmp_path / "data") as client:
        client.base_url = "https://testserver"
        header = sign_in(client, ADMIN).headers["set-cookie"]
        assert "Secure" in header and "HttpOnly" in header
        proxied = client.get("/console/signin", headers={"x-forwarded-proto": "https"})
        assert "Secure" in proxied.headers["set-cookie"]


def test_console_sign_in_always_starts_a_new_session(client: TestClient) -> None:
    # Session fixation: whatever cookie the browser had before (planted or an older session) is replaced.
    client.cookies.set("cv_session", "planted-by-an-attacker")
    first = sign_in(client, ADMIN).cookies.get("cv_session")
    assert first and first != "planted-by-an-attacker"
    second = sign_in(client, ADMIN).cookies.get("cv_session")
    assert second and second != first
    client.cookies.clear()
    client.cookies.set("cv_session", "planted-by-an-attacker")
    assert client.get("/console/calls", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "cookie",
    ["", "x", "e30.AAAA", "eyJrIjoiY2ZnXzEiLCJzIjoiMSIsImUiOjk5OTk5OTk5OTl9.AAAA", "a.b.c"],
)
def test_console_forged_sessions_are_refused(client: TestClient, cookie: str) -> None:
    client.cookies.set("cv_session", cookie)
    assert client.get("/console/calls", follow_redirects=False).status_code == 303


def test_console_tampered_and_expired_sessions_are_refused(client: TestClient) -> None:
    cookie = sign_in(client, ADMIN).cookies["cv_session"]
    body, tag = cookie.split(".")
    client.cookies.clear()
    client.cookies.set("cv_session", body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + tag)
    assert client.get("/console/calls", follow_redirects=False).status_code == 303
    sessions = client.app.state.console.sessions  # type: ignore[attr-defined]
    real_clock = sessions._clock
    client.cookies.clear()
    client.cookies.set("cv_session", cookie)
    assert client.get("/console/calls", follow_redirects=False).status_code == 200
    sessions._clock = lambda: real_clock() + sessions.ttl_secs + 1
    try:
        assert client.get("/console/calls", follow_redirects=False).status_code == 303
    finally:
        sessions._clock = real_clock


def test_console_sign_in_needs_its_csrf_token(client: TestClient) -> None:
    form = client.get("/console/signin")
    token = csrf_of(form.text)
    for data in ({"key": ADMIN}, {"key": ADMIN, "csrf": "wrong"}, {"key": ADMIN, "csrf": token + "x"}):
        refused = client.post("/console/signin", data=data, follow_redirects=False)
        assert refused.status_code == 403 and "cv_session" not in refused.cookies
    client.cookies.delete("cv_signin", path="/console/signin")
    client.cookies.clear()
    refused = client.post("/console/signin", data={"key": ADMIN, "csrf": token}, follow_redirects=False)
    assert refused.status_code == 403  # the token alone, without its cookie (a cross-site post)


def test_console_sign_in_forms_open_in_several_tabs_each_still_sign_in(client: TestClient) -> None:
    """Sessions end after 8 hours: each open tab then shows the sign-in form. Opening the second must not
    make the first one's form "expired" (both share the browser's one sign-in cookie)."""
    first = csrf_of(client.get("/console/signin?next=/console/dashboard").text)
    csrf_of(client.get("/console/signin?next=/console/search").text)  # the second tab
    signed = client.post("/console/signin", data={"csrf": first, "key": ADMIN, "next": "/console/dashboard"})
    assert signed.status_code == 200 and signed.url.path == "/console/dashboard"
    client.cookies.clear()
    fresh = csrf_of(client.get("/console/signin").text)
    assert fresh != first  # a browser without the cookie gets a token of its own


def test_console_forms_with_too_many_fields_are_refused_not_a_500(client: TestClient) -> None:
    crowded = {f"f{i}": "1" for i in range(50)}
    form = client.get("/console/signin")
    signin = client.post("/console/signin", data={"csrf": csrf_of(form.text), "key": ADMIN, **crowded})
    assert signin.status_code == 403 and "cv_session" not in signin.cookies
    sign_in(client, ADMIN)
    page = client.get("/console/calls")
    signout = client.post("/console/signout", data={"csrf": csrf_of(page.text), **crowded}, follow_redirects=False)
    assert signout.status_code == 403
    assert client.get("/console/calls", follow_redirects=False).status_code == 200  # still signed in


def test_console_wrong_key_is_401_and_sets_no_session(client: TestClient) -> None:
    response = sign_in(client, "cvk_not-a-key")
    assert response.status_code == 401 and "not valid" in response.text
    assert "cv_session" not in response.cookies


def test_console_sign_out_needs_csrf_and_ends_the_session(client: TestClient) -> None:
    sign_in(client, ADMIN)
    page = client.get("/console/calls")
    refused = client.post("/console/signout", data={"csrf": "nope"}, follow_redirects=False)
    assert refused.status_code == 403
    assert client.get("/console/calls", follow_redirects=False).status_code == 200  # still signed in
    done = client.post("/console/signout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert (done.status_code, done.headers["location"]) == (303, "/console/signin")
    assert 'cv_session=""' in done.headers["set-cookie"] and "Max-Age=0" in done.headers["set-cookie"]
    assert client.get("/console/calls", follow_redirects=False).status_code == 303


def test_console_a_signed_out_cookie_replayed_is_refused_also_after_a_restart(tmp_path: Path) -> None:
    with _app(tmp_path / "data") as client:
        cookie = sign_in(client, ADMIN).cookies["cv_session"]
        other = sign_in(TestClient(client.app), ADMIN).cookies["cv_session"]  # a second browser
        page = client.get("/console/calls")
        assert client.post("/console/signout", data={"csrf": csrf_of(page.text)}).status_code == 200
        replayed = TestClient(client.app, cookies={"cv_session": cookie})
        assert replayed.get("/console/calls", follow_redirects=False).status_code == 303
        kept = TestClient(client.app, cookies={"cv_session": other})
        assert kept.get("/console/calls", follow_redirects=False).status_code == 200  # only that session ended
    with _app(tmp_path / "data") as restarted:  # serve started again on the same data dir
        restarted.cookies.set("cv_session", cookie)
        assert restarted.get("/console/calls", follow_redirects=False).status_code == 303
        restarted.cookies.set("cv_session", other)
        assert restarted.get("/console/calls", follow_redirects=False).status_code == 200


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/console/calls\r\nSet-Cookie: x=1",
        "/ /evil.example",
        "",
    ],
)
def test_console_sign_in_never_redirects_off_site(client: TestClient, target: str) -> None:
    response = sign_in(client, ADMIN, target)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/calls"


def test_console_sign_in_keeps_a_local_next(client: TestClient) -> None:
    assert sign_in(client, ADMIN, "/console/calls?phone=%2B1612").headers["location"] == "/console/calls?phone=%2B1612"


def test_console_every_page_renders_transcript_fields_escaped(client: TestClient) -> None:
    sign_in(client, ADMIN)
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        assert "<script>window.__xss" not in response.text, path
        assert 'onerror="window' not in response.text, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["cross-origin-opener-policy"] == "same-origin", path
    call = client.get(f"/console/calls/{RICH_ID}").text
    escaped = "&lt;script&gt;window.__xss=1&lt;/script&gt;"
    for field in ("Support agent", "Turn 1 says hello", "Because", "value", "lookup_order", "Order status"):
        assert f"{field} {escaped}" in call or f"{field}{escaped}" in call, field
    assert "A-17 &lt;script&gt;" in call  # tool arguments


def test_console_call_page_shows_the_call(client: TestClient) -> None:
    sign_in(client, ADMIN)
    html = client.get(f"/console/calls/{RICH_ID}").text
    assert html.count('class="turn ') == 5
    assert 'data-t="2.4"' in html and "0:02" in html
    for heading in ("Evaluation", "Data collected", "Tool calls", "Transcript"):
        assert f">{heading}</h2>" in html
    assert '<audio id="player"' in html and f"/console/calls/{RICH_ID}/audio" in html
    assert "Transcript (JSON)" in html


def test_console_read_key_sees_no_player_and_gets_403_on_audio(client: TestClient) -> None:
    sign_in(client, READ)
    html = client.get(f"/console/calls/{RICH_ID}").text
    assert "<audio" not in html and "/audio" not in html
    assert "may read this call but not play its audio" in html
    assert client.get(f"/console/calls/{RICH_ID}/audio", follow_redirects=False).status_code == 403


def test_console_listen_key_streams_audio_with_range(client: TestClient) -> None:
    sign_in(client, LISTEN)
    moved = client.get(f"/console/calls/{RICH_ID}/audio", follow_redirects=False)
    assert moved.status_code == 307
    part = client.get(moved.headers["location"], headers={"Range": "bytes=0-9"})
    assert (part.status_code, len(part.content)) == (206, 10)


WAITING_ID = "conv_01jzfrjvcce0vsea1fcbpp9p05"  # its transcript says it has audio; no audio came yet


def test_console_a_call_without_its_audio_says_why_to_a_key_that_may_listen(client: TestClient) -> None:
    """No player can mean the audio is on its way or was deleted under retention: the page says which,
    and a key that may not listen is not told about audio it could not play anyway."""
    sign_in(client, LISTEN)
    waiting = client.get(f"/console/calls/{WAITING_ID}").text
    assert "<audio" not in waiting and "The recording has not arrived yet" in waiting
    assert "reload the page later" in waiting
    client.app.state.storage.index.drop_audio(RICH_ID, int(time.time()))  # type: ignore[attr-defined]
    expired = client.get(f"/console/calls/{RICH_ID}").text
    assert "<audio" not in expired and "deleted under this archive's audio retention rule" in expired
    assert "has not arrived" not in expired
    sign_in(client, READ)
    for conversation_id in (WAITING_ID, RICH_ID):
        html = client.get(f"/console/calls/{conversation_id}").text
        assert "recording" not in html and "<audio" not in html, conversation_id


def test_console_an_empty_list_says_why_and_what_to_do(client: TestClient, tmp_path: Path) -> None:
    sign_in(client, READ)
    unmatched = client.get("/console/calls", params={"phone": "+16125550100", "status": "done"}).text
    assert "No calls match these filters" in unmatched and 'href="/console/calls">Clear them</a>' in unmatched
    with _app(tmp_path / "empty") as empty:
        sign_in(empty, READ)
        fresh = empty.get("/console/calls").text
        assert "No calls yet" in fresh and "callvault sync" in fresh and "match these filters" not in fresh


def test_console_dashboard_says_which_calls_a_period_too_long_for_the_chart_leaves_out(client: TestClient) -> None:
    _ingest(client, dated_call("conv_dated_long_ago", "2023-03-01"))
    sign_in(client, READ)
    html = client.get("/console/dashboard").text
    assert "2024-06-03 to 2025-07-07, the period's last 400 days" in html
    assert "Its calls from 2023-03-01 to the day before (1) are left out of the chart" in html


def test_console_revoked_key_ends_its_sessions(tmp_path: Path) -> None:
    with _app(tmp_path / "data") as client:
        key, record = KeyFile.in_data_dir(tmp_path / "data").create("temp", "read")
        assert sign_in(client, key).status_code == 303
        assert client.get("/console/calls", follow_redirects=False).status_code == 200
        KeyFile.in_data_dir(tmp_path / "data").revoke(record.id)
        assert client.get("/console/calls", follow_redirects=False).status_code == 303


def test_console_calls_filters_and_cursor_live_in_the_url(client: TestClient) -> None:
    index = client.app.state.storage.index  # type: ignore[attr-defined]
    now = int(time.time())
    for i in range(60):
        index.save_call(
            CallRecord(
                f"conv_page_{i:03d}", phone="+16125550111", agent_id="agent_paging", started_at=1_760_000_000 + i
            ),
            now,
        )
    sign_in(client, ADMIN)
    first = client.get("/console/calls", params={"agent_id": "agent_paging"})
    ids = re.findall(r'href="/console/calls/(conv_page_\d+)"', first.text)
    assert ids == [f"conv_page_{i:03d}" for i in range(59, 9, -1)]  # newest first, 50 per page
    next_url = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert next_url and "agent_id=agent_paging" in next_url.group(1) and "cursor=" in next_url.group(1)
    second = client.get(next_url.group(1).replace("&amp;", "&"))  # a reload of this URL gives this page again
    assert re.findall(r'href="/console/calls/(conv_page_\d+)"', second.text) == [
        f"conv_page_{i:03d}" for i in range(9, -1, -1)
    ]
    assert 'rel="next"' not in second.text
    by_phone = client.get("/console/calls", params={"phone": "(612) 555-0111", "agent_id": "agent_paging"})
    assert len(re.findall(r'href="/console/calls/conv_page_', by_phone.text)) == 50
    bad = client.get("/console/calls", params={"phone": "12"})
    assert bad.status_code == 400 and "phone" in bad.text


def test_console_a_calls_page_link_that_cannot_be_read_says_so_in_the_forms_words(client: TestClient) -> None:
    """An edited page link, or one kept across a change of the server's signing key: said without the
    API's terms (next_cursor), with the way back to the newest calls under the same filters."""
    sign_in(client, READ)
    for cursor in ("garbage", "eyJ2IjoxfQ.AAAA"):
        answer = client.get("/console/calls", params={"agent_id": "agent_x", "cursor": cursor})
        assert answer.status_code == 400
        assert "This page link is not valid" in answer.text and "next_cursor" not in answer.text
        assert '<a href="/console/calls?agent_id=agent_x">Newest</a>' in answer.text


SEARCH_HIT = re.compile(r'href="/console/calls/(conv_dated_\w+)#turn-(\d)"')


def _search(client: TestClient, url: str, **params: str) -> tuple[Any, list[tuple[str, int]], str | None]:
    answer = client.get(url, params=params or None)
    hits = [(call, int(turn)) for call, turn in SEARCH_HIT.findall(answer.text)]
    older = re.search(r'<a href="([^"]+)" rel="next">Older hits', answer.text)
    return answer, hits, older.group(1).replace("&amp;", "&") if older else None


def test_console_search_pages_through_a_period_without_losing_or_repeating_a_hit(client: TestClient) -> None:
    """24 calls of five matching turns on one day (120 hits, ties on the day and within each call), two
    the day after: From/To keep to the one day, and Older hits shows the 20 past the first 100."""
    for i in range(24):
        _ingest(client, dated_call(f"conv_dated_{i:02d}", "2025-08-01", hour=i))
    for i in range(2):
        _ingest(client, dated_call(f"conv_dated_late{i}", "2025-08-02"))
    sign_in(client, READ)

    first, page1, older = _search(client, "/console/search", q="says hello", since="2025-08-01", until="2025-08-01")
    assert first.status_code == 200 and len(page1) == 100
    assert "Showing 100 hits, newest day first" in first.text and older is not None
    assert 'id="s-since" name="since" type="date" value="2025-08-01"' in first.text  # the form keeps the period
    assert "since=2025-08-01" in older and "until=2025-08-01" in older and "q=says+hello" in older
    second, page2, none = _search(client, older)
    assert second.status_code == 200 and none is None
    assert "Showing 20 hits older than the previous page" in second.text
    assert 'href="/console/search?q=says+hello&amp;since=2025-08-01&amp;until=2025-08-01">Newest hits' in second.text
    walked = page1 + page2
    assert walked == sorted({(f"conv_dated_{i:02d}", t) for i in range(24) for t in range(5)})
    assert _search(client, older)[1] == page2  # a reload of the link gives the same page

    _, everything, _ = _search(client, "/console/search", q="says hello", since="2025-08-01")
    assert everything[:10] == [(f"conv_dated_late{i}", t) for i in range(2) for t in range(5)]  # newest day first


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"since": "2025-13-45"}, "From is not a day"),
        ({"until": "bad"}, "To is not a day"),
        ({"since": "2025-08-02", "until": "2025-08-01"}, "To is before From"),
        ({"cursor": "2025-08-01.conv_x"}, "This page link is not valid"),
    ],
)
def test_console_search_refuses_a_period_or_page_it_cannot_read(
    client: TestClient, query: dict[str, str], says: str
) -> None:
    sign_in(client, READ)
    answer = client.get("/console/search", params={"q": "hello", **query})
    assert answer.status_code == 400 and 'role="alert"' in answer.text and says in answer.text
    assert "<mark>" not in answer.text  # no hits from a period or a page nobody asked for


def test_search_route_pages_with_next_cursor(client: TestClient) -> None:
    for i in range(3):
        _ingest(client, dated_call(f"conv_dated_{i:02d}", "2025-08-01"))
    bearer = {"Authorization": f"Bearer {READ}"}
    params = {"q": "says hello", "since": "2025-08-01", "limit": "4"}
    walked: list[tuple[str, int]] = []
    cursor: str | None = None
    while True:
        answer = client.get("/search", params={**params, **({"cursor": cursor} if cursor else {})}, headers=bearer)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        walked += [(item["conversation_id"], item["turn_index"]) for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(body["items"]) == 4
    assert walked == [(f"conv_dated_{i:02d}", t) for i in range(3) for t in range(5)]
    whole = client.get("/search", params={**params, "limit": "15"}, headers=bearer).json()
    assert len(whole["items"]) == 15 and whole["next_cursor"] is None  # exactly a page: no empty page after it
    bad = client.get("/search", params={**params, "cursor": "page-2"}, headers=bearer)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"


def test_console_dashboard_and_search_use_the_report_code(client: TestClient) -> None:
    sign_in(client, ADMIN)
    dashboard = client.get("/console/dashboard").text
    assert "Calls per day" in dashboard and "<svg" in dashboard
    assert "2025-07-06 to 2025-07-08" in dashboard or "2025-07-06 to" in dashboard
    assert "session_closure" in dashboard  # an evaluation criterion's pass rate
    found = client.get("/console/search", params={"q": "turn 3"}).text
    assert f"/console/calls/{RICH_ID}#turn-3" in found and "<mark>Turn 3</mark>" in found

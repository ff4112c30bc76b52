"""The review console in headless Chromium against the real `callvault serve`: sign in, filter, open a
call, play its audio and watch the highlighted turn follow ``currentTime``, seek by clicking a turn,
read-only keys without a player, sign out; axe-core on every page, no layout shift, phone width.

Contexts bypass the Content-Security-Policy so axe-core can be injected; that also means the XSS
checks prove the escaping alone, without the CSP's second line of defence. Screenshots go to a temp
folder; with CALLVAULT_UPDATE_SCREENSHOTS=1 to docs/console/ (the console's documentation: look at
them after a change)."""

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlparse

import httpx
import pytest

from tests.e2e.browser import axe_violations, browser, layout_shift  # noqa: F401  (browser is a fixture)
from tests.support import ALL_FIXTURES, ServedArchive, fixture_bytes, serve_archive, signed_headers
from tests.support_console import RICH_ID, RICH_PHONE, TURN_TIMES, XSS, dated_call, rich_audio, rich_call

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(180)]

REPO_ROOT = Path(__file__).resolve().parents[2]
XSS_ID = "conv_console_hostile_01"
PHONE_WIDTH = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedArchive]:
    with serve_archive(tmp_path_factory.mktemp("console") / "data") as archive:
        bodies = [fixture_bytes(name) for name in ALL_FIXTURES]
        bodies += [rich_call(), rich_audio(), rich_call(XSS_ID, hostile=XSS, phone="+16125550198")]
        for body in bodies:
            response = httpx.post(archive.url + "/webhooks/elevenlabs", content=body, headers=signed_headers(body))
            assert response.status_code == 200, response.text
        yield archive


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("CALLVAULT_UPDATE_SCREENSHOTS"):
        folder = REPO_ROOT / "docs" / "console"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


def admin_key(served: ServedArchive) -> str:
    return (served.data_dir / "api-key").read_text().strip()


def create_key(served: ServedArchive, role: str) -> str:
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "keys",
            "create",
            "--data-dir",
            str(served.data_dir),
            "--name",
            role,
            "--role",
            role,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip()


def sign_in(page: Any, served: ServedArchive, key: str) -> None:
    page.goto(served.url + "/")
    assert urlparse(page.url).path == "/console/signin"
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/calls")


def check_page(page: Any, shots: Path, name: str) -> None:
    """Every page: no serious/critical axe violation, nothing moved while loading, a screenshot."""
    assert axe_violations(page) == [], name
    assert layout_shift(page) == 0, name
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


CLIPPED_TABLES = """() => Array.from(document.querySelectorAll('.scroll')).filter(
  region => region.scrollWidth > region.clientWidth).map(region => region.getAttribute('aria-label'))"""


def clipped_tables(page: Any) -> list[str]:
    """The labels of table regions whose table is wider than the region (cut off or scrolled)."""
    return list(page.evaluate(CLIPPED_TABLES))


def test_console_browser_review_a_call_end_to_end(browser: Any, served: ServedArchive, shots: Path) -> None:  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    dialogs: list[str] = []

    def note_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", note_dialog)

    page.goto(served.url + "/")
    check_page(page, shots, "signin")
    sign_in(page, served, admin_key(served))
    assert page.locator("table.calls tbody tr").count() == 6  # the four fixture calls and two of ours
    check_page(page, shots, "calls")

    # Filter by the phone as people type it: the filter lands in the URL, so a reload keeps it.
    page.get_by_label("Phone").fill("(612) 555-0199")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/console/calls?*")
    assert parse_qs(urlparse(page.url).query)["phone"] == ["(612) 555-0199"]
    page.reload()
    rows = page.locator("table.calls tbody tr")
    assert rows.count() == 1 and RICH_PHONE in rows.first.inner_text()

    rows.first.get_by_role("link").first.click()
    page.wait_for_url(f"**/console/calls/{RICH_ID}")
    check_page(page, shots, "call")  # preload="none": the player's controls do not reflow as metadata loads

    # Play: record (currentTime, highlighted turn) at every timeupdate, after the console's own handler.
    page.evaluate(
        """() => { window.__seen = []; const a = document.getElementById('player');
        a.addEventListener('timeupdate', () => window.__seen.push(
          [a.currentTime, (document.querySelector('#transcript .turn.current') || {}).id || null])); }"""
    )
    page.evaluate("() => document.getElementById('player').play()")
    page.wait_for_function("document.querySelector('#transcript .turn.current')?.id === 'turn-2'", timeout=15_000)
    page.evaluate("() => document.getElementById('player').pause()")
    seen = page.evaluate("() => window.__seen")
    assert len(seen) >= 3
    for current_time, turn_id in seen:
        expected = max(i for i, t in enumerate(TURN_TIMES) if t <= current_time + 0.05)
        assert turn_id == f"turn-{expected}", (current_time, turn_id)
    assert {turn_id for _, turn_id in seen} >= {"turn-0", "turn-1"}
    assert page.locator("#transcript .turn.current").count() == 1
    assert page.locator("#turn-2").get_attribute("aria-current") == "true"

    # Click a turn: the audio seeks to it and that turn is highlighted.
    page.locator("#turn-3 button.seek").click()
    page.evaluate("() => document.getElementById('player').pause()")
    position = page.evaluate("() => document.getElementById('player').currentTime")
    assert TURN_TIMES[3] <= position < TURN_TIMES[4]
    assert page.locator("#transcript .turn.current").get_attribute("id") == "turn-3"
    page.screenshot(path=str(shots / "call-playing.png"))
    # ...and by keyboard: focus a turn's time and press Enter.
    page.locator("#turn-4 button.seek").focus()
    page.keyboard.press("Enter")
    page.evaluate("() => document.getElementById('player').pause()")
    assert page.evaluate("() => document.getElementById('player').currentTime") >= TURN_TIMES[4]
    assert page.locator("#transcript .turn.current").get_attribute("id") == "turn-4"

    # ...and along the position slider: arrow keys jump 5 s, and the slider reads as a time.
    page.evaluate("() => { const a = document.getElementById('player'); a.pause(); a.currentTime = 0; }")
    page.locator("#position").focus()
    page.keyboard.press("ArrowRight")
    assert page.evaluate("() => document.getElementById('player').currentTime") > 3  # the ~4 s call's end
    assert re.fullmatch(r"\d+:\d\d of \d+:\d\d", page.locator("#position").get_attribute("aria-valuetext") or "")
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("() => document.getElementById('player').currentTime") == 0
    # A signed link that stopped working (it expired): the player asks the console for a fresh one.
    route = page.locator("#player").get_attribute("src")
    page.evaluate(
        """() => { const a = document.getElementById('player');
        a.src = '/files/nowhere.mp3?signature=expired'; a.play().catch(() => {}); }"""
    )
    page.wait_for_function(f"document.getElementById('player').getAttribute('src') === {route!r}", timeout=15_000)
    page.evaluate(
        """() => { const a = document.getElementById('player'); window.__recovered = false;
        a.addEventListener('timeupdate', () => { window.__recovered = true; }); a.play().catch(() => {}); }"""
    )
    page.wait_for_function("window.__recovered === true", timeout=15_000)
    assert page.locator("#player-error").is_hidden()
    page.evaluate("() => document.getElementById('player').pause()")

    # The audio is streamed with Range (the player asks for byte ranges; the server answers 206).
    moved = page.request.get(served.url + f"/console/calls/{RICH_ID}/audio", max_redirects=0)
    assert moved.status == 307
    part = page.request.get(urljoin(served.url, moved.headers["location"]), headers={"Range": "bytes=0-99"})
    assert part.status == 206

    page.get_by_role("link", name=RICH_PHONE).first.click()
    page.wait_for_url("**/console/callers/**")
    check_page(page, shots, "caller")

    page.get_by_role("link", name="Dashboard").click()
    page.wait_for_url("**/console/dashboard")
    assert page.locator(".chart svg rect.calls").count() == 2  # 2025-07-06 and 07-07: one bar per day
    assert page.locator(".legend").inner_text().split("\n") == [
        "All calls: 6",
        "Successful (the lower part of a bar): 0",
    ]
    assert clipped_tables(page) == []  # a long agent name wraps inside its column
    check_page(page, shots, "dashboard")

    page.get_by_role("link", name="Search").click()
    page.get_by_label("Words").fill("turn 3")
    page.get_by_label("From").fill("2025-07-06")
    page.get_by_label("To").fill("2025-07-07")
    page.get_by_label("Words").press("Enter")
    page.wait_for_url("**/console/search?q=*")
    assert page.locator("ol.matches mark").first.inner_text().lower() == "turn 3"
    assert parse_qs(urlparse(page.url).query)["until"] == ["2025-07-07"]
    assert page.locator(".muted [role=status]").inner_text() == "Showing 2 hits, newest day first"  # ours and XSS_ID
    check_page(page, shots, "search")
    # While the next page is on its way (Athena takes seconds), the form's status region says so and counts;
    # the test holds the submission back (a listener after the console's cancels it) to read the status.
    page.evaluate(
        "() => { const f = document.querySelector('form[data-progress]');"
        " f.addEventListener('submit', e => e.preventDefault()); f.requestSubmit(); }"
    )
    status = page.locator("form[data-progress] .progress")
    assert status.inner_text() == "Searching… 0 s"
    page.wait_for_function("document.querySelector('form[data-progress] .progress').textContent.endsWith(' 1 s')")
    assert page.get_by_role("button", name="Search").get_attribute("aria-disabled") == "true"

    # Hostile text in every field of a transcript is shown as text, never run.
    page.goto(served.url + f"/console/calls/{XSS_ID}")
    assert page.evaluate("() => window.__xss") is None
    assert "<script>window.__xss=1</script>" in page.locator("#transcript").inner_text()
    assert dialogs == []

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/signin")
    page.goto(served.url + f"/console/calls/{RICH_ID}")
    assert urlparse(page.url).path == "/console/signin"
    context.close()


@pytest.fixture(scope="module")
def served_many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedArchive]:
    """22 calls of five turns saying hello on 2025-08-01 (110 hits: more than a page) and one two days later."""
    with serve_archive(tmp_path_factory.mktemp("console-search") / "data") as archive:
        bodies = [dated_call(f"conv_dated_{i:02d}", "2025-08-01", hour=i) for i in range(22)]
        for body in [*bodies, dated_call("conv_dated_later", "2025-08-03")]:
            response = httpx.post(archive.url + "/webhooks/elevenlabs", content=body, headers=signed_headers(body))
            assert response.status_code == 200, response.text
        yield archive


def test_console_browser_searches_a_period_and_follows_older_hits(browser: Any, served_many: ServedArchive) -> None:  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    sign_in(page, served_many, admin_key(served_many))
    page.get_by_role("link", name="Search").click()
    page.get_by_label("Words").fill("says hello")
    page.get_by_label("From").fill("2025-08-01")
    page.get_by_label("To").fill("2025-08-02")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/console/search?q=*")
    assert parse_qs(urlparse(page.url).query) == {"q": ["says hello"], "since": ["2025-08-01"], "until": ["2025-08-02"]}
    hits = page.locator("ol.matches > li > a")
    status = page.locator(".muted [role=status]")
    assert status.inner_text() == "Showing 100 hits, newest day first"
    first = [hits.nth(i).get_attribute("href") for i in range(hits.count())]
    assert len(first) == 100
    assert axe_violations(page) == [] and layout_shift(page) == 0

    page.get_by_role("link", name="Older hits →").first.click()
    page.wait_for_url("**cursor=*")
    assert status.inner_text() == "Showing 10 hits older than the previous page, newest day first"
    assert page.get_by_label("From").input_value() == "2025-08-01"  # the period stays in the form
    assert page.get_by_role("link", name="Older hits →").count() == 0
    older = [hits.nth(i).get_attribute("href") for i in range(hits.count())]
    walked = [href for href in first + older if href]
    assert len(walked) == len(set(walked)) == 110  # every turn of the 22 calls once; not the later call
    assert {href.split("#")[0] for href in walked} == {f"/console/calls/conv_dated_{i:02d}" for i in range(22)}
    assert axe_violations(page) == [] and layout_shift(page) == 0

    page.get_by_role("link", name="Newest hits").click()
    page.wait_for_url(lambda url: "cursor=" not in url)
    assert [hits.nth(i).get_attribute("href") for i in range(hits.count())] == first
    context.close()


def test_console_browser_read_key_sees_no_player_and_gets_403(browser: Any, served: ServedArchive) -> None:  # noqa: F811
    key = create_key(served, "read")  # created while serve runs: it counts at once
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    sign_in(page, served, key)
    page.goto(served.url + f"/console/calls/{RICH_ID}")
    assert page.locator("#transcript .turn").count() == len(TURN_TIMES)
    assert page.locator("audio").count() == 0
    assert page.get_by_text("Audio (MP3)").count() == 0
    assert page.request.get(served.url + f"/console/calls/{RICH_ID}/audio", max_redirects=0).status == 403
    api = httpx.get(served.url + f"/calls/{RICH_ID}/audio", headers={"Authorization": f"Bearer {key}"})
    assert api.status_code == 403
    context.close()


def test_console_browser_the_slider_moves_the_clock_and_highlight_before_the_audio_loads(
    browser: Any,  # noqa: F811
    served: ServedArchive,
) -> None:
    """The audio loads on the first play (preload="none"), so the player sends no time events before it:
    a key press on the position slider still shows the new time and highlights the turn there."""
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    sign_in(page, served, admin_key(served))
    page.goto(served.url + f"/console/calls/{RICH_ID}")
    current = """() => [document.getElementById('clock').textContent,
        (document.querySelector('#transcript .turn.current') || {}).id || null]"""
    page.locator("#position").focus()
    moves = (("End", "0:04", "turn-4"), ("ArrowLeft", "0:00", "turn-0"), ("ArrowRight", "0:04", "turn-4"))
    for key, shown, turn in moves:
        page.keyboard.press(key)
        assert page.evaluate("() => document.getElementById('player').readyState") == 0  # nothing loaded yet
        assert page.evaluate(current) == [f"{shown} / 0:04", turn], key
    context.close()


def test_console_browser_the_play_button_says_what_it_does_and_is_no_toggle(
    browser: Any,  # noqa: F811
    served: ServedArchive,
) -> None:
    """Its label changes (Play, Pause), so it carries no pressed state too: a screen reader would hear
    "Pause, toggle button, pressed", which reads as paused while the call plays."""
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    sign_in(page, served, admin_key(served))
    page.goto(served.url + f"/console/calls/{RICH_ID}")
    button = page.locator("#play")
    assert (button.inner_text(), button.get_attribute("aria-pressed")) == ("Play", None)
    button.click()
    page.wait_for_function("document.getElementById('play').textContent === 'Pause'")  # on the play event
    assert button.get_attribute("aria-pressed") is None
    button.click()
    page.wait_for_function("document.getElementById('play').textContent === 'Play'")
    assert button.get_attribute("aria-pressed") is None
    context.close()


def test_console_browser_a_link_from_elsewhere_opens_the_call_for_a_signed_in_reviewer(
    browser: Any,  # noqa: F811
    served: ServedArchive,
) -> None:
    """A colleague's link in a chat or a ticket (another site) opens the call, not the sign-in form again;
    a form on another site still cannot sign the reviewer out, nor keep a handle on the console's window."""
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    sign_in(page, served, admin_key(served))
    elsewhere = served.url.replace("127.0.0.1", "localhost")  # another site, for the browser
    call = served.url + f"/console/calls/{RICH_ID}"
    page.goto(elsewhere + "/console/signin")
    page.evaluate(
        "call => document.body.prepend(Object.assign(document.createElement('a'),"
        " {id: 'link', href: call, textContent: 'the call'}))",
        call,
    )
    page.click("#link")
    page.wait_for_load_state()
    assert urlparse(page.url).path == f"/console/calls/{RICH_ID}"
    assert page.locator("#transcript .turn").count() == len(TURN_TIMES)
    # Cross-Origin-Opener-Policy: a page elsewhere that opens the console keeps no handle on its window.
    page.goto(elsewhere + "/console/signin")
    with context.expect_page() as popup:
        page.evaluate("call => { window.__opened = window.open(call); }", call)
    popup.value.wait_for_load_state()
    assert page.evaluate("() => window.__opened.closed") is True
    popup.value.close()
    page.goto(elsewhere + "/console/signin")
    page.evaluate(
        "signout => { const f = Object.assign(document.createElement('form'), {method: 'post', action: signout});"
        " document.body.append(f); f.submit(); }",
        served.url + "/console/signout",
    )
    # The console's own address (127.0.0.1), not the page elsewhere (localhost) whose URL matches too.
    page.wait_for_url(lambda url: url.startswith(served.url + "/console/signin"))
    page.goto(served.url + "/console/calls")
    assert urlparse(page.url).path == "/console/calls"  # still signed in
    context.close()


def test_console_browser_phone_width(browser: Any, served: ServedArchive, shots: Path) -> None:  # noqa: F811
    context = browser.new_context(viewport=PHONE_WIDTH, is_mobile=True, has_touch=True, bypass_csp=True)
    page = context.new_page()
    sign_in(page, served, admin_key(served))
    for path, name in (
        ("/console/calls", "phone-calls"),
        (f"/console/calls/{RICH_ID}", "phone-call"),
        ("/console/dashboard", "phone-dashboard"),
    ):
        page.goto(served.url + path)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (path, overflow)  # wide tables scroll inside their own region
        check_page(page, shots, name)
    assert clipped_tables(page) == []  # the dashboard's rate tables fit a phone without scrolling
    context.close()


UNBROKEN = "https://example.com/" + "a" * 300  # a link or a token: no place to break a line


def unbroken_call() -> bytes:
    """``rich_call`` whose summary, agent name, collected values and names, a turn's role, a tool's name
    and an evaluation's criterion and result are one long word each (stored content is the sender's)."""
    envelope = json.loads(rich_call("conv_console_unbroken_01", phone="+16125550155"))
    data = envelope["data"]
    data["agent_name"] = "Agent" + "X" * 120
    data["transcript"][1]["role"] = "R" * 150
    data["transcript"][2]["tool_calls"][0]["tool_name"] = "tool_" + "T" * 200
    analysis = data["analysis"]
    analysis["transcript_summary"] = UNBROKEN
    for result in analysis["data_collection_results"].values():
        result["value"] = "V" * 300
    long_name = "N" * 200
    analysis["data_collection_results"][long_name] = {"data_collection_id": long_name, "value": "v"}
    analysis["evaluation_criteria_results"][long_name] = {"criteria_id": long_name, "result": "S" * 200}
    return json.dumps(envelope).encode()


OVERFLOWING = """() => Array.from(document.querySelectorAll('main *')).filter(
  el => !el.closest('.scroll') && el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).display !== 'inline'
).map(el => el.tagName + '.' + el.className)"""


def test_console_browser_long_words_wrap_inside_their_column(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    """A summary, agent name, memory, role, tool or criterion name that is one long word (a link, a token)
    wraps inside its column: it neither runs over the next column nor makes the page scroll sideways
    (memories on, as by default)."""
    with serve_archive(tmp_path / "data", env={"CALLVAULT_MEMORY_BACKEND": "oss"}) as served:
        body = unbroken_call()
        assert httpx.post(served.url + "/webhooks/elevenlabs", content=body, headers=signed_headers(body)).is_success
        auth = {"Authorization": f"Bearer {admin_key(served)}"}
        for _ in range(300):
            call = httpx.get(served.url + "/calls/conv_console_unbroken_01", headers=auth).json()
            if call["memory_status"] == "done":
                break
            time.sleep(0.2)
        assert call["memory_status"] == "done", served.logs()
        for viewport in ({"width": 1280, "height": 900}, PHONE_WIDTH):
            context = browser.new_context(viewport=viewport)
            page = context.new_page()
            sign_in(page, served, admin_key(served))
            for path in ("/console/calls/conv_console_unbroken_01", "/console/callers/+16125550155"):
                page.goto(served.url + path)
                page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
                assert page.locator(".memories li").count() > 0, path
                overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
                assert (overflow, page.evaluate(OVERFLOWING)) == (0, []), (viewport, path)
            context.close()


LONG_ID = "conv_console_long_0001"
LONG_TURNS = 520


def long_call(turns: int = LONG_TURNS, words: int = 20) -> bytes:
    """``rich_call`` with 520 turns (or ``turns``) over its ~4 s of audio: a long call, squeezed into the
    shipped MP3."""
    envelope = json.loads(rich_call(LONG_ID, phone="+16125550166"))
    template = envelope["data"]["transcript"][0]
    envelope["data"]["transcript"] = [
        {
            **template,
            "role": "agent" if i % 2 == 0 else "user",
            "message": f"Turn {i} says " + "something long " * (i % words),
            "time_in_call_secs": round(i * 4.0 / turns, 3),
            "tool_calls": [],
            "tool_results": [],
        }
        for i in range(turns)
    ]
    return json.dumps(envelope).encode()


UNDER_THE_PLAYER = """id => { const turn = document.getElementById(id).getBoundingClientRect();
  const player = document.querySelector('.player').getBoundingClientRect();
  return turn.top < player.bottom && turn.bottom > player.top ? [turn.top, turn.bottom, player.bottom] : null; }"""


def test_console_browser_a_link_to_a_turn_keeps_its_turn_through_sign_in(
    browser: Any,  # noqa: F811
    served: ServedArchive,
) -> None:
    """A colleague's link to one turn (``#turn-N``, as search hits link) opened while signed out: after
    signing in, the call opens at that turn, not at its top. The fragment never reaches the server; the
    sign-in form posts to the page's own address, so the browser keeps it through both redirects."""
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.goto(served.url + f"/console/calls/{RICH_ID}#turn-3")
    assert urlparse(page.url).path == "/console/signin"
    page.get_by_label("API key").fill("not a key")  # a wrong key first: the form comes back, the turn kept
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert page.get_by_role("alert").inner_text() == "That API key is not valid."
    page.get_by_label("API key").fill(admin_key(served))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/console/calls/{RICH_ID}#turn-3")
    assert page.evaluate("() => location.hash") == "#turn-3"
    assert page.locator("#turn-3").is_visible()
    context.close()


def test_console_browser_a_turn_linked_or_followed_is_not_hidden_under_the_player(
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The player stays at the top of a long transcript while it scrolls. A link to a turn (a search hit,
    the tool-call list) and the highlight following the audio back up the transcript bring the turn into
    view below the player, not under it (a 520-turn call, at desk and phone width)."""
    with serve_archive(tmp_path / "data") as served:
        for body in (long_call(), rich_audio(LONG_ID)):
            response = httpx.post(served.url + "/webhooks/elevenlabs", content=body, headers=signed_headers(body))
            assert response.status_code == 200, response.text
        for viewport in ({"width": 1280, "height": 900}, PHONE_WIDTH):
            context = browser.new_context(viewport=viewport, bypass_csp=True)
            page = context.new_page()
            sign_in(page, served, admin_key(served))
            page.goto(served.url + f"/console/calls/{LONG_ID}#turn-300")  # as a search hit links it
            assert page.locator("#transcript .turn").count() == LONG_TURNS
            assert page.evaluate("() => window.scrollY") > 0
            assert page.evaluate(UNDER_THE_PLAYER, "turn-300") is None, viewport
            # The highlight follows the audio with scrollIntoView({block: 'nearest'}): seeking back up.
            page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
            page.evaluate("() => document.getElementById('turn-65').scrollIntoView({block: 'nearest'})")
            assert page.evaluate(UNDER_THE_PLAYER, "turn-65") is None, viewport
            context.close()


IN_VIEW = """id => { const r = document.getElementById(id).getBoundingClientRect();
  return r.bottom > document.querySelector('.player').getBoundingClientRect().bottom && r.top < innerHeight; }"""


def test_console_browser_reading_elsewhere_while_the_audio_plays_is_not_pulled_back(
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """In one column (a phone, a narrow window) the evaluation is below the transcript. A reviewer who
    scrolls down to it while the call plays stays there; the highlight follows the audio again, with
    the page, once they pick a turn's time."""
    with serve_archive(tmp_path / "data") as served:
        # 60 turns 67 ms apart (a turn is highlighted from 50 ms before its time), each a few lines long
        for body in (long_call(60, words=60), rich_audio(LONG_ID)):
            response = httpx.post(served.url + "/webhooks/elevenlabs", content=body, headers=signed_headers(body))
            assert response.status_code == 200, response.text
        context = browser.new_context(viewport=PHONE_WIDTH, bypass_csp=True)
        page = context.new_page()
        sign_in(page, served, admin_key(served))
        page.goto(served.url + f"/console/calls/{LONG_ID}")
        player = "document.getElementById('player')"
        page.evaluate(f"() => {player}.play()")
        page.wait_for_function(f"{player}.currentTime > 0.3")
        page.locator("#h-eval").scroll_into_view_if_needed()
        reading = page.evaluate("() => window.scrollY")
        page.wait_for_function(f"{player}.currentTime > 1.5")  # ~18 turns later
        assert page.evaluate("() => window.scrollY") == reading
        page.evaluate(f"() => {player}.pause()")

        page.locator("#turn-10 button.seek").click()  # following again
        followed = f"""() => {{ const turn = document.querySelector('#transcript .turn.current');
          return !{player}.paused && turn.id.slice(5) > 20 && ({IN_VIEW})(turn.id); }}"""
        page.wait_for_function(followed, timeout=10_000)  # while it plays, ten turns on, in view
        page.evaluate(f"() => {player}.pause()")
        context.close()


def test_console_browser_the_evaluation_of_a_long_call_is_a_few_keys_away(
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Every timed turn is a Tab stop, so on a 520-turn call the evaluation came after 520 of them (and,
    on a phone, after the whole transcript). Links at the top of the call reach each part."""
    with serve_archive(tmp_path / "data") as served:
        for body in (long_call(), rich_audio(LONG_ID)):
            response = httpx.post(served.url + "/webhooks/elevenlabs", content=body, headers=signed_headers(body))
            assert response.status_code == 200, response.text
        context = browser.new_context(viewport=PHONE_WIDTH, bypass_csp=True)
        page = context.new_page()
        sign_in(page, served, admin_key(served))
        page.goto(served.url + f"/console/calls/{LONG_ID}")
        for _ in range(15):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement.textContent") == "Evaluation":
                break
        else:
            pytest.fail("no Evaluation link within 15 Tab presses")
        page.keyboard.press("Enter")
        assert urlparse(page.url).fragment == "h-eval"
        heading = page.locator("#h-eval").bounding_box()
        assert heading is not None and -1 < heading["y"] < PHONE_WIDTH["height"]  # scrolled to it
        assert axe_violations(page) == []
        context.close()

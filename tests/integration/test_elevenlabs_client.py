"""The ElevenLabs client (services/sync/elevenlabs.py) against the stand-in API over real HTTP: paging,
filters, retries and what they wait, errors and what they say, streamed audio, the bound on requests in
flight, and every field of the SDK's conversation model kept. Waits go to an injected sleep: no test
waits out a backoff, and none asserts a duration."""

import hashlib
import socket
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import orjson
import pytest
from elevenlabs.types import (
    ConversationSummaryResponseModel,
    GetConversationResponseModel,
    GetConversationsPageResponseModel,
)

from services.core.config import Settings
from services.sync.elevenlabs import AUDIO_CHUNK_BYTES, ElevenLabsClient, retry_after_seconds
from services.sync.ports import (
    ConversationGone,
    ConversationRefused,
    ConversationSource,
    UpstreamError,
    UpstreamRejected,
)
from tests.support_elevenlabs import (
    AGENT_ID,
    API_KEY,
    T0,
    ElevenLabsStandIn,
    SyntheticAudio,
    summary_of,
)

MakeClient = Callable[..., ElevenLabsClient]


@pytest.fixture
def api() -> Iterator[ElevenLabsStandIn]:
    with ElevenLabsStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(api: ElevenLabsStandIn, sleeps: list[float]) -> Iterator[MakeClient]:
    made: list[ElevenLabsClient] = []

    def make(**kwargs: Any) -> ElevenLabsClient:
        options: dict[str, Any] = {"timeout": 5.0, "max_attempts": 4, "sleep": sleeps.append, **kwargs}
        client = ElevenLabsClient(options.pop("base_url", api.url), options.pop("api_key", API_KEY), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def every_message(error: BaseException) -> str:
    """The error's text and that of everything it was raised from."""
    texts: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        texts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(texts)


# -- listing ---------------------------------------------------------------------------------------


def test_paging_250_conversations_by_100_takes_three_list_requests_newest_first(
    api: ElevenLabsStandIn, make_client: MakeClient
) -> None:
    api.add_many(250)
    client = make_client()
    source: ConversationSource = client  # the adapter satisfies the port

    seen, cursor, pages = [], None, 0
    while True:
        page = source.list_conversations(cursor=cursor, page_size=100)
        seen += page.conversations
        pages += 1
        if not page.has_more:
            assert page.next_cursor is None
            break
        cursor = page.next_cursor

    assert (pages, api.requests["list"]) == (3, 3)
    assert [row.conversation_id for row in seen] == api.ids()  # newest first, none twice, none missed
    newest = seen[0]
    expected = api.conversation(newest.conversation_id)
    assert (newest.agent_id, newest.start_time_unix_secs, newest.status) == (AGENT_ID, expected.start, "done")
    assert (newest.call_successful, newest.call_duration_secs, newest.message_count) == ("success", 7, 1)
    assert newest.is_final
    assert [record.query["page_size"] for record in api.log] == ["100"] * 3


def test_filters_reach_the_api_by_their_names_and_bounds_are_exclusive(
    api: ElevenLabsStandIn, make_client: MakeClient
) -> None:
    ids = api.add_many(10, start=T0, step=60)  # T0, T0+60, ..., T0+540
    other = api.add("conv_other_agent", start=T0 + 120, agent_id="agent_other")
    client = make_client()

    window = client.list_conversations(after=T0 + 60, before=T0 + 300)
    by_agent = client.list_conversations(agent_id="agent_other")

    assert [row.conversation_id for row in window.conversations] == [ids[4], ids[3], other, ids[2]]
    assert [row.conversation_id for row in by_agent.conversations] == [other]
    assert api.log[0].query == {
        "page_size": "100",
        "call_start_after_unix": str(T0 + 60),
        "call_start_before_unix": str(T0 + 300),
    }
    assert api.log[1].query == {"page_size": "100", "agent_id": "agent_other"}


def test_a_page_size_above_the_apis_limit_is_clamped(api: ElevenLabsStandIn, make_client: MakeClient) -> None:
    api.add_many(150)

    page = make_client().list_conversations(page_size=500)

    assert (len(page.conversations), page.has_more) == (100, True)
    assert api.log[0].query["page_size"] == "100"


def test_conversations_still_running_are_listed_with_their_status(
    api: ElevenLabsStandIn, make_client: MakeClient
) -> None:
    busy = api.add(status="in-progress")
    client = make_client()

    [row] = client.list_conversations().conversations
    assert (row.conversation_id, row.status, row.is_final) == (busy, "in-progress", False)
    assert client.get_conversation(busy)["status"] == "in-progress"
    with pytest.raises(ConversationGone), client.open_audio(busy):
        pass

    api.update(busy, status="processing")
    assert client.list_conversations().conversations[0].status == "processing"
    api.update(busy, status="done")  # changed while serving: the next answers show it
    assert client.list_conversations().conversations[0].is_final
    with client.open_audio(busy) as chunks:
        assert b"".join(chunks) == SyntheticAudio(16 * 1024, busy).read()


def test_list_rows_carry_the_analysis_text_sync_compares(api: ElevenLabsStandIn, make_client: MakeClient) -> None:
    api.add(extra={"analysis": {"transcript_summary": "Moved to Friday.", "call_summary_title": "Rebooking"}})

    [listed] = make_client().list_conversations().conversations
    assert (listed.transcript_summary, listed.call_summary_title) == ("Moved to Friday.", "Rebooking")


def row(**fields: Any) -> dict[str, Any]:
    return {"conversation_id": "conv_1", "start_time_unix_secs": T0, "status": "done", **fields}


def test_rows_are_read_tolerantly_unknown_fields_ignored_missing_optional_ones_none(make_client: MakeClient) -> None:
    body = {"conversations": [row(agent_id=None, new_field={"x": 1})], "has_more": False}
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, json=body))

    [listed] = make_client(base_url="http://elevenlabs.test", transport=transport).list_conversations().conversations

    assert (listed.conversation_id, listed.agent_id, listed.call_successful, listed.message_count) == (
        "conv_1",
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b"[]",
        orjson.dumps({"has_more": False}),
        orjson.dumps({"conversations": [], "has_more": "no"}),
        orjson.dumps({"conversations": [row(conversation_id=None)], "has_more": False}),
        orjson.dumps({"conversations": [row(start_time_unix_secs="yesterday")], "has_more": False}),
        orjson.dumps({"conversations": [row(status=None)], "has_more": False}),
        orjson.dumps({"conversations": ["conv_1"], "has_more": False}),
    ],
)
def test_a_malformed_page_is_an_unexpected_response(make_client: MakeClient, body: bytes) -> None:
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, content=body))

    with pytest.raises(UpstreamError, match="unexpected response"):
        make_client(base_url="http://elevenlabs.test", transport=transport).list_conversations()


# -- one conversation: every field kept --------------------------------------------------------------


def test_every_field_the_sdk_declares_survives_and_unknown_ones_too(
    api: ElevenLabsStandIn, make_client: MakeClient
) -> None:
    cid = api.add(extra={"future_field": {"nested": [1, 2]}, "metadata": {"future_metadata": "kept"}})
    document = api.document(cid)
    GetConversationResponseModel.model_validate(document)  # the stand-in serves what the SDK accepts
    declared = set(GetConversationResponseModel.model_fields)
    assert declared <= set(document)  # the stand-in's document has every declared field

    fetched = make_client().get_conversation(cid)

    assert declared <= set(fetched)
    assert fetched["future_field"] == {"nested": [1, 2]}
    assert fetched["metadata"]["future_metadata"] == "kept"
    assert fetched == document  # and nothing changed on the way


def test_list_rows_are_what_the_sdk_reads(api: ElevenLabsStandIn) -> None:
    plain, running = api.add(), api.add(status="processing", call_successful="unknown", message_count=4)
    edited = api.add(extra={"analysis": {"call_successful": "failure"}, "metadata": {"call_duration_secs": 99}})

    raw = httpx.get(f"{api.url}/v1/convai/conversations", headers={"xi-api-key": API_KEY}).json()

    page = GetConversationsPageResponseModel.model_validate(raw)
    required = {name for name, info in ConversationSummaryResponseModel.model_fields.items() if info.is_required()}
    for listed in raw["conversations"]:
        assert required <= set(listed)
    assert {listed.conversation_id for listed in page.conversations} == {plain, running, edited}
    for cid in (plain, running, edited):  # the cheap row equals the one derived from the document
        assert api.conversation(cid).summary() == summary_of(api.document(cid))
    assert api.conversation(edited).call_successful == "failure"


def test_a_conversation_unknown_upstream_is_gone(api: ElevenLabsStandIn, make_client: MakeClient) -> None:
    client = make_client()
    cid = api.add()
    api.remove(cid)

    with pytest.raises(ConversationGone):
        client.get_conversation(cid)
    with pytest.raises(ConversationGone), client.open_audio("conv_never_there"):
        pass
    assert (api.requests["get"], api.requests["audio"]) == (1, 1)  # a 404 is final: no retries


@pytest.mark.parametrize("conversation_id", ["..", ".", "../../v1/user", "a/b", "x\x00y", "c" * 300, ""])
def test_an_id_no_archive_could_hold_is_never_requested(
    api: ElevenLabsStandIn, make_client: MakeClient, conversation_id: str
) -> None:
    """A listed id such as ".." would otherwise reach another endpoint of the API with the key."""
    client = make_client()

    with pytest.raises(UpstreamError, match="not a conversation id"):
        client.get_conversation(conversation_id)
    with pytest.raises(UpstreamError, match="not a conversation id"), client.open_audio(conversation_id):
        pass
    assert sum(api.requests.values()) == 0


def test_a_document_for_another_conversation_is_an_unexpected_response(make_client: MakeClient) -> None:
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, json={"conversation_id": "conv_other"}))

    with pytest.raises(UpstreamError, match="unexpected response"):
        make_client(base_url="http://elevenlabs.test", transport=transport).get_conversation("conv_1")


# -- retries ---------------------------------------------------------------------------------------


def test_429_is_retried_after_the_advertised_delay(
    api: ElevenLabsStandIn, make_client: MakeClient, sleeps: list[float]
) -> None:
    cid = api.add()
    api.fail_next(2, 429, retry_after="7", kind="get")

    document = make_client().get_conversation(cid)

    assert document["conversation_id"] == cid
    assert sleeps == [7.0, 7.0]
    assert api.requests["get"] == 3


def test_retry_after_as_an_http_date_is_honoured_and_capped(
    api: ElevenLabsStandIn, make_client: MakeClient, sleeps: list[float]
) -> None:
    now = 1_900_000_000.0
    soon = format_datetime(datetime.fromtimestamp(now + 12, UTC), usegmt=True)
    much_later = format_datetime(datetime.fromtimestamp(now + 3600, UTC), usegmt=True)
    api.add_many(3)
    api.fail_next(1, 429, retry_after=soon, kind="list")
    api.fail_next(1, 429, retry_after=much_later, kind="list")
    api.fail_next(1, 503, retry_after="2", kind="list")  # a 503 that says when is honoured too

    make_client(clock=lambda: now).list_conversations()

    assert sleeps == [12.0, 60.0, 2.0]


def test_retry_after_values() -> None:
    assert retry_after_seconds("7", 0) == 7.0
    assert retry_after_seconds(" 1.5 ", 0) == 1.5
    assert retry_after_seconds("3600", 0) == 60.0
    assert retry_after_seconds("-5", 0) == 0.0
    assert retry_after_seconds("Thu, 01 Jan 1970 00:00:30 GMT", 0) == 30.0
    assert retry_after_seconds("Thu, 01 Jan 1970 00:00:30 GMT", 100) == 0.0  # already past
    assert retry_after_seconds("soon", 0) is None
    assert retry_after_seconds("nan", 0) is None
    assert retry_after_seconds(None, 0) is None


def test_5xx_then_success_backs_off_exponentially_with_jitter(
    api: ElevenLabsStandIn, make_client: MakeClient, sleeps: list[float]
) -> None:
    cid = api.add()
    api.fail_next(1, 500, kind="get")
    api.fail_next(1, 502, kind="get")
    api.fail_next(1, 503, kind="get")

    assert make_client(max_attempts=6).get_conversation(cid)["conversation_id"] == cid

    assert len(sleeps) == 3 and api.requests["get"] == 4
    for attempt, waited in enumerate(sleeps):
        assert 0 <= waited <= 2**attempt  # full jitter under a doubling cap (1 s, 2 s, 4 s, ...)


def test_5xx_forever_gives_up_after_max_attempts_saying_what_to_do(
    api: ElevenLabsStandIn, make_client: MakeClient, sleeps: list[float]
) -> None:
    cid = api.add()
    api.fail_next(100, 503, kind="get")

    with pytest.raises(UpstreamError) as raised:
        make_client(max_attempts=3).get_conversation(cid)

    assert api.requests["get"] == 3 and len(sleeps) == 2
    assert "after 3 attempts (last: HTTP 503)" in raised.value.message
    assert "Run again later" in raised.value.message
    assert raised.value.code == "upstream_unavailable"


def test_a_response_slower_than_the_timeout_is_retried_then_given_up(
    api: ElevenLabsStandIn, make_client: MakeClient, sleeps: list[float]
) -> None:
    cid = api.add()
    api.delay_next(1, 5.0, kind="get")
    client = make_client(timeout=0.2, max_attempts=2)

    assert client.get_conversation(cid)["conversation_id"] == cid  # slow once, answered on the retry
    api.delay_next(2, 5.0, kind="get")
    with pytest.raises(UpstreamError, match=r"no answer within 0\.2 s"):
        client.get_conversation(cid)

    assert api.requests["get"] == 4 and len(sleeps) == 2


def test_a_refused_connection_is_retried_then_given_up(make_client: MakeClient, sleeps: list[float]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(UpstreamError, match="connection failed"):
        make_client(base_url=f"http://127.0.0.1:{port}", max_attempts=3).list_conversations()
    assert len(sleeps) == 2


# -- refusals --------------------------------------------------------------------------------------


def test_a_wrong_key_is_rejected_at_once_pointing_at_the_variable(
    api: ElevenLabsStandIn, make_client: MakeClient, sleeps: list[float]
) -> None:
    wrong = "sk_wrong_key_0123456789abcdef"

    with pytest.raises(UpstreamRejected) as raised:
        make_client(api_key=wrong).list_conversations()

    assert "HTTP 401" in raised.value.message and "ELEVENLABS_API_KEY" in raised.value.message
    assert wrong not in every_message(raised.value)
    assert api.requests["list"] == 1 and sleeps == []


def test_a_key_without_permission_is_told_which_permission(api: ElevenLabsStandIn, make_client: MakeClient) -> None:
    api.fail_next(1, 403, kind="list")

    with pytest.raises(UpstreamRejected, match="HTTP 403") as raised:
        make_client().list_conversations()

    assert "convai_read" in raised.value.message


def test_other_4xx_are_rejected_without_retries(
    api: ElevenLabsStandIn, make_client: MakeClient, sleeps: list[float]
) -> None:
    api.fail_next(1, 422, kind="list")

    with pytest.raises(UpstreamRejected, match="HTTP 422: injected HTTP 422"):
        make_client().list_conversations()
    assert sleeps == [] and api.requests["list"] == 1


@pytest.mark.parametrize("status", [400, 410, 422])
def test_a_4xx_for_one_conversation_refuses_that_conversation_not_the_key(
    api: ElevenLabsStandIn, make_client: MakeClient, sleeps: list[float], status: int
) -> None:
    cid = api.add()
    api.fail_next(1, status, kind="get")

    with pytest.raises(ConversationRefused, match=f"HTTP {status}"):
        make_client().get_conversation(cid)
    assert sleeps == []
    api.fail_next(1, status, kind="audio")
    with pytest.raises(ConversationRefused, match=f"HTTP {status}"), make_client().open_audio(cid):
        pytest.fail("the block must not run")


@pytest.mark.parametrize("status", [408, 409, 425])
def test_a_request_timeout_or_conflict_is_tried_again(
    api: ElevenLabsStandIn, make_client: MakeClient, sleeps: list[float], status: int
) -> None:
    cid = api.add()
    api.fail_next(1, status, kind="get")

    assert make_client().get_conversation(cid)["conversation_id"] == cid
    assert len(sleeps) == 1


def test_a_body_that_does_not_decode_is_an_upstream_error_not_a_crash(make_client: MakeClient) -> None:
    """``Content-Encoding: gzip`` over bytes that are not gzip: httpx raises DecodingError while reading."""
    lying = httpx.MockTransport(
        lambda _r: httpx.Response(
            200, headers={"content-type": "audio/mpeg", "content-encoding": "gzip"}, content=b"not gzip at all"
        )
    )
    client = make_client(base_url="http://elevenlabs.test", transport=lying)

    with pytest.raises(UpstreamError):
        client.get_conversation("conv_1")
    with pytest.raises(UpstreamError), client.open_audio("conv_1") as chunks:
        for _chunk in chunks:
            pass


@pytest.mark.parametrize(
    ("body", "mp3"),
    [
        (b"<html>Service unavailable</html>", False),
        (b"ID3\x04" + b"\0" * 2000, True),
        (b"\xff\xfb" + b"\0" * 2000, True),
    ],
    ids=["html", "id3", "frame-sync"],
)
def test_octet_stream_audio_must_look_like_mp3(make_client: MakeClient, body: bytes, mp3: bool) -> None:
    """A 200 ``application/octet-stream`` says nothing of what it holds: an error page must not become
    the call's audio (a later fetch of API audio is the same version and would never replace it)."""
    transport = httpx.MockTransport(
        lambda _r: httpx.Response(200, headers={"content-type": "application/octet-stream"}, content=body)
    )
    client = make_client(base_url="http://elevenlabs.test", transport=transport)

    with client.open_audio("conv_1") as chunks:
        if mp3:
            assert b"".join(chunks) == body
        else:
            with pytest.raises(UpstreamError, match="not MP3"):
                next(iter(chunks))


def test_the_key_is_never_in_an_error_even_when_upstream_echoes_it(
    api: ElevenLabsStandIn, make_client: MakeClient
) -> None:
    cid = api.add(audio=SyntheticAudio(1_000_000, "key"))
    client = make_client(max_attempts=2, timeout=0.2)
    errors: list[BaseException] = []

    def capture(action: Callable[[], object]) -> None:
        with pytest.raises((UpstreamError, UpstreamRejected, ConversationGone)) as raised:
            action()
        errors.append(raised.value)

    def read_audio() -> None:
        with client.open_audio(cid) as chunks:
            for _chunk in chunks:
                pass

    api.fail_next(2, 503)
    capture(lambda: client.get_conversation(cid))
    api.delay_next(2, 5.0)
    capture(lambda: client.get_conversation(cid))
    capture(lambda: client.get_conversation("conv_missing"))
    api.cut_audio_next(after_bytes=300_000)
    capture(read_audio)
    api.fail_next(1, 200, kind="audio")
    capture(read_audio)
    capture(make_client(api_key="sk_not_the_right_one").list_conversations)
    echo = httpx.MockTransport(lambda _r: httpx.Response(403, json={"detail": {"message": f"key {API_KEY} lacks"}}))
    capture(make_client(base_url="http://elevenlabs.test", transport=echo).list_conversations)

    assert len(errors) == 7
    for error in errors:
        assert API_KEY not in every_message(error)
    assert "[redacted]" in str(errors[-1])


def test_upstreams_error_detail_reaches_messages_without_control_characters(make_client: MakeClient) -> None:
    hostile = "no\x1b]8;;http://evil.example\x07 \x1b[2J\r\nfake: line"
    echo = httpx.MockTransport(lambda _r: httpx.Response(400, json={"detail": {"message": hostile}}))

    with pytest.raises(UpstreamRejected) as raised:
        make_client(base_url="http://elevenlabs.test", transport=echo).list_conversations()

    assert "fake: line" in raised.value.message
    assert not any(not c.isprintable() for c in raised.value.message)


def test_from_settings_needs_a_key_and_says_where_to_put_it(
    api: ElevenLabsStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ELEVENLABS_API_KEY", "CALLVAULT_ELEVENLABS_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CALLVAULT_ELEVENLABS_BASE_URL", api.url)

    with pytest.raises(UpstreamRejected, match="set ELEVENLABS_API_KEY"):
        ElevenLabsClient.from_settings(Settings())

    monkeypatch.setenv("ELEVENLABS_API_KEY", API_KEY)
    api.add()
    with ElevenLabsClient.from_settings(Settings(), concurrency=2) as client:
        assert len(client.list_conversations().conversations) == 1


# -- audio -----------------------------------------------------------------------------------------


def test_50_mb_of_audio_arrive_chunked_byte_identical_in_bounded_chunks(
    api: ElevenLabsStandIn, make_client: MakeClient
) -> None:
    audio = SyntheticAudio(50 * 1024 * 1024, "a long call")
    cid = api.add(audio=audio)
    with httpx.stream("GET", f"{api.url}/v1/convai/conversations/{cid}/audio", headers={"xi-api-key": API_KEY}) as raw:
        assert raw.headers["transfer-encoding"] == "chunked" and raw.headers["content-type"] == "audio/mpeg"

    digest, size, largest, count = hashlib.sha256(), 0, 0, 0
    tracemalloc.start()
    try:
        with make_client().open_audio(cid) as chunks:
            for chunk in chunks:
                digest.update(chunk)
                size, largest, count = size + len(chunk), max(largest, len(chunk)), count + 1
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert size == audio.size and digest.hexdigest() == audio.sha256()
    assert largest <= AUDIO_CHUNK_BYTES and count >= audio.size // AUDIO_CHUNK_BYTES
    assert peak < 8 * 1024 * 1024  # client and stand-in together; ~0.6 MB measured, never a copy of the call


def test_a_stream_cut_midway_raises_from_the_iterator_and_frees_its_slot(
    api: ElevenLabsStandIn, make_client: MakeClient
) -> None:
    audio = SyntheticAudio(5 * 1024 * 1024, "cut")
    cid = api.add(audio=audio)
    api.cut_audio_next(after_bytes=1_000_000)
    client = make_client(concurrency=1)
    received = 0

    with client.open_audio(cid) as chunks, pytest.raises(UpstreamError, match="cut off after"):
        for chunk in chunks:  # the answer began well: the error comes from the iterator
            received += len(chunk)

    assert 0 < received <= 1_000_000
    with client.open_audio(cid) as chunks:  # the one slot is free again; a whole stream this time
        assert sum(len(chunk) for chunk in chunks) == audio.size
    assert api.requests["audio"] == 2  # a cut stream is the caller's to retry, not the client's


def test_audio_beyond_the_size_bound_is_refused_midway_and_frees_its_slot(
    api: ElevenLabsStandIn, make_client: MakeClient
) -> None:
    """A hostile or broken upstream must not stream without end into the archive (chunked: no length)."""
    cid = api.add(audio=SyntheticAudio(1024 * 1024, "endless"))
    client = make_client(concurrency=1, max_audio_bytes=256 * 1024)
    received = 0

    with client.open_audio(cid) as chunks, pytest.raises(UpstreamError, match="more than 262144 bytes"):
        for chunk in chunks:
            received += len(chunk)

    assert received <= 256 * 1024
    small = api.add(audio=SyntheticAudio(100 * 1024, "small"))
    with client.open_audio(small) as chunks:  # the one slot is free again
        assert sum(len(chunk) for chunk in chunks) == 100 * 1024


def test_audio_that_trickles_in_is_given_up_so_no_worker_waits_for_ever(make_client: MakeClient) -> None:
    """Each read arrives within the timeout, yet the whole would take days: a slow upstream (or one that
    means harm) must not hold serve's one audio worker, or a sync slot, without end."""
    now = [1_800_000_000.0]

    def clock() -> float:
        return now[0]

    def trickle() -> Iterator[bytes]:
        for _ in range(10_000):
            now[0] += 10.0  # one byte every 10 s: within a 30 s read timeout each time
            yield b"\xff"

    slow = httpx.MockTransport(
        lambda _r: httpx.Response(200, headers={"content-type": "audio/mpeg"}, content=trickle())
    )
    client = make_client(base_url="http://elevenlabs.test", transport=slow, clock=clock, timeout=30.0)
    received = 0

    with client.open_audio("conv_1") as chunks, pytest.raises(UpstreamError, match="too slowly"):
        for chunk in chunks:
            received += len(chunk)

    assert received < 10


def _endless(chunk: bytes, pulled: list[int], limit: int = 4096) -> Iterator[bytes]:
    while True:
        pulled.append(len(chunk))
        assert len(pulled) < limit, "the client kept reading an endless body"
        yield chunk


@pytest.mark.parametrize("status", [200, 400])
def test_an_endless_json_or_error_body_is_not_read_into_memory(make_client: MakeClient, status: int) -> None:
    """A hostile upstream's gigabytes of JSON (or of error detail) must not grow serve until it dies."""
    pulled: list[int] = []
    endless = httpx.MockTransport(
        lambda _r: httpx.Response(
            status, headers={"content-type": "application/json"}, content=_endless(b"[" * 65536, pulled)
        )
    )
    client = make_client(base_url="http://elevenlabs.test", transport=endless, max_document_bytes=1024 * 1024)

    with pytest.raises((UpstreamError, ConversationRefused)):
        client.get_conversation("conv_1")

    assert sum(pulled) <= 2 * 1024 * 1024


def test_a_json_answer_that_trickles_in_is_given_up(make_client: MakeClient) -> None:
    now = [1_800_000_000.0]

    def trickle() -> Iterator[bytes]:
        for _ in range(10_000):
            now[0] += 10.0
            yield b" "

    slow = httpx.MockTransport(
        lambda _r: httpx.Response(200, headers={"content-type": "application/json"}, content=trickle())
    )
    client = make_client(base_url="http://elevenlabs.test", transport=slow, clock=lambda: now[0], timeout=30.0)

    with pytest.raises(UpstreamError, match="too slowly"):
        client.list_conversations()


def test_json_where_audio_was_due_is_refused_before_the_first_chunk(
    api: ElevenLabsStandIn, make_client: MakeClient
) -> None:
    cid = api.add()
    api.fail_next(1, 200, kind="audio")

    with pytest.raises(UpstreamError, match="application/json, not audio"), make_client().open_audio(cid):
        pytest.fail("the block must not run")


def test_opening_audio_is_retried_like_any_request(
    api: ElevenLabsStandIn, make_client: MakeClient, sleeps: list[float]
) -> None:
    cid = api.add()
    api.fail_next(1, 429, retry_after="1", kind="audio")

    with make_client().open_audio(cid) as chunks:
        assert b"".join(chunks) == SyntheticAudio(16 * 1024, cid).read()
    assert sleeps == [1.0] and api.requests["audio"] == 2


# -- requests in flight ------------------------------------------------------------------------------


def test_concurrency_bounds_the_requests_in_flight_across_threads(
    api: ElevenLabsStandIn, make_client: MakeClient
) -> None:
    ids = api.add_many(8)
    api.delay_next(8, 0.1, kind="get")  # each request lingers, so unbounded threads would overlap
    client = make_client(concurrency=2)
    results: list[str] = []
    lock = threading.Lock()

    def fetch(cid: str) -> None:
        document = client.get_conversation(cid)
        with lock:
            results.append(document["conversation_id"])

    threads = [threading.Thread(target=fetch, args=(cid,)) for cid in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(results) == sorted(ids)
    assert api.max_in_flight == 2


def test_an_open_audio_stream_holds_its_slot_until_closed(api: ElevenLabsStandIn, make_client: MakeClient) -> None:
    cid = api.add()
    client = make_client(concurrency=1)
    fetched = threading.Event()

    def fetch() -> None:
        client.get_conversation(cid)
        fetched.set()

    waiter = threading.Thread(target=fetch)

    with client.open_audio(cid) as chunks:
        waiter.start()
        assert not fetched.wait(0.3)  # cannot happen while the stream holds the only slot
        assert b"".join(chunks).startswith(b"ID3")
    waiter.join(10)

    assert fetched.is_set()
    assert api.max_in_flight == 1


def test_a_server_never_reached_is_told_apart_from_an_elevenlabs_outage(make_client: MakeClient) -> None:
    from tests.support import free_port

    client = make_client(base_url=f"http://127.0.0.1:{free_port()}", max_attempts=2)  # nothing listens there

    with pytest.raises(UpstreamError) as raised:
        client.list_conversations()

    assert "could not connect" in raised.value.message and "CALLVAULT_ELEVENLABS_BASE_URL" in raised.value.message
    assert API_KEY not in raised.value.message

"""``Mem0PlatformMemoryStore`` (the real ``mem0.MemoryClient`` inside) against a local stand-in of the
Mem0 Platform API on 127.0.0.1: the requests it makes, effect-once, errors and retries."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from services.memory.domain import AGENT_KEY, MemoryItem, build_conversation_memories
from services.memory.errors import MemoryUnavailable
from services.memory.mem0_platform import Mem0PlatformMemoryStore
from tests.memory.fake_mem0_platform import API_KEY, PlatformState, fake_mem0_platform
from tests.memory.support import CALLER, OTHER_CALLER, call_envelope
from tests.support import free_port

TURNS = [("agent", "Hello Maria"), ("user", "My granddaughter Lucia visits on Sundays"), ("user", "...")]
CONV = "conv_platform_1"


@pytest.fixture
def platform() -> Iterator[tuple[str, PlatformState]]:
    with fake_mem0_platform() as served:
        yield served


def _store(url: str, key: str = API_KEY, **options: object) -> tuple[Mem0PlatformMemoryStore, list[float]]:
    sleeps: list[float] = []
    store = Mem0PlatformMemoryStore(key, url, sleep=sleeps.append, **options)  # type: ignore[arg-type]
    return store, sleeps


def _items() -> tuple[MemoryItem, ...]:
    return build_conversation_memories(call_envelope(CONV, CALLER, TURNS)["data"]).items


def test_constructing_the_store_does_not_contact_the_service(platform: tuple[str, PlatformState]) -> None:
    url, state = platform
    _store(url)
    assert state.requests == []


def test_add_conversation_lists_then_adds_facts_and_the_callers_words_with_infer_off(
    platform: tuple[str, PlatformState],
) -> None:
    url, state = platform
    store, _ = _store(url)
    assert store.add_conversation(CALLER, CONV, _items()) == 6  # 5 facts + the caller's one worthwhile turn

    assert [(r.method, r.path) for r in state.requests] == [
        ("GET", "/v1/ping/"),
        ("POST", "/v3/memories/"),
        *[("POST", "/v3/memories/add/")] * 4,  # summary, collected data, evaluations, the caller's words
    ]
    assert all(r.headers["authorization"] == f"Token {API_KEY}" for r in state.requests)
    listing = state.requests[1]
    assert listing.body == {"filters": {"AND": [{"user_id": CALLER}, {"metadata": {"conversation_id": CONV}}]}}
    assert listing.query == {"page": ["1"], "page_size": ["100"]}
    summary, collected, evaluation, turns = (r.body for r in state.calls("POST", "/v3/memories/add/"))
    assert summary["user_id"] == CALLER and all(
        r.body["infer"] is False for r in state.calls("POST", "/v3/memories/add/")
    )
    base = {"conversation_id": CONV, AGENT_KEY: "agent_01jxbrc1trfxev5sdp5xk4ra67", "started_at": 1751802015}
    assert summary["messages"] == [
        {
            "role": "user",
            "content": "Call summary: The AI agent greeted Maria, offering to continue a previous story "
            "or start a new one.",
        }
    ]
    assert summary["metadata"] == {**base, "type": "factual", "source": "summary", "caller_name": "Maria"}
    texts = [m["content"] for m in collected["messages"]]
    assert texts[0::2] == ["session date: 1751802015", "user name: Maria"] and len(texts) == 3
    assert texts[1].startswith("comfort level: Whenever you")
    assert {m["role"] for m in collected["messages"]} == {"user"}
    assert collected["metadata"] == {**base, "type": "factual", "source": "data_collection", "caller_name": "Maria"}
    assert evaluation["metadata"]["source"] == "evaluation"
    assert turns["messages"] == [{"role": "user", "content": "My granddaughter Lucia visits on Sundays"}]
    assert turns["metadata"] == {**base, "type": "semantic", "source": "turn"}  # no per-item turn or seq


def test_adding_a_conversation_again_deletes_its_memories_first(platform: tuple[str, PlatformState]) -> None:
    url, state = platform
    store, _ = _store(url)
    store.add_conversation(CALLER, CONV, _items())
    first_ids = {m["id"] for m in state.memories}
    store.add_conversation(OTHER_CALLER, "conv_other", _items())
    store.add_conversation(CALLER, CONV, _items())
    assert len([m for m in state.memories if m["user_id"] == CALLER]) == 6
    assert len([m for m in state.memories if m["user_id"] == OTHER_CALLER]) == 6
    (batch,) = state.calls("DELETE", "/v1/batch/")
    assert {m["memory_id"] for m in batch.body["memories"]} == first_ids


def test_search_and_list_are_scoped_to_the_caller_and_map_metadata(platform: tuple[str, PlatformState]) -> None:
    url, state = platform
    store, _ = _store(url)
    store.add_conversation(CALLER, CONV, _items())
    store.add_conversation(OTHER_CALLER, "conv_other", _items())

    found = store.search(CALLER, "granddaughter Lucia", None, 5)
    assert [m.text for m in found] == ["My granddaughter Lucia visits on Sundays"]
    assert (found[0].conversation_id, found[0].agent_id, found[0].role, found[0].type) == (
        CONV,
        "agent_01jxbrc1trfxev5sdp5xk4ra67",
        "user",
        "semantic",
    )
    assert found[0].score is not None
    search = state.calls("POST", "/v3/memories/search/")[-1].body
    assert search == {"query": "granddaughter Lucia", "filters": {"user_id": CALLER}, "top_k": 5}

    factual = store.list(CALLER, "factual", 10)
    assert [m.source for m in factual] == [
        "summary",
        "data_collection",
        "data_collection",
        "data_collection",
        "evaluation",
    ]
    assert {m.caller_name for m in factual} == {"Maria"}
    assert state.calls("POST", "/v3/memories/")[-1].body == {
        "filters": {"AND": [{"user_id": CALLER}, {"metadata": {"type": "factual"}}]}
    }
    assert {m.conversation_id for m in store.list(CALLER, None, 50)} == {CONV}


def test_delete_caller_deletes_the_user_entity_and_tolerates_an_unknown_caller(
    platform: tuple[str, PlatformState],
) -> None:
    url, state = platform
    store, _ = _store(url)
    store.add_conversation(CALLER, CONV, _items())
    store.add_conversation(OTHER_CALLER, "conv_other", _items())
    assert store.delete_caller(CALLER) == 6
    (delete,) = state.calls("DELETE", "/v2/entities/user/")
    assert unquote(delete.path) == f"/v2/entities/user/{CALLER}/"
    assert {m["user_id"] for m in state.memories} == {OTHER_CALLER}
    assert store.delete_caller("+16125550999") == 0


def test_5xx_and_429_are_retried_with_growing_backoff_then_succeed(platform: tuple[str, PlatformState]) -> None:
    url, state = platform
    store, sleeps = _store(url, max_retries=3, backoff_secs=0.5)
    store.add_conversation(CALLER, CONV, _items())
    state.fail_next("POST", "/v3/memories/search/", 503, 429, 502)
    assert store.search(CALLER, "Lucia", None, 5)
    assert len(state.calls("POST", "/v3/memories/search/")) == 4
    assert len(sleeps) == 3
    assert 0.25 <= sleeps[0] <= 0.75 and 0.5 <= sleeps[1] <= 1.5 and 1.0 <= sleeps[2] <= 3.0


def test_persistent_5xx_ends_in_memory_unavailable_after_the_retry_budget(platform: tuple[str, PlatformState]) -> None:
    url, state = platform
    store, sleeps = _store(url, max_retries=2)
    state.fail_next("POST", "/v3/memories/", 500, 500, 500, 500)
    with pytest.raises(MemoryUnavailable) as caught:
        store.list(CALLER, None, 10)
    assert caught.value.retryable is True
    assert "HTTP 500" in caught.value.message and "injected" not in caught.value.message
    assert len(state.calls("POST", "/v3/memories/")) == 3 and len(sleeps) == 2


def test_a_refused_request_is_not_retried(platform: tuple[str, PlatformState]) -> None:
    url, state = platform
    store, sleeps = _store(url)
    store.list(CALLER, None, 1)  # connected
    state.fail_next("POST", "/v3/memories/add/", 422)
    with pytest.raises(MemoryUnavailable) as caught:
        store.add_conversation(CALLER, CONV, _items())
    assert caught.value.retryable is False and "HTTP 422" in caught.value.message
    assert len(state.calls("POST", "/v3/memories/add/")) == 1 and sleeps == []


def test_a_wrong_api_key_fails_at_the_ping_without_retrying(platform: tuple[str, PlatformState]) -> None:
    url, state = platform
    store, sleeps = _store(url, key="m0-wrong")
    with pytest.raises(MemoryUnavailable) as caught:
        store.search(CALLER, "anything", None, 5)
    assert caught.value.retryable is False and "HTTP 401" in caught.value.message
    assert [(r.method, r.path) for r in state.requests] == [("GET", "/v1/ping/")] and sleeps == []


def test_a_ping_that_fails_once_is_retried_and_the_client_is_then_kept(platform: tuple[str, PlatformState]) -> None:
    url, state = platform
    store, _ = _store(url)
    state.fail_next("GET", "/v1/ping/", 503)
    assert store.list(CALLER, None, 5) == []
    store.list(CALLER, None, 5)
    assert len(state.calls("GET", "/v1/ping/")) == 2  # the failed one, then one for the store's life


def test_an_unreachable_service_is_memory_unavailable_and_retryable() -> None:
    store, sleeps = _store(f"http://127.0.0.1:{free_port()}", max_retries=1, timeout_secs=2.0)
    with pytest.raises(MemoryUnavailable) as caught:
        store.add_conversation(CALLER, CONV, _items())
    assert caught.value.retryable is True and len(sleeps) == 1


def test_an_injected_httpx_client_carries_every_request_and_timeouts_are_retried() -> None:
    seen: list[str] = []
    timeouts = iter([True, False])

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/v1/ping/":
            return httpx.Response(200, json={"org_id": "o", "project_id": "p"})
        if next(timeouts, False):
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json={"results": []})

    client = httpx.Client(transport=httpx.MockTransport(respond))
    store, sleeps = _store("https://mem0.invalid", client=client)
    assert store.search(CALLER, "x", None, 3) == []
    assert seen == ["GET /v1/ping/", "POST /v3/memories/search/", "POST /v3/memories/search/"]
    assert len(sleeps) == 1


def test_a_fresh_process_using_the_store_has_mem0_telemetry_off(
    platform: tuple[str, PlatformState], tmp_path: Path
) -> None:
    """Mem0 reads MEM0_TELEMETRY once, at import: the store must set it before the first import."""
    url, _ = platform
    code = (
        "from services.memory.mem0_platform import Mem0PlatformMemoryStore\n"
        f"store = Mem0PlatformMemoryStore({API_KEY!r}, {url!r})\n"
        "store.list('+16125550142', None, 5)\n"
        "from mem0.memory import telemetry\n"
        "import os\n"
        "print(telemetry.MEM0_TELEMETRY, telemetry.client_telemetry.posthog is None, os.environ['MEM0_DIR'])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEM0_", "CALLVAULT_"))}
    env["HOME"] = str(tmp_path)  # nothing may be written to the user's ~/.mem0
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    telemetry_on, no_posthog, mem0_dir = done.stdout.split()
    assert (telemetry_on, no_posthog) == ("False", "True")
    assert not (tmp_path / ".mem0").exists() and "callvault-mem0-home" in mem0_dir


def test_caller_name_reads_one_page_of_factual_memories(platform: tuple[str, PlatformState]) -> None:
    url, state = platform
    store, _ = _store(url)
    assert store.caller_name(CALLER) is None
    store.add_conversation(CALLER, CONV, _items())
    before = len(state.requests)
    assert store.caller_name(CALLER) == "Maria"
    (request,) = state.requests[before:]
    assert request.body == {"filters": {"AND": [{"user_id": CALLER}, {"metadata": {"type": "factual"}}]}}


def test_with_inference_the_transcript_goes_in_one_infer_request_and_a_re_run_replaces_it(
    platform: tuple[str, PlatformState],
) -> None:
    url, state = platform
    store, _ = _store(url)
    items = build_conversation_memories(call_envelope(CONV, CALLER, TURNS)["data"], infer=True).items
    assert store.add_conversation(CALLER, CONV, items) == 5  # the facts; Mem0 extracts the rest later
    adds = [r.body for r in state.calls("POST", "/v3/memories/add/")]
    assert [a["infer"] for a in adds] == [False, False, False, True]
    inferred = adds[-1]
    assert inferred["messages"] == [  # the whole conversation, agent and caller; "..." has no words
        {"role": "assistant", "content": "Hello Maria"},
        {"role": "user", "content": "My granddaughter Lucia visits on Sundays"},
    ]
    assert inferred["metadata"] == {
        "conversation_id": CONV,
        AGENT_KEY: "agent_01jxbrc1trfxev5sdp5xk4ra67",
        "started_at": 1751802015,
        "type": "semantic",
        "source": "inferred",
    }
    mine = sorted(m["memory"] for m in state.memories if m["metadata"].get("source") == "inferred")
    assert mine == ["Has six children", "Lives in Winona"]

    for _ in range(2):  # a redelivered webhook or a retried job: the conversation's memories are replaced
        store.add_conversation(CALLER, CONV, items)
    assert sorted(m["memory"] for m in state.memories) == sorted(
        ["Has six children", "Lives in Winona"] + [i.text for i in items if not i.infer]
    )
    found = store.search(CALLER, "six children", None, 3)
    assert (found[0].text, found[0].source, found[0].conversation_id, found[0].type) == (
        "Has six children",
        "inferred",
        CONV,
        "semantic",
    )


def test_caller_facts_are_the_newest_calls_collected_data_from_one_page(platform: tuple[str, PlatformState]) -> None:
    url, state = platform
    store, _ = _store(url)
    old = call_envelope("conv_old", CALLER, TURNS, started_at=1751000000, name="Maria")
    new = call_envelope("conv_new", CALLER, TURNS, started_at=1751802015, name="Maria Lopez")
    for cid, envelope in (("conv_new", new), ("conv_old", old)):  # the older call stored last
        store.add_conversation(CALLER, cid, build_conversation_memories(envelope["data"]).items)
    before = len(state.requests)
    facts = store.caller_facts(CALLER)
    assert facts is not None and facts.endswith("; user name: Maria Lopez") and facts.startswith("session date: ")
    assert len(state.requests) == before + 1  # one page, while the phone rings
    assert store.caller_facts(OTHER_CALLER) is None


def test_serve_reads_for_the_agent_through_a_store_that_does_not_retry(
    platform: tuple[str, PlatformState], tmp_path: Path
) -> None:
    """Conversation-init and the memory tool answer while the phone rings: against a failing Mem0
    Platform they give up after one request (the worker's store retries, which suits a job)."""
    from pydantic import SecretStr

    from services.core.config import Settings
    from services.core.wiring import build_storage
    from services.memory.local import build_local_memory

    url, state = platform
    settings = Settings(
        data_dir=tmp_path / "data",
        memory_backend="platform",
        mem0_host=url,
        mem0_api_key=SecretStr(API_KEY),
        mem0_max_retries=3,
        mem0_timeout_secs=30,
    )
    local = build_local_memory(settings, build_storage(settings), agent_secrets=["asec_x"])
    assert local is not None
    try:
        assert local.context.store is not local.store
        state.fail_next("GET", "/v", *([503] * 10))
        state.fail_next("POST", "/v", *([503] * 10))
        before = len(state.requests)
        with pytest.raises(MemoryUnavailable):
            local.context.store.list(CALLER)
        assert len(state.requests) - before == 1  # one try, no retry
    finally:
        local.stop()


def test_a_slow_platform_keeps_the_ringing_phone_waiting_at_most_the_agent_wait_in_all(
    platform: tuple[str, PlatformState], tmp_path: Path
) -> None:
    """Each request to a slow Mem0 Platform ends within its own timeout, but a greeting makes several
    (the client's first use pings, then the name and the facts): together they would keep the caller
    waiting 6 s. Conversation-init and the tool give up on the store after 3 s in all, and answer."""
    import time

    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from services.core.config import Settings
    from services.core.domain.models import CallRecord
    from services.core.wiring import build_storage
    from services.memory.app import create_memory_app
    from services.memory.local import build_local_memory
    from services.memory.service import SECRET_HEADER
    from services.web.auth import ApiKeys

    url, state = platform
    settings = Settings(
        data_dir=tmp_path / "data", memory_backend="platform", mem0_host=url, mem0_api_key=SecretStr(API_KEY)
    )
    storage = build_storage(settings)
    storage.index.save_call(CallRecord(CONV, phone=CALLER, started_at=1751802015, event_at=1751802025), 1751802100)
    local = build_local_memory(settings, storage, agent_secrets=["asec_x"])
    assert local is not None
    try:
        local.store.add_conversation(CALLER, CONV, _items())
        state.delay_secs = 2.5  # each answer: within the 3 s timeout of one request
        client = TestClient(create_memory_app(local.context, ApiKeys([])))
        headers = {SECRET_HEADER: "asec_x"}

        started = time.perf_counter()  # the client's first use: ping, then the list
        tool = client.post("/tools/memory-search", json={"query": "", "caller_id": CALLER}, headers=headers)
        tool_secs = time.perf_counter() - started
        started = time.perf_counter()  # the name, then the facts
        init = client.post("/webhooks/elevenlabs/conversation-init", json={"caller_id": CALLER}, headers=headers)
        init_secs = time.perf_counter() - started

        assert tool.status_code == 200 and tool_secs < 4.5
        assert tool.json() == {"caller_known": None, "results": [], "note": "memory is temporarily unavailable"}
        assert init.status_code == 200 and init_secs < 4.5
        variables = init.json()["dynamic_variables"]
        assert variables["caller_past_calls"] == 1 and variables["caller_name"] == ""  # the index still answers
    finally:
        state.delay_secs = 0.0
        local.stop()


def test_mem0s_own_log_lines_never_carry_the_callers_number(
    platform: tuple[str, PlatformState], caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK logs every HTTP error with its URL, and erasing a caller calls `DELETE
    /v2/entities/user/{number}/`, which answers 404 for a caller with nothing stored (an expected
    answer). Our own log lines say what failed, with the number masked; the SDK's are silenced."""
    import logging

    url, state = platform
    caplog.set_level(logging.DEBUG)
    store, _ = _store(url, max_retries=0)
    assert store.delete_caller(CALLER) == 0  # nothing stored: the 404 path
    state.fail_next("POST", "/v3/memories/", 400)
    with pytest.raises(MemoryUnavailable):
        store.list(CALLER)

    digits = CALLER.lstrip("+")
    assert not [r for r in caplog.records if digits in r.getMessage()]

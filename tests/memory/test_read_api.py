"""The read side over HTTP, in the local app composed as the lead will wire it: the caller memories
route (search API key), the ElevenLabs conversation-initiation webhook and the memory-search tool
(shared secret)."""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.core.config import Settings
from services.core.wiring import build_storage
from services.local.app import create_local_app
from services.memory.app import create_memory_app, mount_memory
from services.memory.domain import StoredMemory, build_conversation_memories
from services.memory.router import MemoryContext
from services.memory.service import SECRET_HEADER, AgentSecrets, _tool_item, in_callers_words
from services.search.dependencies import require_api_key
from services.web.auth import ApiKeys, hash_key
from tests.memory.support import CALLER, OTHER_CALLER, FakeMemoryStore, call_envelope, envelope_bytes
from tests.support import SECRET, signed_headers

API_KEY = "cvk_memory-test-key"
AGENT_SECRET = "asec_memory-test-secret"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
AGENT = {SECRET_HEADER: AGENT_SECRET}
TURNS = [("agent", "Hi Maria"), ("user", "My daughter Ana is visiting from Porto next week")]
INIT = "/webhooks/elevenlabs/conversation-init"
TOOL = "/tools/memory-search"


@dataclass
class Api:
    client: TestClient
    store: FakeMemoryStore
    context: MemoryContext

    def archive(
        self, conversation_id: str, phone: str, started_at: int, summary: str, name: str | None = "Maria"
    ) -> None:
        envelope = call_envelope(conversation_id, phone, TURNS, started_at=started_at, summary=summary, name=name)
        body = envelope_bytes(envelope)
        assert self.client.post("/webhooks/elevenlabs", content=body, headers=signed_headers(body)).status_code == 200
        memories = build_conversation_memories(envelope["data"])
        self.store.add_conversation(phone, conversation_id, memories.items)  # as the worker would


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    settings = Settings(data_dir=tmp_path, agent_first_message="Welcome back, {caller_name}!")
    storage = build_storage(settings)
    app = create_local_app(settings, [SECRET], storage, api_key_hashes=[hash_key(API_KEY)])
    store = FakeMemoryStore()
    context = MemoryContext(
        store, storage.index, AgentSecrets([AGENT_SECRET]), first_message=settings.agent_first_message
    )
    mount_memory(app, context, require_api_key)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, store, context)


# --- GET /callers/{phone}/memories ----------------------------------------------------------------


def test_caller_memories_need_the_api_key(api: Api) -> None:
    response = api.client.get("/callers/%2B16125550142/memories")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    wrong = api.client.get("/callers/%2B16125550142/memories", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_caller_memories_list_newest_call_first_each_with_its_conversation(api: Api) -> None:
    api.archive("conv_old", CALLER, 1751000000, "First call.")
    api.archive("conv_new", CALLER, 1751802015, "Second call.")
    api.archive("conv_x", OTHER_CALLER, 1751802015, "Someone else.")
    body = api.client.get("/callers/%2B16125550142/memories", headers=AUTH).json()
    assert set(body) == {"items", "next_cursor"} and body["next_cursor"] is None
    items = body["items"]
    assert [i["conversation_id"] for i in items] == ["conv_new"] * 6 + ["conv_old"] * 6
    assert [i["type"] for i in items[:6]] == ["factual"] * 5 + ["semantic"]  # facts, then the caller's words
    assert items[0]["text"] == "Call summary: Second call."
    assert items[5] == {
        "id": items[5]["id"],
        "text": "My daughter Ana is visiting from Porto next week",
        "type": "semantic",
        "role": "user",
        "source": "turn",
        "conversation_id": "conv_new",
        "agent_id": "agent_01jxbrc1trfxev5sdp5xk4ra67",
        "started_at": 1751802015,
        "score": None,
        "created_at": None,
    }


def test_caller_memories_search_type_and_limit(api: Api) -> None:
    api.archive("conv_new", CALLER, 1751802015, "Second call.")
    found = api.client.get("/callers/+1 612-555-0142/memories", params={"q": "daughter Porto"}, headers=AUTH).json()
    assert [i["text"] for i in found["items"]] == ["My daughter Ana is visiting from Porto next week"]
    factual = api.client.get("/callers/%2B16125550142/memories?type=factual", headers=AUTH).json()["items"]
    assert [i["type"] for i in factual] == ["factual"] * 5
    assert len(api.client.get("/callers/%2B16125550142/memories?limit=1", headers=AUTH).json()["items"]) == 1
    bad = api.client.get("/callers/%2B16125550142/memories?type=episodic", headers=AUTH)
    assert bad.status_code == 422


def _many(api: Api, phone: str, calls: int, turns_per_call: int) -> None:
    """``calls`` calls straight into the store (as the worker would), each with distinct caller sentences."""
    for c in range(calls):
        turns = [
            ("user", f"I remember item{c}x{t} and thing{c}x{t} from the story")  # no two alike
            for t in range(turns_per_call)
        ]
        envelope = call_envelope(f"conv_many_{c:02d}", phone, turns, started_at=1751000000 + c)
        api.store.add_conversation(phone, f"conv_many_{c:02d}", build_conversation_memories(envelope["data"]).items)


def _walk(api: Api, params: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        page = api.client.get(
            "/callers/%2B16125550142/memories",
            params={**params, **({"cursor": cursor} if cursor else {})},
            headers=AUTH,
        )
        assert page.status_code == 200, page.text
        items.extend(page.json()["items"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the walk never ended")


def test_a_listing_pages_beyond_100_with_the_cursor_every_memory_once_in_order(api: Api) -> None:
    _many(api, CALLER, calls=12, turns_per_call=20)  # 12 x (5 facts + 20 sentences) = 300 memories
    _many(api, OTHER_CALLER, calls=1, turns_per_call=3)
    first = api.client.get("/callers/%2B16125550142/memories", params={"limit": 100}, headers=AUTH).json()
    assert len(first["items"]) == 100 and first["next_cursor"]
    walked = _walk(api, {"limit": 100})
    assert len(walked) == 300 and len({i["id"] for i in walked}) == 300
    one_page = api.store.list(CALLER, None, 1000)
    assert [i["id"] for i in walked] == [m.id for m in one_page]  # the same order as one long listing
    assert [i["conversation_id"] for i in walked[:25]] == ["conv_many_11"] * 25  # newest call first
    assert {i["conversation_id"] for i in walked} == {f"conv_many_{c:02d}" for c in range(12)}
    small = _walk(api, {"limit": 7})  # any page size walks the same list
    assert [i["id"] for i in small] == [i["id"] for i in walked]


def test_a_cursor_survives_memories_added_during_the_walk(api: Api) -> None:
    _many(api, CALLER, calls=3, turns_per_call=10)
    page = api.client.get("/callers/%2B16125550142/memories", params={"limit": 20}, headers=AUTH).json()
    _many(api, CALLER, calls=4, turns_per_call=10)  # conv_many_03 arrives: newer, so before the cursor
    rest = _walk_from(api, page["next_cursor"], {"limit": 20})
    seen = [i["id"] for i in page["items"]] + [i["id"] for i in rest]
    assert len(seen) == len(set(seen))
    assert {i["conversation_id"] for i in rest} <= {"conv_many_00", "conv_many_01", "conv_many_02"}


def _walk_from(api: Api, cursor: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    next_cursor: str | None = cursor
    while next_cursor:
        body = api.client.get(
            "/callers/%2B16125550142/memories", params={**params, "cursor": next_cursor}, headers=AUTH
        ).json()
        items.extend(body["items"])
        next_cursor = body["next_cursor"]
    return items


def test_the_type_filter_pages_too(api: Api) -> None:
    _many(api, CALLER, calls=30, turns_per_call=1)  # 150 facts, 30 sentences
    facts = _walk(api, {"type": "factual", "limit": 100})
    assert len(facts) == 150 and {i["type"] for i in facts} == {"factual"}
    said = _walk(api, {"type": "semantic", "limit": 100})
    assert len(said) == 30 and {(i["type"], i["source"]) for i in said} == {("semantic", "turn")}


def test_a_search_pages_with_its_own_cursor(api: Api) -> None:
    _many(api, CALLER, calls=3, turns_per_call=10)
    hits = _walk(api, {"q": "remember", "limit": 4})
    assert len(hits) == 30 and len({i["id"] for i in hits}) == 30
    assert all(i["text"].startswith("I remember item") for i in hits)


def test_a_cursor_for_another_query_type_or_caller_or_a_forged_one_is_a_400(api: Api) -> None:
    _many(api, CALLER, calls=2, turns_per_call=10)
    cursor = api.client.get("/callers/%2B16125550142/memories", params={"limit": 5}, headers=AUTH).json()["next_cursor"]
    for path, params in (
        ("/callers/%2B16125550142/memories", {"type": "factual"}),
        ("/callers/%2B16125550142/memories", {"q": "detail"}),
        ("/callers/%2B16125550177/memories", {}),
        ("/callers/%2B16125550142/memories", {"cursor": cursor[:-3] + "AAA"}),
        ("/callers/%2B16125550142/memories", {"cursor": "not a cursor"}),
    ):
        response = api.client.get(path, params={"cursor": cursor, **params}, headers=AUTH)
        assert response.status_code == 400, (path, params)
        assert response.json()["error"]["code"] == "invalid_cursor"


def test_a_caller_with_no_memories_gets_an_empty_list_and_a_bad_number_a_422(api: Api) -> None:
    assert api.client.get("/callers/%2B16125550999/memories", headers=AUTH).json() == {"items": [], "next_cursor": None}
    response = api.client.get("/callers/hello/memories", headers=AUTH)
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"


def test_caller_memories_answer_503_when_the_store_is_down(api: Api) -> None:
    api.store.down = True
    response = api.client.get("/callers/%2B16125550142/memories", headers=AUTH)
    assert response.status_code == 503 and response.json()["error"]["code"] == "memory_unavailable"


# --- POST /webhooks/elevenlabs/conversation-init -------------------------------------------------


def _init(api: Api, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return api.client.post(INIT, json=body, headers=AGENT if headers is None else headers)


def test_conversation_init_needs_the_secret_before_anything_else(api: Api) -> None:
    assert _init(api, {"caller_id": CALLER}, headers={}).status_code == 401
    assert _init(api, {"caller_id": CALLER}, headers={SECRET_HEADER: "wrong"}).status_code == 401
    garbage = api.client.post(INIT, content=b"not json", headers={SECRET_HEADER: "wrong"})
    assert garbage.status_code == 401  # not 400: an unauthenticated caller learns nothing about parsing
    assert api.client.post(INIT, content=b"not json", headers=AGENT).status_code == 400


def test_a_returning_caller_is_greeted_by_name_with_a_summary_of_past_calls(api: Api) -> None:
    api.archive("conv_old", CALLER, 1751000000, "Maria asked about bus times.")
    api.archive("conv_new", CALLER, 1751802015, "Maria talked about her daughter's visit.")
    body = _init(
        api, {"caller_id": CALLER, "agent_id": "agent_x", "called_number": "+16125550100", "call_sid": "CA1"}
    ).json()
    assert body["type"] == "conversation_initiation_client_data"
    assert body["dynamic_variables"] == {
        "caller_known": True,
        "caller_name": "Maria",
        "caller_past_calls": 2,
        "caller_last_call_at": "2025-07-06",
        "caller_last_call_summary": "Maria talked about her daughter's visit.",
        "caller_history_summary": "2 earlier calls. 2025-07-06: Maria talked about her daughter's visit. "
        "2025-06-27: Maria asked about bus times.",
        # The newest call's collected data; no evaluations, no summaries (those are in the history).
        "caller_facts": "session date: 1751802015; comfort level: Whenever you\u2019re ready, we can pick up where "
        "we left off or dive into a new story...; user name: Maria",
    }
    assert body["conversation_config_override"] == {"agent": {"first_message": "Welcome back, Maria!"}}


def test_a_first_time_caller_gets_every_variable_empty_and_no_override(api: Api) -> None:
    for caller in ("+16125550999", "anonymous", None):
        body = _init(api, {"caller_id": caller}).json()
        assert body == {
            "type": "conversation_initiation_client_data",
            "dynamic_variables": {
                "caller_known": False,
                "caller_name": "",
                "caller_past_calls": 0,
                "caller_last_call_at": "",
                "caller_last_call_summary": "",
                "caller_history_summary": "",
                "caller_facts": "",
            },
        }


def test_conversation_init_still_answers_from_the_index_when_memory_is_down(api: Api) -> None:
    api.archive("conv_new", CALLER, 1751802015, "Maria talked about her daughter's visit.")
    api.store.down = True
    response = _init(api, {"caller_id": "(612) 555-0142"})
    assert response.status_code == 200
    variables = response.json()["dynamic_variables"]
    assert variables["caller_past_calls"] == 1 and variables["caller_name"] == "" and variables["caller_facts"] == ""
    assert "conversation_config_override" not in response.json()  # no name, no personal greeting


def test_a_caller_whose_name_was_never_collected_gets_no_first_message_override(api: Api) -> None:
    api.archive("conv_new", CALLER, 1751802015, "A call.", name=None)
    body = _init(api, {"caller_id": CALLER}).json()
    assert body["dynamic_variables"]["caller_known"] is True and "conversation_config_override" not in body


# --- POST /tools/memory-search --------------------------------------------------------------------


def test_the_tool_searches_the_callers_memories_only(api: Api) -> None:
    api.archive("conv_new", CALLER, 1751802015, "A call.")
    api.archive("conv_x", OTHER_CALLER, 1751802015, "Other.")
    assert api.client.post(TOOL, json={"query": "daughter", "caller_id": CALLER}).status_code == 401
    body = api.client.post(TOOL, json={"query": "daughter Porto", "caller_id": CALLER}, headers=AGENT).json()
    assert body["caller_known"] is True
    assert [(r["text"], r["conversation_id"], r["call_date"]) for r in body["results"]] == [
        ("My daughter Ana is visiting from Porto next week", "conv_new", "2025-07-06")
    ]


def test_the_tool_tells_what_the_caller_said_in_several_calls_once_and_no_evaluations(api: Api) -> None:
    api.archive("conv_old", CALLER, 1751000000, "Maria asked about bus times.")
    api.archive("conv_new", CALLER, 1751802015, "Maria talked about her daughter's visit.")  # the same sentence again
    body = api.client.post(TOOL, json={"query": "daughter Porto visiting", "caller_id": CALLER}, headers=AGENT).json()
    texts = [r["text"] for r in body["results"]]
    assert texts.count("My daughter Ana is visiting from Porto next week") == 1
    assert texts[0] == "My daughter Ana is visiting from Porto next week"
    assert body["results"][0]["source"] == "turn"
    facts = api.client.post(TOOL, json={"query": "", "caller_id": CALLER}, headers=AGENT).json()["results"]
    assert [r["text"] for r in facts] == [
        "Call summary: Maria talked about her daughter's visit.",
        "session date: 1751802015",
        facts[2]["text"],
        "user name: Maria",
        "Call summary: Maria asked about bus times.",  # the older call's data fields are the same: told once
    ]
    assert facts[2]["text"].startswith("comfort level: ")
    assert not any(r["source"] == "evaluation" for r in facts)


def test_the_tool_answers_gracefully_without_caller_or_memory(api: Api) -> None:
    none = api.client.post(TOOL, json={"query": "x"}, headers=AGENT).json()
    assert none == {"caller_known": False, "results": [], "note": "no caller phone number for this conversation"}
    api.store.down = True
    down = api.client.post(TOOL, json={"query": "x", "caller_id": CALLER}, headers=AGENT)
    assert down.status_code == 200 and down.json()["note"] == "memory is temporarily unavailable"


def test_the_memory_app_for_aws_serves_the_same_routes_with_its_own_key_check(tmp_path: Path) -> None:
    storage = build_storage(Settings(data_dir=tmp_path))
    context = MemoryContext(FakeMemoryStore(), storage.index, AgentSecrets([AGENT_SECRET]), clock=time.time)
    app = create_memory_app(context, ApiKeys([hash_key(API_KEY)]), logger=None)
    with TestClient(app) as client:
        assert client.get("/callers/%2B16125550142/memories").status_code == 401
        assert client.get("/callers/%2B16125550142/memories", headers=AUTH).json()["items"] == []
        assert client.post(INIT, json={"caller_id": CALLER}, headers=AGENT).status_code == 200
        assert "x-request-id" in client.post(TOOL, json={}, headers=AGENT).headers


@pytest.mark.parametrize(
    ("asked", "searched"),
    [
        ("where did she grow up", "where did I grow up"),
        ("Does he have children?", "Does I have children?"),
        ("What was the caller's first job", "What was my first job"),
        ("her daughter's name", "my daughter's name"),
        ("Shepherd pie recipe", "Shepherd pie recipe"),  # words, not letters
    ],
)
def test_a_question_about_the_caller_is_searched_in_the_callers_own_words(asked: str, searched: str) -> None:
    assert in_callers_words(asked) == searched


@pytest.mark.parametrize(
    ("stored", "placeholder"),
    [("+10000000000", "0000000000"), ("+10000000000", "+1 (000) 000-0000"), ("+15555555555", "+15555555555")],
)
def test_a_placeholder_number_many_callers_share_knows_nobody(api: Api, stored: str, placeholder: str) -> None:
    """A withheld number often arrives as a placeholder: whoever called from it before must not be
    greeted by name, nor their words handed to the next caller who withholds theirs."""
    api.archive("conv_bob", stored, 1751802015, "Bob talked about his daughter's visit.")
    body = _init(api, {"caller_id": placeholder}).json()
    assert body["dynamic_variables"]["caller_known"] is False and body["dynamic_variables"]["caller_name"] == ""
    found = api.client.post(TOOL, json={"query": "daughter", "caller_id": placeholder}, headers=AGENT).json()
    assert found["caller_known"] is False and found["results"] == []


def test_the_tool_answers_in_bounded_pieces_however_long_a_caller_spoke(api: Api) -> None:
    """Speech to text can write a whole long turn without a stop: the tool's answer stays small."""
    long_turn = "and then we drove to Winona to see the lake " * 300  # ~13,000 characters, no stop
    memories = build_conversation_memories(
        call_envelope("conv_long", CALLER, [("user", long_turn)], started_at=1751802015)["data"]
    )
    turns = [item for item in memories.items if item.metadata.get("source") == "turn"]
    assert turns and all(len(item.text) <= 240 for item in turns)
    api.store.add_conversation(CALLER, "conv_long", memories.items)

    body = api.client.post(TOOL, json={"query": "Winona lake", "caller_id": CALLER}, headers=AGENT).json()

    assert body["results"] and all(len(item["text"]) <= 300 for item in body["results"])
    assert len(json.dumps(body)) < 5 * 1024


def test_a_stored_memory_longer_than_an_answer_item_is_cut_in_the_answer() -> None:
    item = _tool_item(StoredMemory("m1", "x" * 5000, "factual", "user", "conv_1", None, 1751802015))
    assert len(item["text"]) == 300 and item["text"].endswith("…")


def test_conversation_init_waits_for_the_index_and_the_store_together_at_most_the_agent_wait() -> None:
    """A slow index (DynamoDB's client waits up to 30 s a read) and a slow store share one budget: the
    phone rings while both are asked, and the answer past it is the one it has (here the index's)."""
    from services.core.adapters.memory import MemoryCallIndex
    from services.core.domain.models import CallPage, CallQuery, CallRecord
    from services.memory.service import caller_profile

    class SlowIndex(MemoryCallIndex):
        def list_calls(self, query: CallQuery) -> CallPage:
            time.sleep(1.6)
            return super().list_calls(query)

    class SlowStore(FakeMemoryStore):
        def caller_name(self, phone: str) -> str | None:
            time.sleep(1.6)
            return "Maria"

    index = SlowIndex()
    index.save_call(CallRecord("conv_1", phone=CALLER, started_at=1751802015, event_at=1751802025), 1751802100)
    errors: list[str] = []

    started = time.perf_counter()
    profile = caller_profile(
        CALLER, index=index, store=SlowStore(), wait_secs=2.0, on_error=lambda source, exc: errors.append(source)
    )
    elapsed = time.perf_counter() - started

    assert elapsed < 2.8  # 1.6 s for the index, then what is left of the 2 s for the store
    assert profile.past_calls == 1 and profile.name is None and profile.degraded and errors == ["memory"]

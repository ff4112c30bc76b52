"""The real offline Mem0 open-source back end, end to end: webhook -> archive -> outbox -> worker ->
Mem0 (Qdrant on disk, ONNX embeddings) -> search. No network (``no_network`` fails on any
non-loopback connection), no LLM."""

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.sqlite_call_index import SqliteCallIndex
from services.core.domain import payload
from services.ingest.service import Archiver, WebhookReceiver
from services.memory.jobs import JobProcessor, MemoryJobs
from services.memory.outbox import SqliteOutbox
from services.memory.worker import MemoryWorker
from tests.memory.support import CALLER, OTHER_CALLER, RecordingStatusSink, call_envelope, envelope_bytes
from tests.support import SECRET, signed_headers

LISBON_TURNS = [
    ("agent", "Welcome back! What would you like to talk about today?"),
    ("user", "I want to tell you about my trip to Lisbon last spring"),
    ("agent", "Lisbon! What did you enjoy most there?"),
    ("user", "The custard tarts in Belem and the old yellow trams"),
]
OTHER_TURNS = [
    ("agent", "Hello, how can I help?"),
    ("user", "I also went to Lisbon, for a conference about databases"),
    ("user", "My dog Rex came with me on the train"),
]


@dataclass
class Vault:
    receiver: WebhookReceiver
    worker: MemoryWorker
    outbox: SqliteOutbox
    status: RecordingStatusSink
    index: SqliteCallIndex

    def deliver(self, envelope: dict[str, Any]) -> str:
        raw = envelope_bytes(envelope)
        return self.receiver.receive(raw, signed_headers(raw)["ElevenLabs-Signature"]).outcome

    def drain(self) -> int:
        runs = 0
        while self.worker.run_once():
            runs += 1
        return runs


@pytest.fixture
def vault(tmp_path: Path, oss_store: Any) -> Vault:
    index = SqliteCallIndex(tmp_path / "index.sqlite3")
    blobs = FsBlobStore(tmp_path / "archive")
    outbox = SqliteOutbox(tmp_path / "index.sqlite3")
    status = RecordingStatusSink()
    archiver = Archiver(blobs, index, time.time, memory_jobs=MemoryJobs(outbox, status, time.time))
    worker = MemoryWorker(outbox, JobProcessor(blobs, index, oss_store), status)
    return Vault(WebhookReceiver(archiver, [SECRET], 1 << 20), worker, outbox, status, index)


def test_offline_round_trip_search_returns_the_callers_memories_and_never_another_callers(
    vault: Vault, oss_store: Any
) -> None:
    assert vault.deliver(call_envelope("conv_maria_1", CALLER, LISBON_TURNS)) == "stored"
    assert vault.deliver(call_envelope("conv_other_1", OTHER_CALLER, OTHER_TURNS, name="Sam")) == "stored"
    assert vault.outbox.counts()["pending"] == 2
    assert vault.drain() == 2
    assert vault.outbox.counts() == {"pending": 0, "running": 0, "done": 2, "failed": 0}
    assert vault.status.last("conv_maria_1") == "done"

    found = oss_store.search(CALLER, "What did the caller say about Lisbon?", None, 10)
    assert found, "the caller's memories are searchable"
    assert {m.conversation_id for m in found} == {"conv_maria_1"}
    assert found[0].text == "I want to tell you about my trip to Lisbon last spring"
    assert found[0].role == "user" and found[0].type == "semantic"
    # Both callers talked about Lisbon: the other caller's search must see only their own words.
    other = oss_store.search(OTHER_CALLER, "Lisbon custard tarts trams", None, 10)
    assert other and {m.conversation_id for m in other} == {"conv_other_1"}
    assert all("tarts" not in m.text for m in other)
    assert oss_store.search("+16125550999", "Lisbon", None, 10) == []


def test_the_facts_carry_summary_data_and_evaluations_with_metadata_and_only_the_caller_is_quoted(
    vault: Vault, oss_store: Any
) -> None:
    vault.deliver(call_envelope("conv_maria_1", CALLER, LISBON_TURNS, summary="Maria told the agent about Lisbon."))
    vault.drain()
    factual = oss_store.list(CALLER, "factual", 10)
    assert [(m.source, m.text) for m in factual] == [
        ("summary", "Call summary: Maria told the agent about Lisbon."),
        ("data_collection", "session date: 1751802015"),
        ("data_collection", factual[2].text),
        ("data_collection", "user name: Maria"),
        ("evaluation", factual[4].text),
    ]
    assert factual[2].text.startswith("comfort level: ")
    assert factual[4].text.startswith("Evaluation results: session_closure: failure; ")
    for memory in factual:
        assert (memory.conversation_id, memory.agent_id, memory.started_at, memory.caller_name, memory.role) == (
            "conv_maria_1",
            "agent_01jxbrc1trfxev5sdp5xk4ra67",
            1751802015,
            "Maria",
            "user",  # a fact about the caller, not the agent's words
        )
    semantic = oss_store.list(CALLER, "semantic", 10)
    assert [(m.turn, m.role, m.text) for m in semantic] == [  # the caller's turns only, in the order spoken
        (1, "user", "I want to tell you about my trip to Lisbon last spring"),
        (3, "user", "The custard tarts in Belem and the old yellow trams"),
    ]


def test_duplicate_deliveries_leave_memory_counts_unchanged(vault: Vault, oss_store: Any) -> None:
    envelope = call_envelope("conv_maria_1", CALLER, LISBON_TURNS)
    vault.deliver(envelope)
    vault.drain()
    first = oss_store.list(CALLER, None, 100)
    assert len(first) == 7  # 5 facts + the caller's 2 turns
    for _ in range(3):
        assert vault.deliver(envelope) == "stored"
        vault.drain()
    again = oss_store.list(CALLER, None, 100)
    assert len(again) == 7
    assert sorted(m.text for m in again) == sorted(m.text for m in first)


def test_a_later_delivery_with_more_turns_replaces_the_conversations_memories(vault: Vault, oss_store: Any) -> None:
    vault.deliver(call_envelope("conv_maria_1", CALLER, LISBON_TURNS[:2], event_at=1751802025))
    vault.drain()
    assert len(oss_store.list(CALLER, None, 100)) == 6  # 5 facts + 1 caller turn
    vault.deliver(call_envelope("conv_maria_1", CALLER, LISBON_TURNS, event_at=1751802099))
    vault.drain()
    assert len(oss_store.list(CALLER, None, 100)) == 7


def test_a_web_call_makes_no_memories_and_says_so(vault: Vault, oss_store: Any) -> None:
    envelope = call_envelope("conv_web_1", None, LISBON_TURNS)
    del envelope["data"]["metadata"]["phone_call"]
    assert vault.deliver(envelope) == "stored"
    assert vault.status.last("conv_web_1") == "skipped_no_phone"
    assert vault.outbox.counts()["pending"] == 0


def test_forgetting_a_caller_erases_memories_and_their_history_but_not_other_callers(
    vault: Vault, oss_store: Any, tmp_path: Path
) -> None:
    vault.deliver(call_envelope("conv_maria_1", CALLER, LISBON_TURNS))
    vault.deliver(call_envelope("conv_maria_1", CALLER, LISBON_TURNS))  # a re-run: deletes leave history too
    vault.deliver(call_envelope("conv_other_1", OTHER_CALLER, OTHER_TURNS))
    vault.drain()
    assert oss_store.delete_caller(CALLER) == 7
    assert oss_store.list(CALLER, None, 100) == []
    assert len(oss_store.list(OTHER_CALLER, None, 100)) == 7  # 5 facts + 2 caller turns
    history = sqlite3.connect(tmp_path / "memory" / "history.sqlite3")
    texts = [
        row[0] for row in history.execute("SELECT COALESCE(old_memory, '') || COALESCE(new_memory, '') FROM history")
    ]
    assert texts and not any("Lisbon last spring" in t or "custard" in t for t in texts)
    assert any("Rex" in t for t in texts)  # the other caller's history is still there


def test_a_forgotten_callers_words_and_number_leave_no_bytes_in_the_stores_files(
    tmp_path: Path, embedder: Any, no_network: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own default keeps deleted rows readable in free pages (Debian's build zeroes them, many
    others do not): Mem0's history and Qdrant's points must be opened with secure_delete on."""
    from services.memory.domain import build_conversation_memories
    from services.memory.mem0_oss import Mem0OssMemoryStore

    connect = sqlite3.connect

    def without_secure_delete(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = connect(*args, **kwargs)
        conn.execute("PRAGMA secure_delete=OFF")  # as a build with SQLite's default behaves
        return conn

    monkeypatch.setattr(sqlite3, "connect", without_secure_delete)
    store = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder)
    try:
        for cid, phone, turns in (("conv_maria_1", CALLER, LISBON_TURNS), ("conv_other_1", OTHER_CALLER, OTHER_TURNS)):
            store.add_conversation(
                phone, cid, build_conversation_memories(call_envelope(cid, phone, turns)["data"]).items
            )
        store.add_conversation(CALLER, "conv_maria_1", [])  # a replaced call: its history rows deleted too
        store.add_conversation(
            CALLER,
            "conv_maria_1",
            build_conversation_memories(call_envelope("conv_maria_1", CALLER, LISBON_TURNS)["data"]).items,
        )
        assert store.delete_caller(CALLER) == 7
    finally:
        store.close()

    files = b"".join(path.read_bytes() for path in (tmp_path / "memory").rglob("*") if path.is_file())
    for trace in (b"custard tarts", b"Lisbon last spring", CALLER.encode(), b"conv_maria_1"):
        assert trace not in files, trace
    assert b"Rex came with me" in files  # the other caller's memories are where they were


def test_memories_survive_a_restart_of_the_store(tmp_path: Path, embedder: Any, no_network: None) -> None:
    from services.memory.domain import build_conversation_memories
    from services.memory.mem0_oss import Mem0OssMemoryStore

    memories = build_conversation_memories(call_envelope("conv_maria_1", CALLER, LISBON_TURNS)["data"])
    store = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder)
    store.add_conversation(CALLER, "conv_maria_1", memories.items)
    store.close()
    reopened = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder)
    try:
        assert len(reopened.list(CALLER, None, 100)) == 7
        assert reopened.search(CALLER, "trams", "semantic", 1)[0].text.endswith("old yellow trams")
    finally:
        reopened.close()


def test_event_parsing_of_the_helper_matches_ingest() -> None:
    # Guards the helper itself: the re-addressed fixture is still a valid transcription webhook.
    event = payload.parse_envelope(envelope_bytes(call_envelope("conv_x", OTHER_CALLER)))
    assert payload.call_from_transcription(event.data, event.event_timestamp).phone == OTHER_CALLER


def test_caller_name_comes_from_the_newest_call_that_collected_one(vault: Vault, oss_store: Any) -> None:
    assert oss_store.caller_name(CALLER) is None
    vault.deliver(call_envelope("conv_1", CALLER, LISBON_TURNS, name="Maria", started_at=1751000000))
    vault.deliver(call_envelope("conv_2", CALLER, LISBON_TURNS, name="Maria Lopez", started_at=1751800000))
    vault.deliver(call_envelope("conv_3", CALLER, LISBON_TURNS, name=None, started_at=1751900000))
    vault.deliver(call_envelope("conv_0", CALLER, LISBON_TURNS, name="M.", started_at=1750000000))  # older, late
    vault.drain()
    assert oss_store.caller_name(CALLER) == "Maria Lopez"
    assert oss_store.caller_name(OTHER_CALLER) is None
    # The newest call's collected data (conv_3 collected no name, but a date and a comfort level).
    facts = oss_store.caller_facts(CALLER)
    assert facts.startswith("session date: 1751802015; comfort level: Whenever you") and "user name" not in facts
    assert oss_store.caller_facts(OTHER_CALLER) is None
    oss_store.delete_caller(CALLER)
    assert oss_store.caller_name(CALLER) is None and oss_store.caller_facts(CALLER) is None


def test_callers_in_one_shard_stay_apart_and_shards_are_stable(oss_store: Any) -> None:
    from services.memory.domain import build_conversation_memories
    from services.memory.mem0_oss import SHARDS, shard_of

    phones = [f"+1612555{n:04d}" for n in range(400)]
    same = [p for p in phones if shard_of(p) == shard_of(phones[0])][:2]
    assert len(same) == 2 and shard_of("+16125550142") == shard_of("+16125550142") < SHARDS
    for n, phone in enumerate(same):
        items = build_conversation_memories(call_envelope(f"conv_s{n}", phone, LISBON_TURNS)["data"]).items
        oss_store.add_conversation(phone, f"conv_s{n}", items)
    for n, phone in enumerate(same):
        assert {m.conversation_id for m in oss_store.list(phone, None, 100)} == {f"conv_s{n}"}
        assert {m.conversation_id for m in oss_store.search(phone, "Lisbon trams", None, 20)} == {f"conv_s{n}"}


def test_the_composed_local_app_makes_a_webhook_searchable(tmp_path: Path, oss_store: Any) -> None:
    """The local app wired as docs/memory.md says (index triggers, hook, worker thread, routes), the
    real offline store: a signed webhook in, the caller's words out of GET /callers/{phone}/memories."""
    from fastapi.testclient import TestClient

    from services.core.config import Settings
    from services.core.wiring import build_storage
    from services.local.app import create_local_app
    from services.memory.app import mount_memory
    from services.memory.local import build_local_memory
    from services.search.dependencies import require_api_key
    from services.web.auth import hash_key

    settings = Settings(data_dir=tmp_path / "data", memory_worker_poll_secs=0.05)
    storage = build_storage(settings)
    app = create_local_app(settings, [SECRET], storage, api_key_hashes=[hash_key("cvk_k")])
    memory = build_local_memory(settings, storage, agent_secrets=["asec_s"], store=oss_store)
    assert memory is not None
    app.state.receiver.archiver.memory_jobs = memory.jobs
    mount_memory(app, memory.context, require_api_key)
    memory.start()
    try:
        with TestClient(app) as client:
            raw = envelope_bytes(call_envelope("conv_app_1", CALLER, LISBON_TURNS))
            assert client.post("/webhooks/elevenlabs", content=raw, headers=signed_headers(raw)).status_code == 200
            deadline = time.monotonic() + 20
            while memory.outbox.get("conv_app_1").state != "done":  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the job never finished"
                time.sleep(0.05)
            found = client.get(
                "/callers/%2B16125550142/memories",
                params={"q": "custard tarts", "limit": 1},
                headers={"Authorization": "Bearer cvk_k"},
            ).json()["items"]
            assert found[0]["text"] == "The custard tarts in Belem and the old yellow trams"
            assert found[0]["conversation_id"] == "conv_app_1"
            init = client.post(
                "/webhooks/elevenlabs/conversation-init",
                json={"caller_id": CALLER},
                headers={"X-CallVault-Secret": "asec_s"},
            ).json()
            assert init["dynamic_variables"]["caller_name"] == "Maria"
            assert init["dynamic_variables"]["caller_past_calls"] == 1
    finally:
        if memory.thread is not None:  # not memory.stop(): the fixture closes the store
            memory.thread.stop(10)
    row = memory.outbox.get("conv_app_1")
    assert row is not None and row.state == "done"


def test_an_erasure_killed_between_deleting_memories_and_purging_their_history_leaves_no_words_behind(
    tmp_path: Path, embedder: Any, no_network: None
) -> None:
    """Mem0's ``delete`` writes the memory's text into its history (a DELETE row) and the store purges
    those rows after each page of deletes, pacing itself between deletes while webhooks arrive. A process
    killed in between (a restart of ``serve`` mid-job) left the text of memories already deleted: no
    later listing finds those memories, so no later purge took it out. The next delete finishes it."""
    from services.memory.domain import build_conversation_memories
    from services.memory.mem0_oss import Mem0OssMemoryStore

    class Killed(BaseException):
        pass

    items = build_conversation_memories(call_envelope("conv_maria_1", CALLER, LISBON_TURNS)["data"]).items
    store = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder)
    try:
        store.add_conversation(CALLER, "conv_maria_1", items)
        paced = iter(range(100))
        store.pace = lambda: None if next(paced) < 3 else (_ for _ in ()).throw(Killed())
        with pytest.raises(Killed):  # three memories deleted, then the process dies
            store.delete_caller(CALLER)
    finally:
        store.pace = None
        store.close()

    store = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder)  # the next start: forget run again
    try:
        assert store.delete_caller(CALLER) == len(items) - 3
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "memory" / "history.sqlite3") as history:
        rows = history.execute("SELECT COUNT(*) FROM history").fetchone()[0]
    files = b"".join(path.read_bytes() for path in (tmp_path / "memory").rglob("*") if path.is_file())
    assert rows == 0
    for trace in (b"custard tarts", b"Lisbon last spring"):
        assert trace not in files, trace

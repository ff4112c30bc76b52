"""Mem0 open source with inference, end to end: webhook -> archive -> outbox -> worker (infer) -> Mem0 OSS,
which asks a stand-in OpenAI-compatible server (127.0.0.1) for the caller's memories and stores its
canned extractions with the call's metadata. Nothing leaves loopback (``no_network``)."""

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.sqlite_call_index import SqliteCallIndex
from services.core.config import Settings
from services.ingest.service import Archiver, WebhookReceiver
from services.memory.jobs import JobProcessor, MemoryJobs
from services.memory.mem0_oss import LlmEndpoint, Mem0OssMemoryStore
from services.memory.outbox import SqliteOutbox
from services.memory.wiring import build_memory_store
from services.memory.worker import MemoryWorker
from tests.memory.fake_openai import LlmState, fake_openai
from tests.memory.support import CALLER, RecordingStatusSink, call_envelope, envelope_bytes
from tests.support import SECRET, signed_headers

TURNS = [
    ("agent", "Where did you grow up, Maria?"),
    ("user", "Yes."),
    ("user", "On a dairy farm in Winona, with my five brothers."),
    ("agent", "And do you have children?"),
    ("user", "Six of them! All grown up now."),
]


@pytest.fixture
def llm(no_network: None) -> Iterator[tuple[str, LlmState]]:
    with fake_openai() as served:
        yield served


def _deliver(receiver: WebhookReceiver, envelope: dict[str, Any]) -> str:
    raw = envelope_bytes(envelope)
    return receiver.receive(raw, signed_headers(raw)["ElevenLabs-Signature"]).outcome


def test_inference_through_an_openai_compatible_server_end_to_end_once(
    tmp_path: Path, embedder: Any, llm: tuple[str, LlmState]
) -> None:
    url, state = llm
    store = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder, llm=LlmEndpoint(url, "llama3.2:3b", "k-1"))
    index = SqliteCallIndex(tmp_path / "index.sqlite3")
    blobs = FsBlobStore(tmp_path / "archive")
    outbox = SqliteOutbox(tmp_path / "index.sqlite3")
    status = RecordingStatusSink()
    archiver = Archiver(blobs, index, time.time, memory_jobs=MemoryJobs(outbox, status, time.time))
    receiver = WebhookReceiver(archiver, [SECRET], 1 << 20)
    worker = MemoryWorker(outbox, JobProcessor(blobs, index, store, infer=True), status)
    try:
        for event_at in (1751802025, 1751802099):  # a later delivery of the same call: the job runs again
            assert _deliver(receiver, call_envelope("conv_inf_1", CALLER, TURNS, event_at=event_at)) == "stored"
            while worker.run_once():
                pass
            assert status.last("conv_inf_1") == "done"

        assert len(state.requests) == 2  # one extraction per run, the whole conversation in one request
        request = state.requests[0]
        assert (request["path"], request["model"], request["authorization"]) == (
            "/v1/chat/completions",
            "llama3.2:3b",
            "Bearer k-1",
        )
        prompt = "\n".join(m["content"] for m in request["messages"])
        assert "On a dairy farm in Winona" in prompt and "Where did you grow up, Maria?" in prompt

        inferred = store.list(CALLER, "semantic", 100)
        assert sorted(m.text for m in inferred) == ["Grew up in Winona", "Has six children"]  # once, not twice
        assert {(m.source, m.conversation_id, m.agent_id, m.started_at) for m in inferred} == {
            ("inferred", "conv_inf_1", "agent_01jxbrc1trfxev5sdp5xk4ra67", 1751802015)
        }
        facts = store.list(CALLER, "factual", 100)
        assert [m.source for m in facts] == ["summary", *["data_collection"] * 3, "evaluation"]
        assert store.search(CALLER, "Does she have kids?", None, 1)[0].text == "Has six children"
        assert store.caller_name(CALLER) == "Maria"

        # Erasure leaves nothing of the caller's words: memories, their history, and the last messages
        # Mem0 keeps as context for the next extraction.
        with closing(sqlite3.connect(tmp_path / "memory" / "history.sqlite3")) as db:
            kept = db.execute("SELECT content FROM messages").fetchall()
        assert any("Winona" in row[0] for row in kept)  # the transcript Mem0 keeps as context, before the erasure
        # Erasing the one call (forget --conversation, retention) takes its words out of that context too.
        store.add_conversation(CALLER, "conv_inf_1", [])
        with closing(sqlite3.connect(tmp_path / "memory" / "history.sqlite3")) as db:
            assert not any("Winona" in row[0] for row in db.execute("SELECT content FROM messages"))
        assert store.list(CALLER, "semantic", 100) == []
        assert store.delete_caller(CALLER) == 0
        assert store.list(CALLER, None, 100) == []
    finally:
        store.close()
    history = sqlite3.connect(tmp_path / "memory" / "history.sqlite3")
    rows = [*history.execute("SELECT * FROM history"), *history.execute("SELECT * FROM messages")]
    stored = " ".join(str(value) for row in rows for value in row)
    assert "Winona" not in stored and "Six of them" not in stored


def test_an_llm_that_fails_fails_the_job_for_a_retry_and_stores_nothing_of_it(
    tmp_path: Path, embedder: Any, llm: tuple[str, LlmState]
) -> None:
    from services.memory.domain import build_conversation_memories
    from services.memory.errors import MemoryUnavailable

    url, state = llm
    state.fail_next.extend([500] * 10)  # more than the OpenAI client's own retries
    store = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder, llm=LlmEndpoint(url, "m"))
    try:
        items = build_conversation_memories(call_envelope("conv_inf_2", CALLER, TURNS)["data"], infer=True).items
        with pytest.raises(MemoryUnavailable):
            store.add_conversation(CALLER, "conv_inf_2", items)
        assert store.list(CALLER, "semantic", 100) == []
    finally:
        store.close()


def test_the_settings_named_in_the_readme_configure_oss_inference(
    tmp_path: Path, llm: tuple[str, LlmState], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = llm
    for name, value in {
        "CALLVAULT_MEMORY_BACKEND": "oss",
        "CALLVAULT_MEMORY_INFER": "true",
        "CALLVAULT_MEMORY_LLM_BASE_URL": url,
        "CALLVAULT_MEMORY_LLM_MODEL": "qwen2.5:7b",
    }.items():
        monkeypatch.setenv(name, value)
    store = build_memory_store(Settings(data_dir=tmp_path))
    try:
        from services.memory.domain import build_conversation_memories

        items = build_conversation_memories(call_envelope("conv_inf_3", CALLER, TURNS)["data"], infer=True).items
        store.add_conversation(CALLER, "conv_inf_3", items)
        assert [r["model"] for r in state.requests] == ["qwen2.5:7b"]
        assert state.requests[0]["authorization"] == "Bearer unused"  # Ollama and friends want no key
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()

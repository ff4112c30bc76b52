"""Caller memory through the real `callvault serve`: webhook in, memories and a personal greeting out."""

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import AUDIO, TRANSCRIPTION, TRANSCRIPTION_WEB, fixture_bytes, serve_archive, signed_headers

pytestmark = pytest.mark.e2e
CALLER = "+16125550142"


def _wait_for(fetch: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_serve_turns_an_archived_call_into_caller_memories(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {"CALLVAULT_MEMORY_BACKEND": "oss", "CALLVAULT_AGENT_WEBHOOK_SECRET": "asec_e2e"}
    with serve_archive(data_dir, env=env) as served, httpx.Client(base_url=served.url, timeout=30) as http:
        for name in (AUDIO, TRANSCRIPTION, TRANSCRIPTION_WEB):
            body = fixture_bytes(name)
            assert http.post("/webhooks/elevenlabs", content=body, headers=signed_headers(body)).status_code == 200
        auth = {"Authorization": f"Bearer {(data_dir / 'api-key').read_text().strip()}"}

        def memories() -> list[dict[str, Any]]:
            response = http.get(f"/callers/{CALLER}/memories", params={"limit": 50}, headers=auth)
            assert response.status_code == 200
            items: list[dict[str, Any]] = response.json()["items"]
            return items

        def statuses() -> dict[str, Any]:
            # Memories become searchable one by one; the row says "done" once the whole job finished.
            rows = {c["conversation_id"]: c for c in http.get("/calls", headers=auth).json()["items"]}
            return rows if rows["conv_01jzfrjvcce0vsea1fcbpp9p04"]["memory_status"] == "done" else {}

        rows = _wait_for(statuses)
        assert rows, served.logs()
        assert rows["conv_01jzfrjvcce0vsea1fcbpp9p04"]["memory_status"] == "done"
        items = memories()
        assert {i["conversation_id"] for i in items} == {"conv_01jzfrjvcce0vsea1fcbpp9p04"}
        # The fixture's only turn is the agent's greeting: its memories are the five facts, all about the caller.
        assert [(i["type"], i["role"]) for i in items] == [("factual", "user")] * 5
        assert not any(i["text"].startswith("Hello, Maria.") for i in items)
        assert rows["conv_01jzfrjvcce0vsea1fcbpp9p06"]["memory_status"] == "skipped_no_phone"

        greeting = http.post(
            "/webhooks/elevenlabs/conversation-init",
            json={"caller_id": CALLER, "agent_id": "agent_x", "called_number": "+16125550100", "call_sid": "CA1"},
            headers={"X-CallVault-Secret": "asec_e2e"},
        )
        assert greeting.status_code == 200
        variables = greeting.json()["dynamic_variables"]
        assert (variables["caller_name"], variables["caller_past_calls"]) == ("Maria", 1)
        refused = http.post("/webhooks/elevenlabs/conversation-init", json={"caller_id": CALLER})
        assert refused.status_code == 401

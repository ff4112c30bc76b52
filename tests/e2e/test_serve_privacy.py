"""Erasure through the real `callvault serve` with caller memory on: after DELETE /callers/{phone},
nothing of the caller is found by any route, the conversation-init webhook, the memory API, a file
listing or SQL; redelivered webhooks store nothing; a new call from the number is archived; the
audit trail records it and verifies; `callvault verify` is clean."""

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.memory.support import call_envelope
from tests.support import AUDIO, TRANSCRIPTION, TRANSCRIPTION_WEB, fixture_bytes, serve_archive, signed_headers

pytestmark = pytest.mark.e2e
CALLER = "+16125550142"
CALL_ID = "conv_01jzfrjvcce0vsea1fcbpp9p04"
WEB_ID = "conv_01jzfrjvcce0vsea1fcbpp9p06"


def _wait_for(fetch: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def _files(data_dir: Path) -> list[str]:
    return sorted(p.relative_to(data_dir).as_posix() for p in (data_dir / "archive").rglob("*") if p.is_file())


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"CALLVAULT_MEMORY_BACKEND": "none", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_serve_erases_a_caller_everywhere_and_keeps_them_erased(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {"CALLVAULT_MEMORY_BACKEND": "oss", "CALLVAULT_AGENT_WEBHOOK_SECRET": "asec_e2e"}
    with serve_archive(data_dir, env=env) as served, httpx.Client(base_url=served.url, timeout=60) as http:
        for name in (AUDIO, TRANSCRIPTION, TRANSCRIPTION_WEB):
            body = fixture_bytes(name)
            assert http.post("/webhooks/elevenlabs", content=body, headers=signed_headers(body)).status_code == 200
        auth = {"Authorization": f"Bearer {(data_dir / 'api-key').read_text().strip()}"}

        def memories() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = http.get(f"/callers/{CALLER}/memories", headers=auth).json()["items"]
            return items

        def greeting() -> dict[str, Any]:
            answer = http.post(
                "/webhooks/elevenlabs/conversation-init",
                json={"caller_id": CALLER, "agent_id": "agent_x", "called_number": "+16125550100", "call_sid": "CA1"},
                headers={"X-CallVault-Secret": "asec_e2e"},
            )
            assert answer.status_code == 200
            variables: dict[str, Any] = answer.json()["dynamic_variables"]
            return variables

        assert _wait_for(memories), served.logs()
        assert greeting()["caller_past_calls"] == 1
        web_before = (data_dir / "archive" / "unknown" / f"{WEB_ID}.json").read_bytes()

        erased = http.delete(f"/callers/{CALLER}", headers=auth)
        assert erased.status_code == 200, erased.text
        assert erased.json()["conversations"] == 1 and erased.json()["memories"] >= 1

        assert http.get(f"/calls/{CALL_ID}", headers=auth).status_code == 404
        assert http.get("/calls", params={"phone": CALLER}, headers=auth).json()["items"] == []
        assert memories() == []
        assert greeting().get("caller_past_calls") in (None, 0)
        assert "caller_name" not in greeting() or greeting()["caller_name"] in (None, "")
        assert _files(data_dir) == [f"archive/unknown/{WEB_ID}.json"]
        assert (data_dir / "archive" / "unknown" / f"{WEB_ID}.json").read_bytes() == web_before
        analytics = b"".join(p.read_bytes() for p in (data_dir / "analytics").rglob("*") if p.is_file())
        assert CALL_ID.encode() not in analytics  # gzip'd, so also checked through SQL below

        for name in (TRANSCRIPTION, AUDIO):  # ElevenLabs retries: answered 200, nothing stored
            body = fixture_bytes(name)
            retried = http.post("/webhooks/elevenlabs", content=body, headers=signed_headers(body))
            assert retried.status_code == 200 and retried.json()["status"] == "erased"
        new_call = orjson.dumps(call_envelope("conv_after_erasure", CALLER))
        assert (
            http.post("/webhooks/elevenlabs", content=new_call, headers=signed_headers(new_call)).json()["status"]
            == "stored"
        )
        assert [
            c["conversation_id"] for c in http.get("/calls", params={"phone": CALLER}, headers=auth).json()["items"]
        ] == ["conv_after_erasure"]
        audit = http.get("/audit", params={"conversation": CALL_ID}, headers=auth).json()
        assert [i["action"] for i in audit["items"]] == ["erase"] and audit["chain"]["ok"]
        reads = [i for i in http.get("/audit", headers=auth).json()["items"] if i["action"] == "memory_read"]
        assert reads and all(i["detail"] == {"phone": "*******0142"} and i["subjects"] == [] for i in reads)

    sql = _cli(
        data_dir,
        "sql",
        "SELECT count(*) AS n FROM messages WHERE conversation_id = 'conv_01jzfrjvcce0vsea1fcbpp9p04'",
        "--format",
        "json",
    )
    assert sql.returncode == 0 and json.loads(sql.stdout)[0]["n"] == 0, sql.stderr
    verify = _cli(data_dir, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    chain = _cli(data_dir, "audit", "--verify")
    assert chain.returncode == 0, chain.stderr

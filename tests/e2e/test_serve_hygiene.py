"""Start-up hygiene through the real `callvault serve`: what a kill -9 leaves behind is gone after a
restart, and every file CallVault keeps locally is readable by its owner only.

A temp file counts as a crash's leftover once it is older than ``TEMP_GRACE_SECS``; a restart "that
much later" is simulated by setting modification times back with ``os.utime``, never by waiting.
"""

import base64
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.local.hygiene import TEMP_GRACE_SECS
from tests.support import (
    AUDIO,
    TRANSCRIPTION,
    TRANSCRIPTION_WEB,
    ServedArchive,
    fixture_bytes,
    fixture_json,
    serve_archive,
    signed_headers,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

WEBHOOK = "/webhooks/elevenlabs"
PHONE_DIGITS = "16125550142"
CALL_ID = "conv_01jzfrjvcce0vsea1fcbpp9p04"
LONG_AGO = TEMP_GRACE_SECS + 120


def _post(http: httpx.Client, served: ServedArchive, body: bytes) -> httpx.Response:
    return http.post(served.url + WEBHOOK, content=body, headers=signed_headers(body))


def _kill(served: ServedArchive) -> None:
    served.process.send_signal(signal.SIGKILL)
    served.process.wait(timeout=30)


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def _age_everything(data_dir: Path, seconds: float) -> None:
    """As if the restart came ``seconds`` later: every entry under archive/ and analytics/, folders last."""
    for root in (data_dir / "archive", data_dir / "analytics"):
        entries = sorted(root.rglob("*"), key=lambda p: (p.is_dir(), -len(p.parts)))
        for entry in entries:
            _age(entry, seconds)


def _leftovers(data_dir: Path) -> list[str]:
    """Temp files anywhere, and empty folders under archive/ and analytics/ (the roots excepted)."""
    found = [str(p) for p in data_dir.rglob(".tmp-*")]
    for root in (data_dir / "archive", data_dir / "analytics"):
        found += [str(p) for p in root.rglob("*") if p.is_dir() and not any(p.iterdir())]
    return found


def _prepared_line(served: ServedArchive) -> dict[str, Any]:
    """The one log line `serve` writes about the sweep."""
    lines = [json.loads(line) for line in served.logs().splitlines() if line.startswith("{")]
    prepared = [line for line in lines if line.get("message") == "data dir prepared"]
    assert len(prepared) == 1, served.logs()
    line: dict[str, Any] = prepared[0]
    return line


def _with_conversation_id(name: str, conversation_id: str, **data: Any) -> bytes:
    document = fixture_json(name)
    document["data"].update(conversation_id=conversation_id, **data)
    return json.dumps(document).encode()


def test_serve_restart_after_kill_9_removes_stale_temp_files_and_empty_folders(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    transcript = fixture_bytes(TRANSCRIPTION)
    with serve_archive(data_dir) as served, httpx.Client(timeout=30) as http:
        assert _post(http, served, transcript).status_code == 200
        stored = (data_dir / "archive" / PHONE_DIGITS / f"{CALL_ID}.json").read_bytes()
        # What a kill -9 in the middle of writes leaves: temp copies beside objects (a transcript, a
        # claimed analytics object), a temp file alone in a folder, and a folder a failed write made.
        partition = next((data_dir / "analytics" / "calls").iterdir())
        planted = [
            data_dir / "archive" / PHONE_DIGITS / ".tmp-k2j3h4g5",
            data_dir / "archive" / "_pending-audio" / ".tmp-0a1b2c3d",
            partition / ".tmp-claim-5e6f7a8b9c0d",
        ]
        for path in planted:
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(stored)
        empty_phone_folder = data_dir / "archive" / "16125550177"
        empty_phone_folder.mkdir()
        for path in [*planted, empty_phone_folder, planted[1].parent]:
            _age(path, LONG_AGO)
        _kill(served)

    with serve_archive(data_dir) as served, httpx.Client(timeout=30) as http:
        assert _leftovers(data_dir) == []
        assert (data_dir / "archive" / PHONE_DIGITS / f"{CALL_ID}.json").read_bytes() == stored
        assert not empty_phone_folder.exists() and (data_dir / "archive").is_dir()
        line = _prepared_line(served)
        assert (line["temp_files_removed"], line["empty_folders_removed"], line["failed"]) == (3, 2, 0)
        web = fixture_bytes(TRANSCRIPTION_WEB)
        assert _post(http, served, web).status_code == 200  # and it serves as before


def test_serve_killed_mid_load_of_large_posts_leaves_nothing_after_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    audio = {f"conv_e2e_big_{i}": os.urandom(16 << 20) for i in range(3)}  # ~21 MB webhook bodies
    caught_a_temp_file = False
    with serve_archive(data_dir) as served, httpx.Client(timeout=120) as http:
        for conversation_id in audio:
            assert _post(http, served, _with_conversation_id(TRANSCRIPTION, conversation_id)).status_code == 200
        bodies = [
            _with_conversation_id(AUDIO, cid, full_audio=base64.b64encode(mp3).decode()) for cid, mp3 in audio.items()
        ]

        def send(body: bytes) -> None:
            try:
                with httpx.Client(timeout=120) as own:
                    for _ in range(20):  # keep the server busy writing until it is killed
                        _post(own, served, body)
            except httpx.TransportError:
                pass  # the kill

        senders = [threading.Thread(target=send, args=(body,)) for body in bodies]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not caught_a_temp_file:
            caught_a_temp_file = any((data_dir / "archive").rglob(".tmp-*"))
        _kill(served)  # with temp files lying around if we caught one, at some point of the load if not
        for sender in senders:
            sender.join(timeout=120)

    _age_everything(data_dir, LONG_AGO)
    with serve_archive(data_dir) as served, httpx.Client(timeout=30) as http:
        assert _leftovers(data_dir) == []
        line = _prepared_line(served)
        if caught_a_temp_file:
            assert line["temp_files_removed"] >= 1, line
        for conversation_id, mp3 in audio.items():
            placed = data_dir / "archive" / PHONE_DIGITS / f"{conversation_id}.mp3"
            assert not placed.exists() or placed.read_bytes() == mp3  # whole or absent, never a torn copy
        assert _post(http, served, fixture_bytes(TRANSCRIPTION_WEB)).status_code == 200


def _loose_entries(data_dir: Path) -> dict[str, str]:
    """Every entry (the data dir included) whose mode is not exactly 0600 (files) or 0700 (folders)."""
    wrong: dict[str, str] = {}
    for path in [data_dir, *data_dir.rglob("*")]:
        mode = path.lstat().st_mode
        expected = 0o700 if stat.S_ISDIR(mode) else 0o600
        if stat.S_ISLNK(mode) or stat.S_IMODE(mode) != expected:
            wrong[str(path.relative_to(data_dir))] = oct(stat.S_IMODE(mode))
    return wrong


def _older_version_data_dir(data_dir: Path) -> None:
    """Files as a CallVault before this change left them: 0644 in 0755 folders."""
    previous = os.umask(0o022)
    try:
        (data_dir / "archive" / PHONE_DIGITS).mkdir(parents=True)
        (data_dir / "memory").mkdir()
        with closing(sqlite3.connect(data_dir / "index.sqlite3")) as index:
            index.execute("PRAGMA journal_mode=WAL")
        with closing(sqlite3.connect(data_dir / "memory" / "history.sqlite3")) as history:
            history.execute("CREATE TABLE IF NOT EXISTS old (x INTEGER)")
        (data_dir / "webhook-secret").write_text("wsec_e2e_older_version\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((data_dir / "index.sqlite3").stat().st_mode) == 0o644


def test_serve_with_memory_and_a_report_leave_every_file_0600_and_every_folder_0700(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _older_version_data_dir(data_dir)
    env = {"CALLVAULT_MEMORY_BACKEND": "oss"}  # the default; the test helper turns memory off otherwise
    with serve_archive(data_dir, env=env) as served, httpx.Client(base_url=served.url, timeout=30) as http:
        for name in (AUDIO, TRANSCRIPTION, TRANSCRIPTION_WEB):
            assert _post(http, served, fixture_bytes(name)).status_code == 200
        auth = {"Authorization": f"Bearer {(data_dir / 'api-key').read_text().strip()}"}
        deadline = time.monotonic() + 90
        while http.get(f"/calls/{CALL_ID}", headers=auth).json().get("memory_status") != "done":
            assert time.monotonic() < deadline, served.logs()
            time.sleep(0.2)
        assert http.get("/callers/+16125550142/memories", headers=auth).json()["items"]
        assert (data_dir / "index.sqlite3-wal").exists()  # the WAL a 0644 index would have passed on
        assert _loose_entries(data_dir) == {}, "while serving"

    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    report = subprocess.run(
        [sys.executable, "-m", "services.cli", "report", "calls-per-day", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=child_env,
        timeout=120,
        check=False,
    )
    assert report.returncode == 0, report.stderr
    assert (data_dir / "analytics-cache.duckdb").exists()
    assert (data_dir / "memory" / "qdrant").is_dir() and (data_dir / "memory" / "history.sqlite3").exists()
    assert _loose_entries(data_dir) == {}

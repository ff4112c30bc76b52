"""`callvault serve` stores webhooks in child processes (services/local/ingest_process.py, #10).

Real processes: the children are spawned as `serve` spawns them, killed with SIGKILL, and outlive
nothing when their parent dies.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from services.analytics.tables import partition_of
from services.core.config import Settings
from services.core.wiring import build_storage
from services.local.ingest_process import ChildAnswer, IngestProcesses
from services.memory.outbox import SqliteOutbox
from services.memory.wiring import INDEX_FILE
from tests.support import SECRET, TRANSCRIPTION, fixture_json, process_running, wait_until_ended

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")


def _transcript(conversation_id: str, *, start: int | None = None) -> bytes:
    envelope = fixture_json(TRANSCRIPTION)
    envelope["data"]["conversation_id"] = conversation_id
    if start is not None:
        envelope["data"]["metadata"]["start_time_unix_secs"] = start
        envelope["event_timestamp"] = start + 600
    return json.dumps(envelope).encode()


def _long_call(conversation_id: str) -> bytes:
    envelope = json.loads(_transcript(conversation_id))
    turn = {"role": "user", "message": "and then we moved to the coast " * 3, "time_in_call_secs": 1}
    envelope["data"]["transcript"] = [turn] * 100_000
    return json.dumps(envelope).encode()  # ~10 MB: a child is busy with it for a while


def _verify(settings: Settings) -> subprocess.CompletedProcess[bytes]:
    """`callvault verify` of the data dir, the invariants' oracle, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    env["CALLVAULT_MEMORY_BACKEND"] = "none"
    command = [sys.executable, "-m", "services.cli", "verify", "--json", "--data-dir", str(settings.data_dir)]
    return subprocess.run(command, capture_output=True, env=env, timeout=120, check=False)


@pytest.fixture
def settings(tmp_path: Path, owner_only_umask: None) -> Settings:
    return Settings(data_dir=tmp_path / "data", memory_backend="none")


def test_bodies_are_stored_by_the_children_and_the_parent_hears_of_late_days(settings: Settings) -> None:
    late: list[str] = []
    stored: list[None] = []
    ingest = IngestProcesses(
        settings, [SECRET], memory_jobs=False, on_late_write=late.append, on_stored=lambda: stored.append(None)
    )
    ingest.start()
    try:
        children = ingest.child_pids()
        assert len(children) == 2 and os.getpid() not in children and all(map(process_running, children))
        today = asyncio.run(ingest.store(_transcript("conv_child_today", start=int(time.time()) - 700), None, "req-1"))
        closed_start = int(time.time()) - 10 * 86400
        closed = asyncio.run(ingest.store(_transcript("conv_child_closed", start=closed_start), None, "req-2"))
    finally:
        ingest.close()
    assert today[0] == 200 and today[1]["status"] == "stored", today
    assert closed[0] == 200, closed
    assert late == [partition_of(closed_start)]  # only the closed day, once
    assert len(stored) == 2  # the memory worker hears of each
    index = build_storage(settings).index
    assert index.get("conv_child_today") is not None and index.get("conv_child_closed") is not None
    assert not any(map(process_running, children))  # close() ended them


def test_a_bad_body_gets_the_same_answer_as_in_process(settings: Settings) -> None:
    ingest = IngestProcesses(settings, [SECRET], processes=1, memory_jobs=False)
    try:
        status, body = asyncio.run(ingest.store(b'{"type": "post_call_transcription", "data": 1}', None, "req-bad"))
    finally:
        ingest.close()
    assert status == 400 and body["request_id"] == "req-bad", body


def test_a_child_killed_between_requests_is_replaced_before_the_next_one(settings: Settings) -> None:
    ingest = IngestProcesses(settings, [SECRET], memory_jobs=False)
    ingest.start()
    try:
        first = ingest.child_pids()
        os.kill(first[0], signal.SIGKILL)
        wait_until_ended(first)  # the executor ends the other child once it notices
        stored = asyncio.run(ingest.store(_transcript("conv_after_kill"), None, "req-k"))
        second = ingest.child_pids()
    finally:
        ingest.close()
    assert stored[0] == 200, stored  # nothing of this request reached a dead child
    assert len(second) == 2 and not set(second) & set(first)
    assert build_storage(settings).index.get("conv_after_kill") is not None


def test_a_child_that_dies_during_a_request_answers_503_and_is_replaced(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest = IngestProcesses(settings, [SECRET], memory_jobs=False)
    ingest.start()
    pool = ingest._pool
    assert pool is not None
    first = ingest.child_pids()
    original_submit = pool.submit
    long_call = _long_call("conv_mid_kill")

    def dies_while_storing(fn: Callable[..., ChildAnswer], /, *args: Any) -> Future[ChildAnswer]:
        future = original_submit(fn, *args)
        time.sleep(0.02)
        for child in first:  # whichever took it
            os.kill(child, signal.SIGKILL)
        return future

    try:
        monkeypatch.setattr(pool, "submit", dies_while_storing)
        refused = asyncio.run(ingest.store(long_call, None, "req-mid"))
        monkeypatch.undo()
        stored = asyncio.run(ingest.store(long_call, None, "req-retry"))
        second = ingest.child_pids()
    finally:
        ingest.close()
    assert refused[0] == 503 and refused[1]["error"]["code"] == "storage_unavailable", refused
    assert stored[0] == 200, stored  # the sender's retry, on new children
    assert len(second) == 2 and not set(second) & set(first)
    verified = _verify(settings)  # whatever the killed child had written, the retry completed it
    assert verified.returncode == 0, verified.stdout


def test_requests_held_by_a_broken_pool_answer_503_and_the_next_gets_new_children_once(settings: Settings) -> None:
    ingest = IngestProcesses(settings, [SECRET], memory_jobs=False)
    ingest.start()
    first = ingest.child_pids()
    bodies = [_long_call("conv_held_1"), _long_call("conv_held_2")]

    async def two_held_then_one() -> list[tuple[int, Any]]:
        held = [asyncio.ensure_future(ingest.store(body, None, f"req-held-{n}")) for n, body in enumerate(bodies)]
        await asyncio.sleep(0.05)  # both sent: the two children are busy with them
        for child in first:
            os.kill(child, signal.SIGKILL)
        answers = list(await asyncio.gather(*held))
        answers.append(await ingest.store(_transcript("conv_after_break"), None, "req-next"))
        return answers

    try:
        answers = asyncio.run(two_held_then_one())
        second = ingest.child_pids()
    finally:
        ingest.close()
    assert [status for status, _body in answers] == [503, 503, 200], answers
    assert all(body["error"]["code"] == "storage_unavailable" for _status, body in answers[:2])
    assert len(second) == 2 and not set(second) & set(first)


def test_children_that_cannot_start_answer_503_and_are_tried_again_later(settings: Settings, tmp_path: Path) -> None:
    ingest = IngestProcesses(settings, [SECRET], memory_jobs=False)
    ingest.start()
    working = ingest._args
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    try:
        for child in ingest.child_pids():
            os.kill(child, signal.SIGKILL)
        wait_until_ended(ingest.child_pids())
        ingest._args = (settings.model_copy(update={"data_dir": blocker / "data"}), *working[1:])
        failed = asyncio.run(ingest.store(_transcript("conv_no_children"), None, "req-f1"))
        paused = asyncio.run(ingest.store(_transcript("conv_no_children"), None, "req-f2"))
        ingest._args = working
        ingest._failed_at = float("-inf")  # the pause is over
        stored = asyncio.run(ingest.store(_transcript("conv_no_children"), None, "req-f3"))
    finally:
        ingest.close()
    assert failed[0] == 503 and failed[1]["error"]["code"] == "storage_unavailable", failed
    assert paused[0] == 503, paused  # no new attempt right away: a broken setup is not retried per request
    assert stored[0] == 200, stored
    closed = asyncio.run(ingest.store(_transcript("conv_after_close"), None, "req-closed"))
    assert closed[0] == 503, closed


def test_the_child_records_the_memory_job_with_the_row(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    build_storage(settings)  # the calls table, then the triggers `serve` installs with memory on
    outbox = SqliteOutbox(settings.data_dir / INDEX_FILE)
    outbox.install_call_triggers()
    ingest = IngestProcesses(settings, [SECRET], processes=1, memory_jobs=True)
    try:
        status, _body = asyncio.run(ingest.store(_transcript("conv_child_memory"), None, "req-m"))
    finally:
        ingest.close()
    assert status == 200
    assert outbox.counts().get("pending") == 1


def test_the_children_die_with_their_parent(tmp_path: Path) -> None:
    """kill -9 of `serve`: nothing may go on writing after it (the crash harness restarts the server)."""
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from services.core.config import Settings
        from services.local.ingest_process import IngestProcesses
        settings = Settings(data_dir=Path({str(tmp_path / "data")!r}), memory_backend="none")
        ingest = IngestProcesses(settings, ["s"], memory_jobs=False)
        ingest.start()
        print(*ingest.child_pids(), flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=Path(__file__).parents[2])
    try:
        assert parent.stdout is not None
        children = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(children) == 2 and all(map(process_running, children))
        parent.kill()
        parent.wait()
        wait_until_ended(children)
        assert not any(map(process_running, children))
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()

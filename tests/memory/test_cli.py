"""``callvault memory status | retry | forget`` on a data dir."""

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from services.cli.main import cli
from services.core.adapters.sqlite_call_index import SqliteCallIndex
from services.core.domain import payload
from services.memory.domain import MemoryJob, build_conversation_memories
from services.memory.outbox import SqliteOutbox
from tests.memory.support import CALLER, OTHER_CALLER, call_envelope


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("CALLVAULT_DATA_DIR", "CALLVAULT_BACKEND", "CALLVAULT_MEMORY_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def _failed_jobs(data_dir: Path, *conversation_ids: str) -> SqliteOutbox:
    outbox = SqliteOutbox(data_dir / "index.sqlite3")
    for cid in conversation_ids:
        outbox.enqueue(MemoryJob(cid))
        claimed = outbox.claim(60)
        assert claimed is not None
        outbox.fail(claimed, "memory_unavailable", max_attempts=1, delay_secs=0)
    return outbox


def test_status_counts_jobs_and_lists_failures(runner: CliRunner, tmp_path: Path) -> None:
    outbox = _failed_jobs(tmp_path, "conv_1", "conv_2")
    outbox.enqueue(MemoryJob("conv_3"))
    result = runner.invoke(cli, ["memory", "status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "pending: 1  running: 0  done: 0  failed: 2"
    assert sum("memory_unavailable" in line and "attempts=1" in line for line in lines[1:]) == 2


def test_retry_re_drives_failed_jobs_all_or_one(runner: CliRunner, tmp_path: Path) -> None:
    outbox = _failed_jobs(tmp_path, "conv_1", "conv_2", "conv_3")
    one = runner.invoke(cli, ["memory", "retry", "--data-dir", str(tmp_path), "--conversation-id", "conv_2"])
    assert one.exit_code == 0 and one.output.strip() == "1 failed memory job back to pending"
    rest = runner.invoke(cli, ["memory", "retry", "--data-dir", str(tmp_path)])
    assert rest.output.strip() == "2 failed memory jobs back to pending"
    assert outbox.counts() == {"pending": 3, "running": 0, "done": 0, "failed": 0}
    missing = runner.invoke(cli, ["memory", "retry", "--data-dir", str(tmp_path), "--conversation-id", "nope"])
    assert missing.exit_code == 1


def test_status_without_an_index_says_what_to_do(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["memory", "status", "--data-dir", str(tmp_path / "empty")])
    assert result.exit_code == 1 and f"no archive in {tmp_path / 'empty'} (from --data-dir)" in result.output


def test_forget_erases_one_callers_memories_in_the_offline_store(
    runner: CliRunner, tmp_path: Path, embedder: Any, no_network: None
) -> None:
    from services.memory.mem0_oss import Mem0OssMemoryStore

    SqliteCallIndex(tmp_path / "index.sqlite3").close()  # the data dir of a server that has run
    store = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder)
    for cid, phone in (("conv_1", CALLER), ("conv_2", OTHER_CALLER)):
        store.add_conversation(phone, cid, build_conversation_memories(call_envelope(cid, phone)["data"]).items)
    store.close()  # the CLI opens the folder itself (one process at a time)

    result = runner.invoke(cli, ["memory", "forget", "(612) 555-0142", "--yes", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "erased 5 memories"  # five facts; the agent greeting is no memory

    reopened = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder)
    try:
        assert reopened.list(CALLER, None, 10) == [] and len(reopened.list(OTHER_CALLER, None, 10)) == 5
    finally:
        reopened.close()


def test_forget_of_memories_is_refused_under_a_legal_hold_and_audited_when_done(
    runner: CliRunner, tmp_path: Path, embedder: Any, no_network: None
) -> None:
    """As `callvault forget`: a hold on the caller refuses it, and the erasure is in the audit trail."""
    import json

    from services.memory.mem0_oss import Mem0OssMemoryStore

    SqliteCallIndex(tmp_path / "index.sqlite3").close()
    store = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder)
    store.add_conversation(CALLER, "conv_1", build_conversation_memories(call_envelope("conv_1", CALLER)["data"]).items)
    store.close()
    data_dir = ["--data-dir", str(tmp_path)]
    held = runner.invoke(cli, ["hold", CALLER, "--reason", "case 2026-114", "--json", *data_dir])
    assert held.exit_code == 0, held.output

    refused = runner.invoke(cli, ["memory", "forget", CALLER, "--yes", *data_dir])
    assert refused.exit_code == 1 and "case 2026-114" in refused.output

    hold_id = json.loads(held.output)["id"]
    assert runner.invoke(cli, ["release", hold_id, *data_dir]).exit_code == 0
    done = runner.invoke(cli, ["memory", "forget", CALLER, "--yes", *data_dir])
    assert done.exit_code == 0 and done.output.strip() == "erased 5 memories", done.output

    trail = runner.invoke(cli, ["audit", "--json", *data_dir])
    entries = [json.loads(line) for line in trail.output.splitlines()]
    (erased,) = [entry for entry in entries if entry["action"] == "memory_erase"]
    assert erased["detail"]["phone"] == "*******0142" and erased["actor"].startswith("cli")
    assert CALLER.lstrip("+") not in trail.output  # the number only masked


def test_forget_refuses_something_that_is_not_a_phone_number(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["memory", "forget", "hello", "--yes", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "PHONE" in result.output


def test_show_and_search_read_one_callers_memories_from_the_offline_store(
    runner: CliRunner, tmp_path: Path, embedder: Any, no_network: None
) -> None:
    import orjson

    from services.memory.mem0_oss import Mem0OssMemoryStore

    turns = [
        ("agent", "Where did you grow up?"),
        ("user", "Yes."),
        ("user", "I grew up in Winona, on a farm by the river."),
        ("user", "My sister Rosa still lives in Duluth."),
    ]
    SqliteCallIndex(tmp_path / "index.sqlite3").close()  # the data dir of a server that has run
    store = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder)
    for cid, phone in (("conv_1", CALLER), ("conv_2", OTHER_CALLER)):
        envelope = call_envelope(cid, phone, turns if phone == CALLER else [("user", "I grew up in Lisbon.")])
        store.add_conversation(phone, cid, build_conversation_memories(envelope["data"]).items)
    store.close()  # the CLI opens the folder itself (one process at a time)
    where = ["--data-dir", str(tmp_path)]

    shown = runner.invoke(cli, ["memory", "show", "(612) 555-0142", *where])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert len(lines) == 7  # 5 facts, then the caller's two sentences ("Yes." is none)
    assert all(line.startswith("2025-07-06  conv_1  ") for line in lines)
    assert lines[0].endswith(
        "summary  Call summary: The AI agent greeted Maria, offering to continue a previous story or start a new one."
    )
    assert lines[5:] == [
        "2025-07-06  conv_1  turn  I grew up in Winona, on a farm by the river.",
        "2025-07-06  conv_1  turn  My sister Rosa still lives in Duluth.",
    ]
    said = runner.invoke(cli, ["memory", "show", CALLER, "--type", "semantic", "--json", *where])
    assert [orjson.loads(line)["text"] for line in said.output.splitlines()] == [
        "I grew up in Winona, on a farm by the river.",
        "My sister Rosa still lives in Duluth.",
    ]

    found = runner.invoke(cli, ["memory", "search", CALLER, "where did she grow up", "--limit", "3", "--json", *where])
    assert found.exit_code == 0, found.output
    hits = [orjson.loads(line) for line in found.output.splitlines()]
    assert len(hits) == 3 and hits[0]["text"] == "I grew up in Winona, on a farm by the river."
    assert hits[0]["score"] > hits[1]["score"] and {h["conversation_id"] for h in hits} == {"conv_1"}

    nobody = runner.invoke(cli, ["memory", "show", "+16125550999", *where])
    assert nobody.exit_code == 0 and nobody.output.strip() == "no memories"
    blank = runner.invoke(cli, ["memory", "search", CALLER, "  ", *where])
    assert blank.exit_code == 2


def test_show_prints_a_memory_with_terminal_control_characters_as_question_marks(
    runner: CliRunner, tmp_path: Path, embedder: Any, no_network: None
) -> None:
    """A caller's words reach memories verbatim: an escape sequence in them must not drive the
    operator's terminal (retitle it, move the cursor, hide what follows)."""
    from services.memory.mem0_oss import Mem0OssMemoryStore

    hostile = "My name is Ana\x1b]0;owned\x07\x1b[2J and I live in Duluth."
    SqliteCallIndex(tmp_path / "index.sqlite3").close()
    store = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder)
    envelope = call_envelope("conv_1", CALLER, [("user", hostile)])
    store.add_conversation(CALLER, "conv_1", build_conversation_memories(envelope["data"]).items)
    store.close()

    shown = runner.invoke(cli, ["memory", "show", CALLER, "--type", "semantic", "--data-dir", str(tmp_path)])

    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.output and "\x07" not in shown.output
    assert shown.output.rstrip().endswith("My name is Ana?]0;owned??[2J and I live in Duluth.")


def test_rerun_queues_every_archived_calls_job_again_or_one_callers(runner: CliRunner, tmp_path: Path) -> None:
    import time

    from services.core.adapters.fs_blob_store import FsBlobStore
    from services.core.adapters.sqlite_call_index import SqliteCallIndex
    from services.core.domain import payload
    from services.ingest.service import Archiver
    from services.memory.jobs import JobProcessor, MemoryJobs, NullStatusSink
    from services.memory.worker import MemoryWorker
    from tests.memory.support import FakeMemoryStore, envelope_bytes

    index = SqliteCallIndex(tmp_path / "index.sqlite3")
    blobs = FsBlobStore(tmp_path / "archive")
    outbox = SqliteOutbox(tmp_path / "index.sqlite3")
    archiver = Archiver(blobs, index, time.time, memory_jobs=MemoryJobs(outbox, index, time.time))
    for cid, phone in (("conv_1", CALLER), ("conv_2", CALLER), ("conv_3", OTHER_CALLER), ("conv_web", None)):
        archiver.archive(payload.parse_envelope(envelope_bytes(call_envelope(cid, phone))))
    worker = MemoryWorker(outbox, JobProcessor(blobs, index, FakeMemoryStore()), NullStatusSink())
    while worker.run_once():
        pass
    assert outbox.counts()["pending"] == 0 and outbox.counts()["done"] == 3

    one = runner.invoke(cli, ["memory", "rerun", "--phone", "(612) 555-0177", "--data-dir", str(tmp_path)])
    assert one.exit_code == 0 and one.output.strip() == "1 memory job queued"
    assert [r.conversation_id for r in outbox.rows("pending", 10)] == ["conv_3"]
    index.set_memory_status("conv_2", "expired", 1)  # a retention rule removed its memories: not rebuilt
    every = runner.invoke(cli, ["memory", "rerun", "--data-dir", str(tmp_path)])
    assert every.output.strip() == "2 memory jobs queued"  # the web call has no caller: no job
    assert outbox.counts()["pending"] == 2
    assert index.get("conv_1").memory_status == "pending"  # type: ignore[union-attr]
    assert index.get("conv_2").memory_status == "expired"  # type: ignore[union-attr]


def test_forget_drops_the_callers_waiting_memory_jobs_so_serve_does_not_write_the_memories_again(
    runner: CliRunner, tmp_path: Path, embedder: Any, no_network: None
) -> None:
    """Jobs of the caller's calls still in the outbox (pending, or failed and waiting for `memory retry`)
    would rebuild the erased memories at serve's next start; another caller's job stays."""
    from services.memory.mem0_oss import Mem0OssMemoryStore

    index = SqliteCallIndex(tmp_path / "index.sqlite3")
    for cid, phone in (("conv_1", CALLER), ("conv_2", CALLER), ("conv_3", OTHER_CALLER)):
        record = payload.call_from_transcription(call_envelope(cid, phone)["data"], 1751802025, "US")
        index.save_call(record, 1751802100)
    index.close()
    store = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder)
    store.add_conversation(CALLER, "conv_1", build_conversation_memories(call_envelope("conv_1", CALLER)["data"]).items)
    store.close()
    outbox = _failed_jobs(tmp_path, "conv_2")
    outbox.enqueue(MemoryJob("conv_1"))
    outbox.enqueue(MemoryJob("conv_3"))

    result = runner.invoke(cli, ["memory", "forget", CALLER, "--yes", "--data-dir", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert outbox.get("conv_1") is None and outbox.get("conv_2") is None
    assert outbox.get("conv_3") is not None


def test_forget_is_final_for_the_callers_archived_calls_a_rerun_or_a_redelivery_rebuilds_nothing(
    runner: CliRunner, tmp_path: Path, embedder: Any, no_network: None
) -> None:
    """After `memory forget` each of the caller's calls says its memories are gone for good (``expired``,
    as retention leaves it, final on every index): `memory rerun` queues no job for them, a redelivery's
    outbox trigger records none, and a job already on its way writes nothing back (the same row check
    test_sqs_handler and test_outbox pin for retention). Another caller's call keeps its status."""
    from services.memory.mem0_oss import Mem0OssMemoryStore

    index = SqliteCallIndex(tmp_path / "index.sqlite3")
    for cid, phone in (("conv_1", CALLER), ("conv_2", CALLER), ("conv_3", OTHER_CALLER)):
        record = payload.call_from_transcription(call_envelope(cid, phone)["data"], 1751802025, "US")
        record.memory_status, record.transcript_key = "done", f"{phone.lstrip('+')}/{cid}.json"
        index.save_call(record, 1751802100)
    index.close()
    store = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder)
    store.add_conversation(CALLER, "conv_1", build_conversation_memories(call_envelope("conv_1", CALLER)["data"]).items)
    store.close()

    result = runner.invoke(cli, ["memory", "forget", CALLER, "--yes", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output

    index = SqliteCallIndex(tmp_path / "index.sqlite3")
    try:
        assert [index.get(cid).memory_status for cid in ("conv_1", "conv_2", "conv_3")] == [  # type: ignore[union-attr]
            "expired",
            "expired",
            "done",
        ]
        rerun = runner.invoke(cli, ["memory", "rerun", "--data-dir", str(tmp_path)])
        assert rerun.output.strip() == "1 memory job queued"  # conv_3 only
        outbox = SqliteOutbox(tmp_path / "index.sqlite3")
        assert outbox.get("conv_1") is None and outbox.get("conv_2") is None
        # A redelivery of a forgotten call (a webhook retry, a sync): the row keeps "expired", no job.
        again = payload.call_from_transcription(call_envelope("conv_1", CALLER)["data"], 1751802999, "US")
        again.memory_status = "pending"
        index.save_call(again, 1751803000)
        assert index.get("conv_1").memory_status == "expired"  # type: ignore[union-attr]
        assert outbox.get("conv_1") is None
    finally:
        index.close()


def test_forget_that_fails_before_erasing_leaves_the_rows_for_retention(
    runner: CliRunner, tmp_path: Path, embedder: Any, no_network: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Erase, mark, erase again (as retention): a store failing on the first erase leaves the calls'
    memory status as it was, so a retention rule still expires those memories (an `expired` mark over
    memories still stored would hide them from it for good); the command says to run it again."""
    from services.core.domain.errors import StorageUnavailable
    from services.memory.mem0_oss import Mem0OssMemoryStore

    index = SqliteCallIndex(tmp_path / "index.sqlite3")
    record = payload.call_from_transcription(call_envelope("conv_1", CALLER)["data"], 1751802025, "US")
    record.memory_status = "done"
    index.save_call(record, 1751802100)
    index.close()

    def unavailable(self: Any, phone: str) -> int:
        raise StorageUnavailable("the memory store is not answering; retry")

    monkeypatch.setattr(Mem0OssMemoryStore, "delete_caller", unavailable)
    result = runner.invoke(cli, ["memory", "forget", CALLER, "--yes", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "retry" in result.output

    index = SqliteCallIndex(tmp_path / "index.sqlite3")
    try:
        assert index.get("conv_1").memory_status == "done"  # type: ignore[union-attr]
    finally:
        index.close()


def test_forget_takes_the_memories_of_a_call_filed_under_another_number_that_reported_this_one(
    runner: CliRunner, tmp_path: Path, embedder: Any, no_network: None
) -> None:
    """As `callvault forget`: a call filed under another number whose later event reported the erased
    one (its row's ``reported_phone``) is planned, held and audited with the caller; its memories are kept
    under the number it is filed under, so they go as that one call's. The other caller keeps their own."""
    from services.memory.mem0_oss import Mem0OssMemoryStore

    index = SqliteCallIndex(tmp_path / "index.sqlite3")
    for cid, reported in (("conv_moved", CALLER), ("conv_theirs", None)):
        record = payload.call_from_transcription(call_envelope(cid, OTHER_CALLER)["data"], 1751802025, "US")
        record.reported_phone = reported
        index.save_call(record, 1751802100)
    index.close()
    store = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder)
    for cid in ("conv_moved", "conv_theirs"):
        memories = build_conversation_memories(call_envelope(cid, OTHER_CALLER)["data"])
        store.add_conversation(OTHER_CALLER, cid, memories.items)
    store.close()

    result = runner.invoke(cli, ["memory", "forget", CALLER, "--yes", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "erased 5 memories"

    reopened = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder)
    try:
        assert {m.conversation_id for m in reopened.list(OTHER_CALLER, None, 50)} == {"conv_theirs"}
    finally:
        reopened.close()

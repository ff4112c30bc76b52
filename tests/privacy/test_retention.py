"""Retention rules: per kind and agent, dry run equals the run, held calls survive both and are
expired once released, a second run finds nothing, bad rule files are refused."""

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from services.analytics.erasure import AnalyticsErasure
from services.cli.main import cli
from services.core.adapters.memory import MemoryAuditLog, MemoryBlobStore, MemoryCallIndex, MemoryHolds
from services.core.config import Settings
from services.core.domain import payload
from services.core.domain.errors import StorageUnavailable
from services.core.wiring import build_storage
from services.ingest.service import Archiver
from services.local.app import create_local_app
from services.memory.domain import MemoryItem, MemoryJob
from services.memory.erasure import MemoryErasure
from services.memory.jobs import EXPIRED, JobProcessor, MemoryJobs
from services.memory.local import build_local_memory
from services.privacy.audit import Auditor
from services.privacy.holds import HoldBook
from services.privacy.retention import DAY, RetentionConfigError, RetentionRules, RetentionRunner, Rule
from services.privacy.service import Eraser
from services.privacy.wiring import build_retention
from tests.memory.support import FakeMemoryStore, call_envelope
from tests.support import SECRET, signed_headers

from .conftest import ADMIN, T0, World

PHONE = "+16125550142"
NOW = T0 + 400 * DAY
RULES = RetentionRules(Rule(transcripts_days=365, memories_days=90), {"agent_short": Rule(transcripts_days=30)})


def _call(world: World, cid: str, age_days: int, agent: str | None = None) -> None:
    envelope = call_envelope(cid, PHONE, started_at=NOW - age_days * DAY, event_at=NOW - age_days * DAY + 60)
    if agent is not None:
        envelope["data"]["agent_id"] = agent
    assert world.deliver(envelope) == "stored"


def _setup() -> tuple[World, RetentionRunner, FakeMemoryStore, HoldBook]:
    world = World("memory", MemoryBlobStore(), MemoryCallIndex(), MemoryBlobStore(), now=float(NOW))
    _call(world, "conv_old", 380)  # default rule: past 365 days, the whole call goes
    _call(world, "conv_short", 40, agent="agent_short")  # its agent keeps 30 days
    _call(world, "conv_mid", 100)  # past 90 days: only its memories go
    _call(world, "conv_new", 5)
    store = FakeMemoryStore()
    for cid in ("conv_old", "conv_mid", "conv_new"):
        store.add_conversation(PHONE, cid, [MemoryItem("tea", "user", "semantic", {"conversation_id": cid})])
    audit = Auditor(MemoryAuditLog(), world.erased, clock=world.clock)
    book = HoldBook(MemoryHolds(), world.erased, audit, clock=world.clock)
    memories = MemoryErasure(store)
    eraser = Eraser(
        world.blobs, world.index, [AnalyticsErasure(world.analytics), memories], erased=world.erased,
        clock=world.clock, audit=audit, holds=book,
    )  # fmt: skip
    runner = RetentionRunner(world.index, eraser, RULES, memories=memories, holds=book, audit=audit, clock=world.clock)
    return world, runner, store, book


def test_retention_applies_each_kind_and_agent_rule_and_the_dry_run_equals_the_run() -> None:
    world, runner, store, _book = _setup()
    listing = world.archive_listing()

    planned = runner.run(dry_run=True)
    assert world.archive_listing() == listing and store.count(PHONE) == 3
    done = runner.run()

    assert sorted(planned.calls_expired) == sorted(done.calls_expired) == ["conv_old", "conv_short"]
    assert planned.memories_expired == done.memories_expired == ["conv_mid"]
    assert world.index.get("conv_old") is None and world.index.get("conv_short") is None
    assert not [k for k in world.archive_listing() if "conv_old" in k or "conv_short" in k]
    assert {r["conversation_id"] for r in world.analytics_rows()} == {"conv_mid", "conv_new"}
    assert store.count(PHONE, "conv_mid") == 0 and store.count(PHONE, "conv_new") == 1
    mid = world.index.get("conv_mid")
    assert mid is not None and mid.transcript_key is not None and mid.memory_status == "expired"
    assert world.erased.is_erased("conv_old") and not world.erased.is_erased("conv_mid")

    again = runner.run()
    assert (again.calls_expired, again.memories_expired) == ([], [])
    assert runner.audit is not None
    assert [e.action for e in runner.audit.entries()] == ["retention_run", "erase", "retention_run"]


def test_held_calls_survive_retention_and_expire_once_released() -> None:
    world, runner, _store, book = _setup()
    hold = book.place(reason="case 9", actor="cli:alice", conversation_id="conv_old")

    planned, done = runner.run(dry_run=True), runner.run()

    assert planned.held == done.held == 1
    assert "conv_old" not in done.calls_expired and world.index.get("conv_old") is not None
    book.release(hold.id, actor="cli:alice")
    assert runner.run().calls_expired == ["conv_old"]
    assert world.index.get("conv_old") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[default]\nanalytics_days = 0\n", "1 to 100000"),
        ("[default]\nkeep = 3\n", "unknown key"),
        ("[default]\ntranscripts_days = 0\n", "1 to 100000"),
        ("[default]\ntranscripts_days = true\n", "whole number"),
        ("[default]\ntranscripts_days = -5\n", "1 to 100000"),
        ("[default]\nmemories_days = 9223372036854775807\n", "1 to 100000"),
        ('[agents."agent_x"]\naudio_days = 100001\n', "1 to 100000"),
        ("[default]\ntranscripts_days = 30.5\n", "whole number"),
        ("[retain]\n", "unknown section"),
        ("[default\n", "not valid TOML"),
    ],
)
def test_bad_rule_files_are_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "retention.toml"
    path.write_text(text)
    with pytest.raises(RetentionConfigError, match=message):
        RetentionRules.load(path)


def test_no_rules_file_keeps_everything(tmp_path: Path) -> None:
    assert RetentionRules.load(tmp_path / "missing.toml").shortest_days() is None


def test_retention_command_dry_run_then_run(client: TestClient, data_dir: Path) -> None:
    (data_dir / "retention.toml").write_text('[default]\ntranscripts_days = 400\n[agents."agent_other"]\n')
    runner, env = CliRunner(), {"CALLVAULT_MEMORY_BACKEND": "none"}
    mistyped = ["retention", "run", "--rules", str(data_dir / "retention.tml"), "--data-dir", str(data_dir)]
    refused = runner.invoke(cli, mistyped, env=env)  # not "no rules, nothing expires"
    assert refused.exit_code == 2 and "does not exist" in refused.output

    dry = runner.invoke(cli, ["retention", "run", "--dry-run", "--json", "--data-dir", str(data_dir)], env=env)
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["calls"] == 2  # the two fixture calls started in July 2025
    assert len(client.get("/calls", headers={"Authorization": f"Bearer {ADMIN}"}).json()["items"]) == 2

    done = runner.invoke(cli, ["retention", "run", "--data-dir", str(data_dir)], env=env)
    assert done.exit_code == 0, done.output
    assert "expired 2 call(s)" in done.output
    assert client.get("/calls", headers={"Authorization": f"Bearer {ADMIN}"}).json()["items"] == []
    assert runner.invoke(cli, ["verify", "--data-dir", str(data_dir)], env=env).exit_code == 0
    audit = runner.invoke(cli, ["audit", "--json", "--verify", "--data-dir", str(data_dir)], env=env)
    assert [json.loads(line)["action"] for line in audit.stdout.splitlines()] == ["retention_run", "erase"]


def _audio_runner(world: World) -> RetentionRunner:
    """A run that expires audio after 60 days, with the analytics' has_audio flag kept in step."""
    eraser = Eraser(world.blobs, world.index, [AnalyticsErasure(world.analytics)], erased=world.erased)
    return RetentionRunner(
        world.index,
        eraser,
        RetentionRules(Rule(audio_days=60)),
        blobs=world.blobs,
        audio_flags=world.archiver.analytics,
        clock=world.clock,
    )


def test_audio_retention_removes_the_audio_for_good_and_keeps_the_call() -> None:
    from services.ingest.verify import ArchiveVerifier

    from .conftest import audio_envelope

    world = World("memory", MemoryBlobStore(), MemoryCallIndex(), MemoryBlobStore(), now=float(NOW))
    for cid, age in (("conv_old_audio", 100), ("conv_new_audio", 5)):
        _call(world, cid, age)
        assert world.deliver(audio_envelope(cid, NOW - age * DAY + 61)) == "stored"
    world.compact()  # conv_old_audio's day is merged: its analytics row lives in the day object
    runner = _audio_runner(world)

    planned = runner.run(dry_run=True)
    assert world.index.get("conv_old_audio").audio_key is not None  # type: ignore[union-attr]
    done = runner.run()

    assert planned.audio_expired == done.audio_expired == ["conv_old_audio"] and done.calls_expired == []
    row = world.index.get("conv_old_audio")
    assert row is not None and row.transcript_key is not None
    assert (row.audio_key, row.has_audio, row.expects_audio) == (None, False, False)
    assert not [k for k in world.blobs.list_keys() if k.endswith("conv_old_audio.mp3")]
    assert world.index.get("conv_new_audio").audio_key is not None  # type: ignore[union-attr]
    world.compact()
    flags = {r["conversation_id"]: r["has_audio"] for r in world.analytics_rows() if "has_audio" in r}
    assert flags == {"conv_old_audio": False, "conv_new_audio": True}
    assert ArchiveVerifier(world.archiver, clock=world.clock).run().findings == []

    # It stays gone: a redelivered audio webhook, a fetch from the API, a redelivered transcript.
    assert world.deliver(audio_envelope("conv_old_audio", NOW)) == "stale"
    assert world.archiver.archive_audio_stream("conv_old_audio", None, lambda: iter([b"ID3"])) == "stale"
    redelivered = call_envelope("conv_old_audio", PHONE, started_at=NOW - 100 * DAY, event_at=NOW)
    assert world.deliver(redelivered) == "stored"
    assert world.index.get("conv_old_audio").expects_audio is False  # type: ignore[union-attr]
    assert not [k for k in world.blobs.list_keys() if k.endswith("conv_old_audio.mp3")]
    assert runner.run().audio_expired == []
    assert ArchiveVerifier(world.archiver, clock=world.clock).run().findings == []


class _RetentionDuringRead(MemoryCallIndex):
    """Runs ``then`` once, right after the next read of a row returns: the delivery that read the row
    goes on writing as if nothing happened, as a delivery racing a retention run would."""

    then: Any = None

    def get(self, conversation_id: str) -> Any:
        row = super().get(conversation_id)
        if self.then is not None:
            then, self.then = self.then, None
            then()
        return row


def test_audio_arriving_while_a_run_expires_it_is_refused_and_purged() -> None:
    from services.ingest.verify import ArchiveVerifier

    from .conftest import audio_envelope

    index = _RetentionDuringRead()
    world = World("memory", MemoryBlobStore(), index, MemoryBlobStore(), now=float(NOW))
    _call(world, "conv_racing", 100)
    assert world.deliver(audio_envelope("conv_racing", NOW - 100 * DAY + 61)) == "stored"
    runner = _audio_runner(world)
    expired: list[list[str]] = []
    index.then = lambda: expired.append(runner.run().audio_expired)

    # A newer audio of the call: read before the run, written after it.
    assert world.deliver(audio_envelope("conv_racing", NOW - 1)) == "stale"

    assert expired == [["conv_racing"]]
    assert not [k for k in world.blobs.list_keys() if k.endswith(".mp3")]
    assert world.index.get("conv_racing").audio_version == "~expired"  # type: ignore[union-attr]
    assert ArchiveVerifier(world.archiver, clock=world.clock).run().findings == []


class _AudioLandsBeforeTheMark(MemoryCallIndex):
    """A delivery's audio object lands between the run's purge and its mark on the row (its record
    then comes after the mark, and is refused)."""

    blobs: Any = None

    def drop_audio(self, conversation_id: str, now: int) -> bool:
        row = self.get(conversation_id)
        assert row is not None and row.archive_prefix is not None
        self.blobs.put_bytes(f"{row.archive_prefix}/{conversation_id}.mp3", b"ID3 landed", "audio/mpeg")
        return super().drop_audio(conversation_id, now)


def test_audio_landing_between_the_runs_purge_and_its_mark_is_purged_by_the_run() -> None:
    from services.ingest.verify import ArchiveVerifier

    from .conftest import audio_envelope

    index = _AudioLandsBeforeTheMark()
    world = World("memory", MemoryBlobStore(), index, MemoryBlobStore(), now=float(NOW))
    index.blobs = world.blobs
    _call(world, "conv_landing", 100)
    assert world.deliver(audio_envelope("conv_landing", NOW - 100 * DAY + 61)) == "stored"
    _audio_runner(world).run()

    assert not [k for k in world.blobs.list_keys() if k.endswith(".mp3")]
    assert ArchiveVerifier(world.archiver, clock=world.clock).run().findings == []


class _NoVersionDeletes(MemoryBlobStore):
    """The archive as the webhook's role on AWS sees it once ``denied``: no ``DeleteObjectVersion``."""

    denied = False

    def purge(self, key: str) -> int:
        if self.denied:
            raise StorageUnavailable("the archive is unavailable (DeleteObjects: AccessDenied)")
        return super().purge(key)


def test_audio_a_delivery_may_not_purge_after_its_expiry_is_answered_and_left_to_verify(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from services.ingest.verify import ArchiveVerifier

    from .conftest import audio_envelope

    index, blobs = _RetentionDuringRead(), _NoVersionDeletes()
    world = World("memory", blobs, index, MemoryBlobStore(), now=float(NOW))
    _call(world, "conv_racing", 100)
    assert world.deliver(audio_envelope("conv_racing", NOW - 100 * DAY + 61)) == "stored"
    runner = _audio_runner(world)

    def run_then_deny() -> None:
        runner.run()
        blobs.denied = True

    index.then = run_then_deny
    # Read before the run, written after it; its purge refused as on AWS: an answer, not a 503.
    assert world.deliver(audio_envelope("conv_racing", NOW - 1)) == "stale"
    (warned,) = [r for r in caplog.records if "callvault verify --repair" in r.getMessage()]
    assert warned.conversation_id == "conv_racing"  # type: ignore[attr-defined]

    blobs.denied = False  # verify runs with rights to purge
    verifier = ArchiveVerifier(world.archiver, clock=world.clock)
    assert [f.kind for f in verifier.run().findings] == ["expired_audio_present"]
    assert [f.repaired for f in verifier.run(repair=True).findings] == [True]
    assert not [k for k in world.blobs.list_keys() if k.endswith(".mp3")]


def test_verify_finds_and_purges_audio_left_after_its_expiry() -> None:
    from services.ingest.verify import ArchiveVerifier

    from .conftest import audio_envelope

    world = World("memory", MemoryBlobStore(), MemoryCallIndex(), MemoryBlobStore(), now=float(NOW))
    _call(world, "conv_left", 100)
    assert world.deliver(audio_envelope("conv_left", NOW - 100 * DAY + 61)) == "stored"
    key = world.index.get("conv_left").audio_key  # type: ignore[union-attr]
    _audio_runner(world).run()
    world.blobs.put_bytes(str(key), b"ID3 left by a crash", "audio/mpeg")  # a delivery killed before its purge

    verifier = ArchiveVerifier(world.archiver, clock=world.clock)
    assert [f.kind for f in verifier.run().findings] == ["expired_audio_present"]
    assert [f.repaired for f in verifier.run(repair=True).findings] == [True]
    assert verifier.run().findings == [] and not [k for k in world.blobs.list_keys() if k.endswith(".mp3")]


class _Queue:
    """An SQS-like job queue: what ingest sends, in order."""

    def __init__(self) -> None:
        self.jobs: list[str] = []

    def enqueue(self, job: Any) -> None:
        self.jobs.append(job.conversation_id)


def test_expired_memories_stay_expired_when_the_call_is_delivered_again(tmp_path: Path) -> None:
    """A webhook retry, a sync of a changed call or an import writes the call again: its memories,
    expired by ``memories_days``, must not be rebuilt (locally the outbox trigger, on AWS the queue)."""
    settings = Settings(data_dir=tmp_path / "data", memory_backend="oss", memory_worker_poll_secs=0.05)
    storage = build_storage(settings)
    store = FakeMemoryStore()
    memory = build_local_memory(settings, storage, agent_secrets=["asec_x"], store=store)
    assert memory is not None
    body = json.dumps(call_envelope("conv_kept", PHONE, [("user", "I grow tomatoes")])).encode()
    app = create_local_app(settings, [SECRET], storage, memory=memory)
    memory.start()
    try:
        with TestClient(app) as client:

            def delivered_and_worked() -> None:
                assert (
                    client.post("/webhooks/elevenlabs", content=body, headers=signed_headers(body)).status_code == 200
                )
                deadline = time.monotonic() + 5
                while (job := memory.outbox.get("conv_kept")) is not None and job.state in ("pending", "running"):
                    assert time.monotonic() < deadline, "the worker never finished the job"
                    time.sleep(0.02)

            delivered_and_worked()
            assert store.count(PHONE, "conv_kept") > 0
            rules = tmp_path / "retention.toml"
            rules.write_text("[default]\nmemories_days = 30\n")
            erasure = MemoryErasure(store, memory.outbox)
            assert build_retention(settings, storage, erasure, rules).run().memories_expired == ["conv_kept"]
            assert store.count(PHONE, "conv_kept") == 0

            delivered_and_worked()  # ElevenLabs retries the webhook
            row = storage.index.get("conv_kept")
            assert row is not None and row.memory_status == "expired"
            assert store.count(PHONE, "conv_kept") == 0
    finally:
        memory.stop(5)

    queue = _Queue()  # on AWS: ingest sends no job for it either
    archiver = Archiver(
        storage.blobs, storage.index, time.time,
        memory_jobs=MemoryJobs(queue, storage.index, time.time, status_in_row=True),
    )  # fmt: skip
    assert archiver.archive(payload.parse_envelope(body)).outcome == "stored"
    assert queue.jobs == []
    row = storage.index.get("conv_kept")
    assert row is not None and row.memory_status == "expired"


def _memories_rule_world(index: MemoryCallIndex, store: FakeMemoryStore) -> tuple[World, RetentionRunner]:
    world = World("memory", MemoryBlobStore(), index, MemoryBlobStore(), now=float(NOW))
    _call(world, "conv_mid", 100)  # past memories_days (90), inside transcripts_days: only its memories go
    memories = MemoryErasure(store)
    eraser = Eraser(world.blobs, world.index, [memories], erased=world.erased, clock=world.clock)
    return world, RetentionRunner(world.index, eraser, RULES, memories=memories, clock=world.clock)


def test_a_memory_job_that_writes_after_retention_removed_the_memories_takes_them_out_again() -> None:
    """The job checked the row before retention ran, and writes after the whole run (erase, then the
    row's mark): the row no longer says why it should not, so the job asks once more after writing."""
    runs: list[RetentionRunner] = []

    class RetentionBeforeTheWrite(FakeMemoryStore):
        def add_conversation(self, phone: str, conversation_id: str, items: Sequence[MemoryItem]) -> int:
            if items and runs:
                runs.pop().run()
            return super().add_conversation(phone, conversation_id, items)

    store = RetentionBeforeTheWrite()
    world, runner = _memories_rule_world(MemoryCallIndex(), store)
    runs.append(runner)

    assert JobProcessor(world.blobs, world.index, store)(MemoryJob("conv_mid")) == EXPIRED
    assert not runs and store.count(PHONE) == 0
    row = world.index.get("conv_mid")
    assert row is not None and row.memory_status == "expired"


def test_a_memory_job_that_runs_between_retentions_erase_and_its_mark_leaves_no_memory() -> None:
    """The whole job (checks and write) fits between retention's erase and the row's mark: retention
    erases once more after marking, so nothing the job wrote outlives the rule."""
    jobs: list[JobProcessor] = []

    class JobBeforeTheMark(MemoryCallIndex):
        def set_memory_status(self, conversation_id: str, status: str, now: int) -> None:
            if status == "expired" and jobs:
                assert jobs.pop()(MemoryJob(conversation_id)) == "done"
            super().set_memory_status(conversation_id, status, now)

    store = FakeMemoryStore()
    world, runner = _memories_rule_world(JobBeforeTheMark(), store)
    jobs.append(JobProcessor(world.blobs, world.index, store))

    assert runner.run().memories_expired == ["conv_mid"]
    assert not jobs and store.count(PHONE) == 0


class _HoldDuringListing(MemoryCallIndex):
    """Places a legal hold while the run lists the calls (a long walk of the index on DynamoDB)."""

    place: Any = None

    def list_calls(self, query: Any) -> Any:
        if self.place is not None:
            self.place()
            self.place = None
        return super().list_calls(query)


@pytest.mark.parametrize("held", ["conv_mid", "conv_old"])
def test_a_hold_placed_while_the_run_lists_the_calls_keeps_what_it_covers(held: str) -> None:
    world, runner, store, book = _setup()
    index = _HoldDuringListing()
    for cid in ("conv_old", "conv_mid", "conv_new", "conv_short"):
        record = world.index.get(cid)
        assert record is not None
        index.rows[cid] = record
    world.index = runner.index = runner.eraser.index = index
    index.place = lambda: book.place(reason="case 21", actor="cli:alice", conversation_id=held)

    done = runner.run()

    assert done.held == 1 and held not in done.memories_expired + done.calls_expired
    assert store.count(PHONE, held) == 1  # its memories (and, for conv_old, the whole call) are kept
    assert index.get(held) is not None and index.get(held).memory_status != "expired"  # type: ignore[union-attr]
    assert "conv_short" in done.calls_expired  # the rest of the run went ahead


def test_a_hold_placed_while_the_run_erases_expired_calls_keeps_the_memories_due_after() -> None:
    _world, runner, store, book = _setup()
    placed: list[str] = []

    def hold_once(_done: int, _total: int) -> None:  # during the whole calls' erasure, before the memories
        if not placed:
            placed.append(book.place(reason="case 22", actor="cli:alice", conversation_id="conv_mid").id)

    done = runner.run(progress=hold_once)

    assert placed and done.held == 1 and done.memories_expired == []
    assert store.count(PHONE, "conv_mid") == 1
    assert sorted(done.calls_expired) == ["conv_old", "conv_short"]


@pytest.mark.parametrize("rule", [Rule(audio_days=60), Rule(transcripts_days=60)])
def test_audio_whose_transcript_never_came_expires_by_when_it_was_stored(rule: Rule) -> None:
    # Parked audio (no call-level event, so no start time) is the caller's voice all the same: it was
    # left out of every run, since runs list calls by start time.
    from .conftest import audio_envelope

    world = World("memory", MemoryBlobStore(), MemoryCallIndex(), MemoryBlobStore(), now=float(NOW - 100 * DAY))
    assert world.deliver(audio_envelope("conv_parked_old", NOW - 100 * DAY)) == "stored"
    world.now = float(NOW - 5 * DAY)
    assert world.deliver(audio_envelope("conv_parked_new", NOW - 5 * DAY)) == "stored"
    world.now = float(NOW)
    runner = _audio_runner(world)
    runner.rules = RetentionRules(rule)

    planned = runner.run(dry_run=True)
    done = runner.run()

    expired = done.audio_expired if rule.audio_days else done.calls_expired
    assert planned.to_dict() == {**done.to_dict(), "dry_run": True, "erased": {}}
    assert expired == ["conv_parked_old"]
    assert [k for k in world.blobs.list_keys() if k.endswith(".mp3")] == ["_pending-audio/conv_parked_new.mp3"]
    # It stays gone: the same audio delivered again is refused (expired audio, or an erased call).
    assert world.deliver(audio_envelope("conv_parked_old", NOW)) in ("stale", "erased")
    assert [k for k in world.blobs.list_keys() if k.endswith(".mp3")] == ["_pending-audio/conv_parked_new.mp3"]
    assert runner.run().to_dict()["audio"] + runner.run().to_dict()["calls"] == 0


class _EraseBeforePut(MemoryBlobStore):
    """Runs ``then`` once, just before the next compare-and-swap write: an erasure that lands after
    retention read a call's analytics row and before it writes the row back with has_audio false."""

    then: Any = None

    def put_if(self, key: str, data: bytes, content_type: str, tag: str | None, *, version: str | None = None) -> bool:
        if self.then is not None:
            then, self.then = self.then, None
            then()
        return super().put_if(key, data, content_type, tag, version=version)


def test_expiring_audio_of_a_call_erased_meanwhile_leaves_no_analytics_row_of_it() -> None:
    from .conftest import audio_envelope

    analytics = _EraseBeforePut()
    world = World("memory", MemoryBlobStore(), MemoryCallIndex(), analytics, now=float(NOW))
    _call(world, "conv_both", 100)
    assert world.deliver(audio_envelope("conv_both", NOW - 100 * DAY + 61)) == "stored"
    world.compact()  # its row lives in the merged day object: expiring audio copies it out
    eraser = Eraser(world.blobs, world.index, [AnalyticsErasure(analytics)], erased=world.erased, clock=world.clock)
    runner = RetentionRunner(
        world.index,
        eraser,
        RetentionRules(Rule(audio_days=60)),
        blobs=world.blobs,
        audio_flags=world.archiver.analytics,
        analytics=AnalyticsErasure(analytics),
        clock=world.clock,
    )
    analytics.then = lambda: eraser.erase(eraser.plan_conversations(["conv_both"]))  # `forget --conversation`

    assert runner.run().audio_expired == ["conv_both"]

    assert world.index.get("conv_both") is None
    world.compact()
    assert [r for r in world.analytics_rows() if r.get("conversation_id") == "conv_both"] == []


def test_the_run_names_the_calls_whose_memories_audio_or_analytics_it_expires_in_the_trail() -> None:
    # `callvault audit --conversation ID` answers what happened to a call: the run removed its memories.
    _world, runner, _store, _book = _setup()

    runner.run()

    assert runner.audit is not None
    (entry,) = runner.audit.entries(conversation_id="conv_mid")  # its memories expired (90 days)
    assert entry.action == "retention_run" and entry.detail["memories"] == 1
    assert [e.action for e in runner.audit.entries(conversation_id="conv_old")] == ["erase"]  # whole: erased
    assert runner.audit.entries(conversation_id="conv_new") == []

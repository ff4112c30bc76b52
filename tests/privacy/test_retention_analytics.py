"""Retention's ``analytics_days`` (#13): the analytics rows of older calls go, the call stays and its row
says so (``analytics_expired_at``), and nothing brings the rows back: not verify (which neither reports
nor rebuilds them), not backfill-analytics, not a later event of the call. The dry run equals the run."""

import json
from pathlib import Path

from click.testing import CliRunner
from fastapi.testclient import TestClient

from services.analytics.backfill import backfill_analytics
from services.analytics.erasure import AnalyticsErasure
from services.analytics.reader import CACHE_FILE
from services.cli.main import cli
from services.core.adapters.memory import MemoryAuditLog, MemoryBlobStore, MemoryCallIndex, MemoryHolds
from services.ingest.verify import ArchiveVerifier
from services.privacy.audit import Auditor
from services.privacy.holds import HoldBook
from services.privacy.retention import DAY, RetentionRules, RetentionRunner, Rule
from services.privacy.service import Eraser
from tests.memory.support import call_envelope

from .conftest import ADMIN, T0, World

PHONE = "+16125550142"
NOW = T0 + 400 * DAY
OLD, HELD, NEW = "conv_analytics_old", "conv_analytics_held", "conv_analytics_new"


def _call(world: World, cid: str, age_days: int, event_at: int | None = None) -> None:
    start = NOW - age_days * DAY
    envelope = call_envelope(cid, PHONE, started_at=start, event_at=event_at or start + 60)
    assert world.deliver(envelope) == "stored"


def _runner(world: World, holds: HoldBook | None = None) -> RetentionRunner:
    eraser = Eraser(world.blobs, world.index, [AnalyticsErasure(world.analytics)], erased=world.erased)
    rules = RetentionRules(Rule(analytics_days=60))
    return RetentionRunner(
        world.index, eraser, rules, analytics=AnalyticsErasure(world.analytics), holds=holds, clock=world.clock
    )


def _analytics_ids(world: World) -> set[str]:
    return {row["conversation_id"] for row in world.analytics_rows()}


def test_analytics_rows_expire_the_call_stays_and_nothing_brings_them_back(world: World) -> None:
    world.now = float(NOW)
    _call(world, OLD, 100)
    _call(world, NEW, 5)
    world.compact()  # OLD's day is closed: its rows live in merged day objects
    archive = world.archive_bytes()
    runner = _runner(world)

    planned = runner.run(dry_run=True)
    assert _analytics_ids(world) == {OLD, NEW}
    done = runner.run()

    assert planned.analytics_expired == done.analytics_expired == [OLD]
    assert (done.calls_expired, done.to_dict()["analytics"]) == ([], 1)
    assert _analytics_ids(world) == {NEW}
    row = world.index.get(OLD)
    assert row is not None and row.transcript_key is not None and row.analytics_expired_at == NOW
    assert world.archive_bytes() == archive  # the call itself is untouched
    assert not world.erased.is_erased(OLD)

    # verify neither reports the missing rows nor rebuilds them with --repair.
    verifier = ArchiveVerifier(world.archiver, clock=world.clock)
    assert verifier.run().findings == []
    assert verifier.run(repair=True).findings == [] and _analytics_ids(world) == {NEW}
    # backfill-analytics leaves the call out.
    rebuilt = backfill_analytics(world.blobs, world.index, world.analytics, clock=world.clock)
    assert (rebuilt.expired, rebuilt.calls) == (1, 1) and _analytics_ids(world) == {NEW}
    # A newer version of the call (a webhook retry, a sync) is archived, without analytics rows.
    _call(world, OLD, 100, event_at=NOW)
    marked = world.index.get(OLD)
    assert marked is not None and marked.event_at == NOW and marked.analytics_expired_at == NOW
    assert _analytics_ids(world) == {NEW}
    # Marked: a later run selects nothing.
    assert runner.run().analytics_expired == []
    assert verifier.run().findings == []


def test_rows_left_by_an_interrupted_expiry_are_reported_and_removed() -> None:
    world = World("memory", MemoryBlobStore(), MemoryCallIndex(), MemoryBlobStore(), now=float(NOW))
    _call(world, OLD, 100)
    _call(world, NEW, 5)
    world.index.expire_analytics(OLD, NOW)  # the mark without the removal (a write raced the expiry)

    verifier = ArchiveVerifier(world.archiver, clock=world.clock)
    found = verifier.run().findings
    assert [(f.kind, f.conversation_id) for f in found] == [("analytics_expired_present", OLD)]
    assert _analytics_ids(world) == {OLD, NEW}
    repaired = verifier.run(repair=True).findings
    assert [(f.kind, f.repaired) for f in repaired] == [("analytics_expired_present", True)]
    assert _analytics_ids(world) == {NEW} and verifier.run().findings == []

    world.index.expire_analytics(NEW, NOW)  # backfill ends an interrupted expiry too
    assert backfill_analytics(world.blobs, world.index, world.analytics, clock=world.clock).expired == 2
    assert _analytics_ids(world) == set()


def test_held_calls_keep_their_analytics_rows() -> None:
    world = World("memory", MemoryBlobStore(), MemoryCallIndex(), MemoryBlobStore(), now=float(NOW))
    _call(world, OLD, 100)
    _call(world, HELD, 100)
    audit = Auditor(MemoryAuditLog(), world.erased, clock=world.clock)
    book = HoldBook(MemoryHolds(), world.erased, audit, clock=world.clock)
    book.place(reason="case 12", actor="cli:alice", conversation_id=HELD)
    runner = _runner(world, book)

    planned, done = runner.run(dry_run=True), runner.run()

    assert planned.analytics_expired == done.analytics_expired == [OLD]
    assert planned.held == done.held == 1
    assert _analytics_ids(world) == {HELD}


def test_retention_command_expires_analytics_rows_and_sql_sees_none(client: TestClient, data_dir: Path) -> None:
    (data_dir / "retention.toml").write_text("[default]\nanalytics_days = 30\n")
    runner, env = CliRunner(), {"CALLVAULT_MEMORY_BACKEND": "none"}
    count = ["sql", "SELECT count(*) AS n FROM calls", "--format", "json", "--data-dir", str(data_dir)]
    assert json.loads(runner.invoke(cli, count).stdout)[0]["n"] == 2
    cache = data_dir / CACHE_FILE
    assert cache.exists()  # the query filled the local cache with copies of the rows

    dry = runner.invoke(cli, ["retention", "run", "--dry-run", "--json", "--data-dir", str(data_dir)], env=env)
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["analytics"] == 2  # the two fixture calls started in July 2025
    done = runner.invoke(cli, ["retention", "run", "--data-dir", str(data_dir)], env=env)
    assert done.exit_code == 0, done.output
    assert "the analytics rows of 2 more" in done.output
    assert not cache.exists()  # its copies went with the rows (the next query rebuilds it)

    assert json.loads(runner.invoke(cli, count).stdout)[0]["n"] == 0
    assert len(client.get("/calls", headers={"Authorization": f"Bearer {ADMIN}"}).json()["items"]) == 2
    assert runner.invoke(cli, ["verify", "--data-dir", str(data_dir)], env=env).exit_code == 0
    backfill = runner.invoke(cli, ["backfill-analytics", "--data-dir", str(data_dir)], env=env)
    assert backfill.exit_code == 0, backfill.output
    assert "2 calls left out" in backfill.output
    assert json.loads(runner.invoke(cli, count).stdout)[0]["n"] == 0


class _CountingStore(MemoryBlobStore):
    """Counts the writes of day objects (``day.compacted``), the expensive part of an erasure."""

    def __init__(self) -> None:
        super().__init__()
        self.day_writes = 0

    def put_if(self, key: str, data: bytes, content_type: str, tag: str | None, *, version: str | None = None) -> bool:
        self.day_writes += "day.compacted" in key
        return super().put_if(key, data, content_type, tag, version=version)


def test_expiring_a_days_calls_rewrites_its_day_objects_twice_not_once_per_call() -> None:
    """A day's calls reach ``analytics_days`` together: each table's day object is rewritten once
    for all of them before the marks and once after (rows a delivery wrote in between); per call, a
    busy day cost its whole day object per call: quadratic."""
    analytics = _CountingStore()
    world = World("memory", MemoryBlobStore(), MemoryCallIndex(), analytics, now=float(NOW))
    ids = [f"conv_analytics_{i}" for i in range(30)]
    for i, cid in enumerate(ids):
        _call(world, cid, 100, event_at=NOW - 100 * DAY + 60 + i)
    world.compact()
    analytics.day_writes = 0

    done = _runner(world).run()

    assert sorted(done.analytics_expired) == sorted(ids) and _analytics_ids(world) == set()
    assert analytics.day_writes <= 6


def test_retention_command_counts_no_call_twice_after_expiring_audio(client: TestClient, data_dir: Path) -> None:
    """Expired audio turns ``has_audio`` false: in a merged day that row is copied out to a per-call
    object, and the command merges it back before it ends (as import, sync and verify do)."""
    runner, env = CliRunner(), {"CALLVAULT_MEMORY_BACKEND": "none"}
    assert runner.invoke(cli, ["compact-analytics", "--data-dir", str(data_dir)], env=env).exit_code == 0
    (data_dir / "retention.toml").write_text("[default]\naudio_days = 30\n")

    done = runner.invoke(cli, ["retention", "run", "--data-dir", str(data_dir)], env=env)
    assert done.exit_code == 0, done.output
    assert "the audio of 1" in done.output

    count = ["sql", "SELECT count(*) AS n, count(*) FILTER (WHERE has_audio) AS audio FROM calls"]
    assert json.loads(runner.invoke(cli, [*count, "--format", "json", "--data-dir", str(data_dir)]).stdout) == [
        {"n": 2, "audio": 0}
    ]

"""A call rewritten into a merged day is counted once, with its newest rows, on every query surface.

A late write to a closed day (a redelivery, late audio, an import) is a per-call object beside the
day object until the next merge. Until then every table, every report and every engine must see
the per-call object's rows for that call and none of the day object's: DuckDB over the files, over
its cache and over S3, and Athena, whose tables are the Glue views in ``infra/analytics.yaml``
(run here by DuckDB over the same objects, the view text taken from the template).
"""

import copy
import itertools
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from cfnlint.decode import cfn_yaml

from services.analytics import duckdb_engine
from services.analytics.athena_engine import AthenaEngine
from services.analytics.compaction import compact_closed_days
from services.analytics.duckdb_engine import DuckDbEngine
from services.analytics.reports import Engine, ReportArgs, run_report
from services.analytics.rows import encode
from services.analytics.tables import (
    CALLS,
    CONTENT_TYPE,
    DUCKDB_TYPES,
    EVALUATIONS,
    MESSAGES,
    TABLES,
    object_key,
    parse_day_object_key,
    parse_object_key,
)
from services.analytics.writer import AnalyticsWriter
from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
from services.core.adapters.s3_blob_store import S3BlobStore
from services.core.domain.models import WebhookEvent
from services.ingest.service import Archiver
from tests.analytics.callset import Call, build_calls
from tests.analytics.test_athena_engine import FakeAthena
from tests.conftest_seaweed import SeaweedS3, s3_client

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "analytics.yaml"
ALL_TIME = ReportArgs()


class LateDay:
    """The call set archived years later (every day closed) and merged, then a newer version of one
    call with fewer turns, criteria and another outcome, and late audio for another: both per-call
    objects beside their day objects, not merged yet."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls = build_calls(12)
        store = FsBlobStore(root)
        self.archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), time.time, analytics=AnalyticsWriter(store))
        for call in self.calls:
            self._archive(call.envelope)
        compact_closed_days(store)
        assert all(parse_day_object_key(key) for key in store.list_keys())

        self.revised = next(c for c in self.calls if len(c.data["transcript"]) >= 3 and _criteria(c) >= 2)
        self.audio = next(c for c in self.calls if c is not self.revised and len(c.data["transcript"]) >= 2)

    def _archive(self, envelope: dict[str, Any]) -> None:
        event = WebhookEvent(envelope["type"], envelope["event_timestamp"], envelope["data"])
        assert self.archiver.archive(event).outcome == "stored"

    def write_late(self) -> None:
        newer = copy.deepcopy(self.revised.envelope)
        newer["event_timestamp"] += 60
        data = newer["data"]
        data["transcript"] = data["transcript"][:1]
        data["transcript"][0]["message"] = "A revised first turn."
        criteria = data["analysis"]["evaluation_criteria_results"]
        data["analysis"]["evaluation_criteria_results"] = {first: criteria[first] for first in sorted(criteria)[:1]}
        data["analysis"]["call_successful"] = "unknown" if self.revised_outcome != "unknown" else "success"
        self.revised.envelope = newer
        self._archive(newer)
        assert self.archiver.analytics is not None
        assert self.archiver.analytics.mark_audio(self.audio.data["conversation_id"], self.audio.start) is True
        per_call = {(t, cid) for t, _dt, cid in filter(None, map(parse_object_key, FsBlobStore(self.root).list_keys()))}
        revised_id, audio_id = self.revised.data["conversation_id"], self.audio.data["conversation_id"]
        assert per_call == {(t, revised_id) for t in TABLES} | {(CALLS, audio_id)}

    @property
    def revised_outcome(self) -> str:
        return str(self.revised.data["analysis"]["call_successful"])


def _criteria(call: Call) -> int:
    return len((call.data.get("analysis") or {}).get("evaluation_criteria_results") or {})


def _turns(call: Call) -> list[str | None]:
    return [turn["message"] for turn in call.data["transcript"]] if not call.is_failure else []


def check_calls(engine: Engine, late: LateDay) -> None:
    calls = engine.query("SELECT conversation_id, call_successful, has_audio FROM calls").rows
    assert Counter(cid for cid, _outcome, _audio in calls) == Counter(c.data["conversation_id"] for c in late.calls)
    by_id = {cid: (outcome, audio) for cid, outcome, audio in calls}
    assert by_id[late.revised.data["conversation_id"]][0] == late.revised_outcome
    assert by_id[late.audio.data["conversation_id"]][1] is True
    per_day = run_report(engine, "calls-per-day", ALL_TIME).dicts()
    assert sum(int(day["calls"]) for day in per_day) == len(late.calls)
    caller = run_report(engine, "caller", ReportArgs(phone=late.revised.phone)).dicts()
    assert Counter(row["conversation_id"] for row in caller)[late.revised.data["conversation_id"]] == 1


def check_messages(engine: Engine, late: LateDay) -> None:
    turns = engine.query("SELECT conversation_id, turn_index, text FROM messages ORDER BY turn_index").rows
    for call in late.calls:  # every turn of the newest version, and nothing else
        assert [text for cid, _i, text in turns if cid == call.data["conversation_id"]] == _turns(call)
    found = run_report(engine, "keyword", ReportArgs(keyword="revised first turn")).dicts()
    assert [row["conversation_id"] for row in found] == [late.revised.data["conversation_id"]]


def check_evaluations(engine: Engine, late: LateDay) -> None:
    evaluations = engine.query("SELECT conversation_id, criteria_id FROM evaluations WHERE kind = 'criterion'").rows
    for call in late.calls:
        expected = sorted((call.data.get("analysis") or {}).get("evaluation_criteria_results") or {})
        assert sorted(crit for cid, crit in evaluations if cid == call.data["conversation_id"]) == expected
    criteria = run_report(engine, "criteria", ALL_TIME).dicts()
    assert sum(int(c["evaluated"]) for c in criteria) == sum(map(_criteria, late.calls))


CHECKS: dict[str, Callable[[Engine, LateDay], None]] = {
    CALLS: check_calls,
    MESSAGES: check_messages,
    EVALUATIONS: check_evaluations,
}
BY_TABLE = pytest.mark.parametrize("table", TABLES)


@pytest.fixture(autouse=True)
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(duckdb_engine, "RACY_WINDOW_NS", 0)  # written and read within milliseconds


@pytest.fixture
def late(tmp_path: Path) -> LateDay:
    return LateDay(tmp_path / "analytics")


@BY_TABLE
def test_duckdb_over_the_files(table: str, late: LateDay) -> None:
    late.write_late()
    with DuckDbEngine.local(late.root) as engine:
        CHECKS[table](engine, late)


@BY_TABLE
def test_duckdb_over_its_cache_read_before_and_after_the_late_write(table: str, late: LateDay, tmp_path: Path) -> None:
    cache = tmp_path / "analytics-cache.duckdb"
    with DuckDbEngine.local(late.root, cache) as engine:  # the merged days are in the cache already
        assert engine.query("SELECT count(*) FROM calls").rows == [(len(late.calls),)]
    time.sleep(0.01)  # the late write must change the partition folders' times
    late.write_late()
    with DuckDbEngine.local(late.root, cache) as engine:
        CHECKS[table](engine, late)
    with DuckDbEngine.local(late.root, cache, read_only=True) as engine:  # `callvault sql`
        CHECKS[table](engine, late)


@BY_TABLE
def test_duckdb_over_s3(table: str, late: LateDay, seaweed: SeaweedS3) -> None:
    late.write_late()
    client = s3_client(seaweed)
    bucket = f"late-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    store = S3BlobStore(bucket, client)
    for path in late.root.rglob("*.json.gz"):
        store.put_bytes(path.relative_to(late.root).as_posix(), path.read_bytes(), "application/x-ndjson")
    with DuckDbEngine.s3(
        f"s3://{bucket}",
        key_id=seaweed.access_key,
        secret=seaweed.secret_key,
        region="us-east-1",
        endpoint=seaweed.endpoint,
        read_only=True,
    ) as engine:
        CHECKS[table](engine, late)


def glue_tables(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Glue name -> TableInput, for every table and view of the analytics template."""
    return {
        r["Properties"]["TableInput"]["Name"]: r["Properties"]["TableInput"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Glue::Table"
    }


def presto_view(table_input: dict[str, Any], database: str) -> dict[str, Any]:
    """The view definition Athena reads from a Glue view: ``/* Presto View: <base64 of JSON> */``."""
    prefix, encoded, suffix = table_input["ViewOriginalText"]["Fn::Join"][1]
    assert (prefix, suffix) == ("/* Presto View: ", " */")
    view: dict[str, Any] = json.loads(encoded["Fn::Base64"]["Fn::Sub"].replace("${Database}", database))
    return view


@pytest.fixture
def athena_catalog(late: LateDay) -> Iterator[DuckDbEngine]:
    """DuckDB holding what Athena's catalog holds: each Glue table of the template as the rows of
    every object under its location, with ``"$path"``; each Glue view as its SQL over those."""
    template: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    con = duckdb.connect()
    tables = glue_tables(template)
    for name, table_input in tables.items():
        if table_input["TableType"] == "EXTERNAL_TABLE":
            descriptor = table_input["StorageDescriptor"]
            folder = late.root / descriptor["Location"]["Fn::Sub"].split("/")[-2]
            columns = {c["Name"]: DUCKDB_TYPES[c["Type"]] for c in descriptor["Columns"]}
            names = ", ".join(f'"{n}"' for n in columns)
            con.execute(
                f'CREATE VIEW {name} AS SELECT {names}, dt, filename AS "$path" '  # noqa: S608 - the template's names
                f"FROM read_json('{folder}/*/*.json.gz', columns={columns!r}, format='newline_delimited', "
                "hive_partitioning=true, hive_types_autocast=false, filename=true)"
            )
    for name, table_input in tables.items():
        if table_input["TableType"] == "VIRTUAL_VIEW":
            con.execute(f"CREATE VIEW {name} AS {presto_view(table_input, 'callvault_analytics')['originalSql']}")
    with DuckDbEngine(con, "the Glue catalog") as engine:
        yield engine


@BY_TABLE
def test_athena_over_the_glue_views(table: str, late: LateDay, athena_catalog: DuckDbEngine) -> None:
    late.write_late()
    engine = AthenaEngine("callvault-analytics", "callvault_analytics", client=FakeAthena(athena_catalog))
    CHECKS[table](engine, late)


@BY_TABLE
def test_a_merge_leaves_the_same_rows(late: LateDay, table: str, tmp_path: Path) -> None:
    """The view's answer while the per-call objects wait is the merge's answer afterwards."""
    late.write_late()
    sql = f"SELECT * FROM {table} ORDER BY ALL"  # noqa: S608 - a constant table name
    with DuckDbEngine.local(late.root) as engine:
        before = engine.query(sql).rows
    compact_closed_days(FsBlobStore(late.root))
    with DuckDbEngine.local(late.root) as engine:
        assert engine.query(sql).rows == before


@pytest.mark.parametrize("cached", [False, True], ids=["files", "cache"])
def test_queries_racing_late_writes_and_merges_see_each_call_once(late: LateDay, tmp_path: Path, cached: bool) -> None:
    """Redeliveries of one call into its merged day (1 to 3 turns in turn) and merges run in a loop
    while queries read: every answer holds each call once, and exactly one version of its turns."""
    store = FsBlobStore(late.root)
    call = late.revised
    stop = threading.Event()
    errors: list[BaseException] = []

    def rewrite_and_merge() -> None:
        try:
            for n in itertools.count():
                if stop.is_set():
                    return
                newer = copy.deepcopy(call.envelope)
                newer["event_timestamp"] += 60 * (n + 1)
                turns = newer["data"]["transcript"]
                newer["data"]["transcript"] = [dict(turns[0], message=f"version {n}")] * (1 + n % 3)
                late._archive(newer)
                compact_closed_days(store)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    writer = threading.Thread(target=rewrite_and_merge)
    writer.start()
    cache = tmp_path / "analytics-cache.duckdb" if cached else None
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not errors:
            with DuckDbEngine.local(late.root, cache) as engine:
                calls = engine.query("SELECT conversation_id FROM calls").rows
                turns = engine.query(
                    "SELECT turn_index, text FROM messages WHERE conversation_id = ?", [call.data["conversation_id"]]
                ).rows
            assert sorted(cid for (cid,) in calls) == sorted(c.data["conversation_id"] for c in late.calls)
            assert sorted(i for i, _text in turns) == list(range(len(turns))), turns  # one version's turns
            assert len({text for _i, text in turns}) <= 1, turns
    finally:
        stop.set()
        writer.join()
    assert not errors


def test_a_per_call_object_without_rows_leaves_the_older_rows_once_until_the_merge(late: LateDay) -> None:
    """What SQL cannot see (docs/analytics.md): an empty per-call object. The call's day rows stay,
    once; the merge then applies the empty object and the call has no turns."""
    store = FsBlobStore(late.root)
    call = late.revised
    store.put_bytes(object_key(MESSAGES, call.day, call.data["conversation_id"]), encode(MESSAGES, []), CONTENT_TYPE)
    sql = "SELECT text FROM messages WHERE conversation_id = ? ORDER BY turn_index"
    with DuckDbEngine.local(late.root) as engine:
        assert [text for (text,) in engine.query(sql, [call.data["conversation_id"]]).rows] == _turns(call)
    compact_closed_days(store)
    with DuckDbEngine.local(late.root) as engine:
        assert engine.query(sql, [call.data["conversation_id"]]).rows == []

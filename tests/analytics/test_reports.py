"""Every standard report on the fixture call set, against numbers computed from the payloads."""

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from services.analytics.duckdb_engine import DuckDbEngine
from services.analytics.reports import REPORTS, ReportArgs, TurnPosition, bind, keyword_page, run_report
from tests.analytics import callset
from tests.analytics.callset import Call


@pytest.fixture(params=["files", "cache"], scope="module")
def engine(
    request: pytest.FixtureRequest, analytics_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DuckDbEngine]:
    cache = tmp_path_factory.mktemp("cache") / "cache.duckdb" if request.param == "cache" else None
    with DuckDbEngine.local(analytics_root, cache) as built:
        yield built


def _rows(engine: DuckDbEngine, name: str, **args: Any) -> list[dict[str, Any]]:
    return run_report(engine, name, ReportArgs(**args)).dicts()


def test_calls_per_day_matches_payloads(engine: DuckDbEngine, calls: list[Call]) -> None:
    rows = _rows(engine, "calls-per-day")
    expected = callset.expected_per_day(calls)
    assert [r["day"] for r in rows] == sorted(expected)
    for row in rows:
        want = expected[row["day"]]
        assert row["calls"] == want["calls"]
        assert row["successful"] == want["successful"]
        assert row["avg_duration_secs"] == pytest.approx(round(want["avg_duration_secs"], 1))
        assert row["total_duration_secs"] == want["total_duration_secs"]
        assert row["total_cost_usd"] == pytest.approx(want["total_cost_usd"])
        assert row["total_cost_credits"] == want["total_cost_credits"]
    assert sum(r["calls"] for r in rows) == len(calls)


def test_since_and_until_are_inclusive_days(engine: DuckDbEngine, calls: list[Call]) -> None:
    days = list(callset.iter_days(calls))
    since, until = days[1], days[2]
    rows = _rows(engine, "calls-per-day", since=date.fromisoformat(since), until=date.fromisoformat(until))
    assert [r["day"] for r in rows] == [since, until]
    assert sum(r["calls"] for r in rows) == len(callset.in_range(calls, since, until))


def test_agents_report_calls_duration_and_cost(engine: DuckDbEngine, calls: list[Call]) -> None:
    rows = _rows(engine, "agents")
    expected = callset.expected_agents(calls)
    assert {r["agent_id"] for r in rows} == set(expected)
    assert [r["calls"] for r in rows] == sorted((e["calls"] for e in expected.values()), reverse=True)
    for row in rows:
        want = expected[row["agent_id"]]
        assert row["agent_name"] == want["agent_name"]
        assert row["calls"] == want["calls"]
        assert row["avg_duration_secs"] == pytest.approx(round(want["avg_duration_secs"], 1))
        assert row["total_duration_secs"] == want["total_duration_secs"]
        assert row["total_cost_usd"] == pytest.approx(want["total_cost_usd"])
        assert row["total_cost_credits"] == want["total_cost_credits"]


def test_success_rate_per_agent(engine: DuckDbEngine, calls: list[Call]) -> None:
    rows = _rows(engine, "success-rate")
    expected = callset.expected_agents(calls)
    for row in rows:
        want = expected[row["agent_id"]]
        assert (row["successful"], row["failed"], row["unknown"]) == (
            want["successful"],
            want["failed"],
            want["unknown"],
        )
        assert row["success_rate"] == pytest.approx(round(want["success_rate"], 4))
    rates = [r["success_rate"] for r in rows]
    assert rates == sorted(rates, reverse=True)


def test_top_callers(engine: DuckDbEngine, calls: list[Call]) -> None:
    rows = _rows(engine, "top-callers", limit=2)
    expected = callset.expected_callers(calls)
    ranked = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
    assert [(r["phone"], r["calls"]) for r in rows] == ranked
    everyone = _rows(engine, "top-callers")
    assert {r["phone"]: r["calls"] for r in everyone} == expected  # numbers normalised: +1 612 555 0102 -> E.164


def test_criteria_pass_rate(engine: DuckDbEngine, calls: list[Call]) -> None:
    rows = _rows(engine, "criteria")
    expected = callset.expected_criteria(calls)
    assert {r["criteria_id"] for r in rows} == set(expected)
    for row in rows:
        want = expected[row["criteria_id"]]
        for column in ("evaluated", "passed", "failed", "unknown"):
            assert row[column] == want[column], column
        assert row["pass_rate"] == pytest.approx(round(want["pass_rate"], 4))
    assert [r["pass_rate"] for r in rows] == sorted(r["pass_rate"] for r in rows)


def test_keyword_search_finds_every_matching_turn(engine: DuckDbEngine, calls: list[Call]) -> None:
    rows = _rows(engine, "keyword", keyword="Refund", limit=10_000)
    assert {(r["conversation_id"], r["turn_index"]) for r in rows} == callset.expected_keyword(calls, "refund")
    assert all("refund" in r["text"].lower() for r in rows)
    assert len(rows) > 3


def _walk(engine: DuckDbEngine, size: int, **args: Any) -> list[list[tuple[str, str, int]]]:
    """Every page of a keyword search, following each page's position through its cursor text."""
    pages: list[list[tuple[str, str, int]]] = []
    after = None
    while True:
        page = keyword_page(lambda name, a: run_report(engine, name, a), ReportArgs(after=after, **args), size)
        pages.append([(r["day"], r["conversation_id"], r["turn_index"]) for r in page.rows])
        if page.next is None:
            return pages
        after = TurnPosition.parse(page.next.token())


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_keyword_pages_show_every_matching_turn_once_newest_day_first(
    engine: DuckDbEngine, calls: list[Call], size: int
) -> None:
    pages = _walk(engine, size, keyword="refund")
    walked = [key for page in pages for key in page]
    assert len(walked) == len(set(walked))  # none repeated
    assert {(call, turn) for _day, call, turn in walked} == callset.expected_keyword(calls, "refund")  # none lost
    # Newest day first; ties on a day by conversation id, within a call by turn: the same order on every run.
    assert walked == sorted(walked, key=lambda k: (-date.fromisoformat(k[0]).toordinal(), k[1], k[2]))
    assert walked == [
        (r["day"], r["conversation_id"], r["turn_index"])
        for r in _rows(engine, "keyword", keyword="refund", limit=10_000)
    ]
    assert all(len(page) == size for page in pages[:-1]) and 0 < len(pages[-1]) <= size
    days = [day for day, _call, _turn in walked]
    calls_seen = [(day, call) for day, call, _turn in walked]
    assert len(set(days)) < len(set(calls_seen)) < len(walked), "the fixture must tie on days and on calls"


def test_keyword_pages_stay_inside_the_period(engine: DuckDbEngine, calls: list[Call]) -> None:
    days = list(callset.iter_days(calls))
    since, until = date.fromisoformat(days[1]), date.fromisoformat(days[2])
    walked = [key for page in _walk(engine, 2, keyword="refund", since=since, until=until) for key in page]
    inside = {c.data["conversation_id"] for c in callset.in_range(calls, days[1], days[2])}
    assert {(call, turn) for _d, call, turn in walked} == {
        (call, turn) for call, turn in callset.expected_keyword(calls, "refund") if call in inside
    }
    assert {day for day, _c, _t in walked} == {days[1], days[2]}


def test_a_later_page_reads_only_the_days_up_to_its_position() -> None:
    after = TurnPosition("2025-07-02", "conv_b", 3)
    assert bind(REPORTS["keyword"], ReportArgs(keyword="x", after=after)) == [
        "1970-01-01",
        "2025-07-02",  # the partition filter ends on the position's day: Athena prunes every newer one
        "x",
        "2025-07-02",
        "conv_b",
        "conv_b",
        3,
    ]
    earlier = ReportArgs(keyword="x", until=date(2025, 7, 1), after=after)
    assert bind(REPORTS["keyword"], earlier)[1] == "2025-07-01"  # never past the period asked for


@pytest.mark.parametrize(
    "token",
    ["", "2025-07-02", "2025-07-02.conv_b", "2025-13-02.conv_b.3", "2025-07-02.conv b.3", "2025-07-02.c.-1", "x.y.z"],
)
def test_a_keyword_cursor_that_no_page_wrote_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        TurnPosition.parse(token)
    assert TurnPosition.parse("2025-07-02.conv_b-1.3") == TurnPosition("2025-07-02", "conv_b-1", 3)


def test_keyword_search_treats_wildcards_as_text(engine: DuckDbEngine) -> None:
    assert _rows(engine, "keyword", keyword="%") == []
    assert _rows(engine, "keyword", keyword="'; DROP TABLE messages; --") == []


def test_caller_history_newest_first(engine: DuckDbEngine, calls: list[Call]) -> None:
    rows = _rows(engine, "caller", phone="+16125550101")
    assert [r["conversation_id"] for r in rows] == callset.expected_history(calls, "+16125550101")
    assert len(rows) >= 2


def test_reports_need_their_parameters() -> None:
    with pytest.raises(ValueError, match="keyword"):
        bind(REPORTS["keyword"], ReportArgs())
    with pytest.raises(ValueError, match="phone"):
        bind(REPORTS["caller"], ReportArgs())
    with pytest.raises(ValueError, match="limit"):
        REPORTS["top-callers"].text(0)


def test_every_report_runs_on_an_empty_folder(tmp_path: Path) -> None:
    with DuckDbEngine.local(tmp_path / "nothing") as empty:
        for name in REPORTS:
            result = run_report(empty, name, ReportArgs(keyword="x", phone="+16125550101"))
            assert result.rows == []
            assert result.columns


@pytest.mark.parametrize("keyword", ["İstanbul", "istanbul", "ΣΟΦΊΑ", "σοφία"])
def test_keyword_search_lowers_the_keyword_as_the_engine_lowers_the_text(tmp_path: Path, keyword: str) -> None:
    """Python's lower() of a dotted capital I is an i plus a combining dot, and of a final capital sigma
    the final small sigma; DuckDB's differ. A word pasted from a transcript must find that transcript."""
    import json

    from services.analytics.writer import AnalyticsWriter
    from services.core.adapters.fs_blob_store import FsBlobStore
    from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
    from services.core.domain import payload
    from services.ingest.service import Archiver
    from tests.support import TRANSCRIPTION, fixture_json

    envelope = fixture_json(TRANSCRIPTION)
    envelope["data"]["transcript"][0]["message"] = "Welcome to İstanbul, said ΣΟΦΊΑ"
    store = FsBlobStore(tmp_path / "analytics", durable=False)
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), lambda: 1751802015.0, analytics=AnalyticsWriter(store))
    archiver.archive(payload.parse_envelope(json.dumps(envelope).encode()))

    with DuckDbEngine.local(tmp_path / "analytics") as engine:
        rows = _rows(engine, "keyword", keyword=keyword, since=date(2025, 7, 1), until=date(2025, 7, 31))

    assert [row["turn_index"] for row in rows] == [0]


def test_a_read_that_meets_a_file_a_merge_just_deleted_is_done_again(tmp_path: Path) -> None:
    import duckdb

    class Flaky:
        """The engine's connection, failing its first statement as a merge deleting a listed file does."""

        def __init__(self, real: Any) -> None:
            self.real, self.failed = real, False

        def sql(self, *args: Any, **kwargs: Any) -> Any:
            if not self.failed:
                self.failed = True
                raise duckdb.IOException('Cannot open file "calls/dt=2025-07-06/conv_x.json.gz": No such file')
            return self.real.sql(*args, **kwargs)

    engine = DuckDbEngine.local(tmp_path)
    engine.con = Flaky(engine.con)  # type: ignore[assignment]
    assert engine.query("SELECT 1 AS one").rows == [(1,)]

"""``--athena``: the Athena engine against a fake Athena that answers like the real one (text values,
a header row, pages, states), backed by DuckDB over the same tables: same rows, same shape."""

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from services.analytics.athena_engine import AthenaEngine, AthenaQueryFailed, athena_literal
from services.analytics.duckdb_engine import DuckDbEngine
from services.analytics.reports import REPORTS, ReportArgs, TurnPosition, keyword_page, run_report

TRINO_TYPES = {"bigint": "bigint", "double": "double", "varchar": "varchar", "boolean": "boolean"}


class FakeAthena:
    """The three calls the engine makes, with Athena's answers. Parameters are substituted as
    Athena does: each ``?`` replaced, in order, by the literal given."""

    def __init__(self, duckdb: DuckDbEngine, page_size: int = 4, states: list[str] | None = None) -> None:
        self.duckdb = duckdb
        self.page_size = page_size
        self.states = states or ["QUEUED", "RUNNING", "SUCCEEDED"]
        self.failure_reason = "Query exhausted resources at this scale factor"
        self.requests: list[dict[str, Any]] = []
        self.stopped: list[str] = []
        self._results: dict[str, Any] = {}
        self._polls: dict[str, Iterator[str]] = {}
        self._ids = itertools.count(1)

    def start_query_execution(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        literals = iter(request.get("ExecutionParameters", []))
        sql = re.sub(r"\?", lambda _m: next(literals), request["QueryString"])
        query_id = f"q{next(self._ids)}"
        self._results[query_id] = self.duckdb.query(sql)
        self._polls[query_id] = iter(self.states)
        return {"QueryExecutionId": query_id}

    def get_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:
        state = next(self._polls[QueryExecutionId], self.states[-1])
        status: dict[str, Any] = {"State": state}
        if state == "FAILED":
            status["StateChangeReason"] = self.failure_reason
        return {"QueryExecution": {"Status": status, "Statistics": {"DataScannedInBytes": 1234}}}

    def stop_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:
        self.stopped.append(QueryExecutionId)
        return {}

    def get_paginator(self, name: str) -> "FakeAthena":
        assert name == "get_query_results"
        return self

    def paginate(self, QueryExecutionId: str) -> Iterator[dict[str, Any]]:
        result = self._results[QueryExecutionId]
        header = {"Data": [{"VarCharValue": c} for c in result.columns]}
        rows = [header] + [
            {"Data": [{} if v is None else {"VarCharValue": _text(v)} for v in row]} for row in result.rows
        ]
        info = [{"Name": c, "Type": TRINO_TYPES[t]} for c, t in zip(result.columns, result.types, strict=True)]
        for start in range(0, len(rows), self.page_size):
            yield {
                "ResultSet": {"Rows": rows[start : start + self.page_size], "ResultSetMetadata": {"ColumnInfo": info}}
            }


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@pytest.fixture
def local(analytics_root: Path) -> Iterator[DuckDbEngine]:
    with DuckDbEngine.local(analytics_root) as engine:
        yield engine


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_athena_returns_the_local_rows_and_shape(name: str, local: DuckDbEngine) -> None:
    fake = FakeAthena(local)
    athena = AthenaEngine("callvault-analytics", "callvault_analytics", fake, sleep=lambda _s: None)
    args = ReportArgs(keyword="refund", phone="+16125550101")
    remote, here = run_report(athena, name, args), run_report(local, name, args)
    assert remote.columns == here.columns
    assert remote.types == here.types
    assert remote.rows == here.rows
    assert here.rows, "the fixture set must exercise every report"
    [request] = fake.requests
    assert request["WorkGroup"] == "callvault-analytics"
    assert request["QueryExecutionContext"] == {"Database": "callvault_analytics"}
    assert request["QueryString"] == REPORTS[name].text()  # the Trino text, unchanged
    assert athena.last_bytes_scanned == 1234


def test_a_failed_query_raises_with_athenas_reason(local: DuckDbEngine) -> None:
    fake = FakeAthena(local, states=["RUNNING", "FAILED"])
    athena = AthenaEngine("wg", "db", fake, sleep=lambda _s: None)
    with pytest.raises(AthenaQueryFailed, match="exhausted resources"):
        athena.query("SELECT 1")
    assert fake.stopped == []  # a finished query is not stopped


def test_a_query_past_the_timeout_is_stopped(local: DuckDbEngine) -> None:
    fake = FakeAthena(local, states=["RUNNING"])
    athena = AthenaEngine("wg", "db", fake, timeout_secs=0.0, sleep=lambda _s: None)
    with pytest.raises(AthenaQueryFailed, match="still RUNNING"):
        athena.query("SELECT 1")
    assert fake.stopped == ["q1"]


def test_literals_cannot_break_out_of_their_quotes() -> None:
    assert athena_literal("it's") == "'it''s'"
    assert athena_literal("x' OR '1'='1") == "'x'' OR ''1''=''1'"
    assert athena_literal(5) == "5"
    assert athena_literal(None) == "NULL"


def test_requests_match_the_real_athena_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """botocore's Stubber validates every request against Athena's real service model."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    client = boto3.client("athena", region_name="us-east-1")
    report = REPORTS["keyword"]
    with Stubber(client) as stub:
        stub.add_response(
            "start_query_execution",
            {"QueryExecutionId": "abc"},
            {
                "QueryString": report.text(),
                "WorkGroup": "callvault-analytics",
                "QueryExecutionContext": {"Database": "callvault_analytics"},
                # the SQL lowers the keyword; a first page starts before the newest day's first turn
                "ExecutionParameters": ["'1970-01-01'", "'9999-12-31'", "'Refund'", "'9999-12-31'", "''", "''", "-1"],
            },
        )
        stub.add_response(
            "get_query_execution",
            {"QueryExecution": {"Status": {"State": "SUCCEEDED"}, "Statistics": {"DataScannedInBytes": 10}}},
            {"QueryExecutionId": "abc"},
        )
        stub.add_response(
            "get_query_results",
            {
                "ResultSet": {
                    "Rows": [
                        {"Data": [{"VarCharValue": "conversation_id"}, {"VarCharValue": "turn_index"}]},
                        {"Data": [{"VarCharValue": "conv_1"}, {"VarCharValue": "3"}]},
                    ],
                    "ResultSetMetadata": {
                        "ColumnInfo": [
                            {"Name": "conversation_id", "Type": "varchar"},
                            {"Name": "turn_index", "Type": "bigint"},
                        ]
                    },
                }
            },
            {"QueryExecutionId": ANY},
        )
        athena = AthenaEngine("callvault-analytics", "callvault_analytics", client, sleep=lambda _s: None)
        result = run_report(athena, "keyword", ReportArgs(keyword="Refund"))
        stub.assert_no_pending_responses()
    assert result.rows == [("conv_1", 3)]
    assert result.types == ["varchar", "bigint"]


def test_athena_pages_a_keyword_search_as_duckdb_does_reading_no_newer_day(local: DuckDbEngine) -> None:
    """The same pages from both engines; each later page's partition filter ends on the day of the last
    turn shown, so Athena prunes (and does not bill) every newer day."""
    fake = FakeAthena(local)
    athena = AthenaEngine("wg", "db", fake, sleep=lambda _s: None)

    def walk(engine: AthenaEngine | DuckDbEngine) -> list[list[tuple[str, str, int]]]:
        pages, args = [], ReportArgs(keyword="refund")
        while True:
            page = keyword_page(lambda name, a: run_report(engine, name, a), args, 4)
            pages.append([(r["day"], r["conversation_id"], r["turn_index"]) for r in page.rows])
            if page.next is None:
                return pages
            args = ReportArgs(keyword="refund", after=TurnPosition.parse(page.next.token()))

    remote, here = walk(athena), walk(local)
    assert remote == here and len(here) > 2
    assert [r["QueryString"] for r in fake.requests] == [REPORTS["keyword"].text(5)] * len(here)
    for request, previous in zip(fake.requests[1:], here, strict=False):
        since, until, _keyword, after_day, after_call, _same, after_turn = request["ExecutionParameters"]
        day, call, turn = previous[-1]
        assert (since, until, after_day, after_call, after_turn) == (
            "'1970-01-01'",
            f"'{day}'",
            f"'{day}'",
            f"'{call}'",
            str(turn),
        )

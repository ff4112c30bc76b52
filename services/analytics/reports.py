"""The standard reports: one SQL text each, run unchanged by DuckDB and by Athena (Trino).

The texts use only what both dialects read the same way: ``?`` parameters (DuckDB prepared
statements; Athena ``ExecutionParameters``), ``strpos``/``lower``, ``CAST(... AS DOUBLE)`` before
dividing (Trino divides integers as integers), ``nullif`` against division by zero, explicit
``NULLS LAST``. Tests parse every text as Trino with sqlglot and run it on DuckDB; no report needs a
dialect split today (``DIALECT_SPLITS`` is where one would go, and it is tested when not empty).

Every report filters on the partition column ``dt`` (inclusive ``since``/``until`` dates), so
Athena reads only the partitions in range (partition projection prunes by the predicate).
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Literal, Protocol

from .result import QueryResult

Param = Literal["since", "until", "keyword", "phone", "after_day", "after_call", "after_turn"]
ChartKind = Literal["per_day", "rate"]
ALL_TIME_SINCE = "1970-01-01"
ALL_TIME_UNTIL = "9999-12-31"
DEFAULT_LIMIT = 20
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


Dialect = Literal["trino", "duckdb"]


class Engine(Protocol):
    @property
    def dialect(self) -> Dialect: ...

    def query(self, sql: str, params: Sequence[object] = ()) -> QueryResult: ...


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    description: str
    sql: str  # Trino text with ``?`` parameters and an optional ``{limit}``
    params: tuple[Param, ...] = ("since", "until")
    limit: int | None = None  # the default row limit, when the report has one
    chart: ChartKind | None = None

    def text(self, limit: int | None = None, sql: str | None = None) -> str:
        """The SQL to run: ``{limit}`` filled with a validated integer (never user text)."""
        text = self.sql if sql is None else sql
        if self.limit is None:
            return text
        value = self.limit if limit is None else limit
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100_000:
            raise ValueError("limit must be an integer from 1 to 100000")
        return text.replace("{limit}", str(value))


REPORTS: dict[str, Report] = {
    r.name: r
    for r in (
        Report(
            "calls-per-day",
            "Calls per day",
            "Calls, successes, minutes and cost per UTC day.",
            """\
SELECT dt AS day,
       count(*) AS calls,
       sum(CASE WHEN call_successful = 'success' THEN 1 ELSE 0 END) AS successful,
       round(avg(duration_secs), 1) AS avg_duration_secs,
       sum(duration_secs) AS total_duration_secs,
       round(sum(cost_usd), 4) AS total_cost_usd,
       sum(cost_credits) AS total_cost_credits
FROM calls
WHERE dt BETWEEN ? AND ?
GROUP BY dt
ORDER BY dt""",
            chart="per_day",
        ),
        Report(
            "agents",
            "Calls per agent",
            "Calls, average and total duration, and total cost per agent.",
            """\
SELECT agent_id,
       max(agent_name) AS agent_name,
       count(*) AS calls,
       round(avg(duration_secs), 1) AS avg_duration_secs,
       sum(duration_secs) AS total_duration_secs,
       round(sum(cost_usd), 4) AS total_cost_usd,
       sum(cost_credits) AS total_cost_credits
FROM calls
WHERE dt BETWEEN ? AND ?
GROUP BY agent_id
ORDER BY calls DESC, agent_id ASC NULLS LAST""",
        ),
        Report(
            "success-rate",
            "Success rate per agent",
            "ElevenLabs' call_successful per agent; the rate is successful / (successful + failed).",
            """\
SELECT agent_id,
       max(agent_name) AS agent_name,
       count(*) AS calls,
       sum(CASE WHEN call_successful = 'success' THEN 1 ELSE 0 END) AS successful,
       sum(CASE WHEN call_successful = 'failure' THEN 1 ELSE 0 END) AS failed,
       sum(CASE WHEN call_successful IN ('success', 'failure') THEN 0 ELSE 1 END) AS unknown,
       round(CAST(sum(CASE WHEN call_successful = 'success' THEN 1 ELSE 0 END) AS DOUBLE)
             / nullif(sum(CASE WHEN call_successful IN ('success', 'failure') THEN 1 ELSE 0 END), 0), 4)
         AS success_rate
FROM calls
WHERE dt BETWEEN ? AND ?
GROUP BY agent_id
ORDER BY success_rate DESC NULLS LAST, agent_id ASC NULLS LAST""",
            chart="rate",
        ),
        Report(
            "top-callers",
            "Top callers",
            "The phone numbers that called (or were called) most.",
            """\
SELECT phone,
       count(*) AS calls,
       sum(duration_secs) AS total_duration_secs,
       round(sum(cost_usd), 4) AS total_cost_usd,
       min(start_time) AS first_call,
       max(start_time) AS last_call
FROM calls
WHERE dt BETWEEN ? AND ? AND phone IS NOT NULL
GROUP BY phone
ORDER BY calls DESC, phone ASC
LIMIT {limit}""",
            limit=DEFAULT_LIMIT,
        ),
        Report(
            "criteria",
            "Evaluation pass rate per criterion",
            "ElevenLabs evaluation criteria, most failing first; the rate is passed / (passed + failed).",
            """\
SELECT criteria_id,
       count(*) AS evaluated,
       sum(CASE WHEN result = 'success' THEN 1 ELSE 0 END) AS passed,
       sum(CASE WHEN result = 'failure' THEN 1 ELSE 0 END) AS failed,
       sum(CASE WHEN result IN ('success', 'failure') THEN 0 ELSE 1 END) AS unknown,
       round(CAST(sum(CASE WHEN result = 'success' THEN 1 ELSE 0 END) AS DOUBLE)
             / nullif(sum(CASE WHEN result IN ('success', 'failure') THEN 1 ELSE 0 END), 0), 4) AS pass_rate
FROM evaluations
WHERE dt BETWEEN ? AND ? AND kind = 'criterion'
GROUP BY criteria_id
ORDER BY pass_rate ASC NULLS LAST, criteria_id ASC""",
            chart="rate",
        ),
        Report(
            "keyword",
            "Keyword search",
            "Transcript turns containing the keyword (case-insensitive), with their conversation ids.",
            """\
SELECT conversation_id,
       dt AS day,
       phone,
       agent_id,
       turn_index,
       role,
       time_in_call_secs,
       text
FROM messages
WHERE dt BETWEEN ? AND ? AND strpos(lower(text), lower(?)) > 0
  AND (dt < ? OR conversation_id > ? OR (conversation_id = ? AND turn_index > ?))
ORDER BY dt DESC, conversation_id ASC, turn_index ASC
LIMIT {limit}""",
            params=("since", "until", "keyword", "after_day", "after_call", "after_call", "after_turn"),
            limit=200,
        ),
        Report(
            "caller",
            "One caller's history",
            "Every call of one phone number, newest first.",
            """\
SELECT conversation_id,
       start_time,
       direction,
       agent_id,
       agent_name,
       duration_secs,
       call_successful,
       cost_usd,
       cost_credits,
       termination_reason,
       summary_title,
       has_audio
FROM calls
WHERE dt BETWEEN ? AND ? AND phone = ?
ORDER BY started_at DESC, conversation_id ASC
LIMIT {limit}""",
            params=("since", "until", "phone"),
            limit=500,
        ),
    )
}

# Reports whose DuckDB text must differ from the Trino one: {name: duckdb_sql}. Empty on purpose.
DIALECT_SPLITS: dict[str, str] = {}


@dataclass(frozen=True)
class TurnPosition:
    """Where a keyword search stopped: the last turn shown, in the report's order (day newest first,
    then conversation id, then turn). The next page is the turns after it: a keyset, not an OFFSET, so
    a page costs the same however deep it is, and on Athena it reads only the days up to ``day``."""

    day: str  # YYYY-MM-DD
    conversation_id: str
    turn_index: int

    def token(self) -> str:
        """The position as a cursor: ``2025-07-06.conv_abc.3`` ('.' is in no day or conversation id)."""
        return f"{self.day}.{self.conversation_id}.{self.turn_index}"

    @classmethod
    def parse(cls, token: str) -> "TurnPosition":
        """The position a ``token()`` wrote; ValueError for anything else."""
        match = _POSITION.fullmatch(token)
        if match is None:
            raise ValueError("cursor is not valid: pass back next_cursor unchanged")
        day, conversation_id, turn = match.groups()
        try:
            date.fromisoformat(day)
        except ValueError:
            raise ValueError("cursor is not valid: pass back next_cursor unchanged") from None
        return cls(day, conversation_id, int(turn))


_POSITION = re.compile(r"^(\d{4}-\d{2}-\d{2})\.([A-Za-z0-9_-]{1,128})\.(\d{1,9})$")


@dataclass(frozen=True)
class ReportArgs:
    since: date | None = None
    until: date | None = None
    keyword: str | None = None
    phone: str | None = None  # E.164, already normalised
    limit: int | None = None
    after: TurnPosition | None = None  # keyword: the turns after this one (the next page)


def bind(report: Report, args: ReportArgs) -> list[str | int]:
    """The report's parameter values in order. Raises ValueError when one it needs is missing."""
    values: list[str | int] = []
    until = args.until.isoformat() if args.until else ALL_TIME_UNTIL
    if args.after is not None and "after_day" in report.params:
        # Turns after the position are on its day or older: the partition filter says so too, so
        # Athena reads no partition newer than the page's last turn.
        until = min(until, args.after.day)
    # Without a position the page starts before the first turn of the newest day: no conversation id is ''.
    after = args.after or TurnPosition(until, "", -1)
    for name in report.params:
        if name == "since":
            values.append(args.since.isoformat() if args.since else ALL_TIME_SINCE)
        elif name == "until":
            values.append(until)
        elif name == "after_day":
            values.append(after.day)
        elif name == "after_call":
            values.append(after.conversation_id)
        elif name == "after_turn":
            values.append(after.turn_index)
        elif name == "keyword":
            # Lowered by the engine, as the text is: Python's lower() differs on a few letters ("İ").
            keyword = (args.keyword or "").strip()
            if not keyword:
                raise ValueError(f"report {report.name} needs a keyword (--keyword)")
            values.append(keyword)
        else:
            if not args.phone:
                raise ValueError(f"report {report.name} needs a phone number (--phone)")
            values.append(args.phone)
    for value, name in zip(values, report.params, strict=True):
        if name in {"since", "until", "after_day"} and not _DAY.fullmatch(str(value)):
            raise ValueError(f"{name} must be a date, YYYY-MM-DD")
    return values


def sql_for(report: Report, dialect: Dialect, limit: int | None = None) -> str:
    return report.text(limit, DIALECT_SPLITS.get(report.name) if dialect == "duckdb" else None)


def run_report(engine: Engine, name: str, args: ReportArgs) -> QueryResult:
    report = REPORTS[name]
    return engine.query(sql_for(report, engine.dialect, args.limit), bind(report, args))


@dataclass(frozen=True)
class KeywordPage:
    rows: list[dict[str, Any]]
    next: TurnPosition | None  # the last row's position when more turns match, else None


def keyword_page(run: Callable[[str, ReportArgs], QueryResult], args: ReportArgs, size: int) -> KeywordPage:
    """One page of the keyword report through ``run`` (``AnalyticsReader.run``, or ``run_report`` bound
    to an engine): ``size`` rows after ``args.after``, and where the next page starts."""
    result, position = keyword_result(run, args, size)
    return KeywordPage(result.dicts(), position)


def keyword_result(
    run: Callable[[str, ReportArgs], QueryResult], args: ReportArgs, size: int
) -> tuple[QueryResult, TurnPosition | None]:
    """``keyword_page`` as a ``QueryResult`` (for the CLI's formats). One turn more than shown is asked
    for, so "more" is known without a count (a count would read every day again)."""
    result = run("keyword", replace(args, limit=size + 1))
    if len(result.rows) <= size:
        return result, None
    last = dict(zip(result.columns, result.rows[size - 1], strict=True))
    position = TurnPosition(str(last["day"]), str(last["conversation_id"]), int(last["turn_index"]))
    return replace(result, rows=result.rows[:size]), position

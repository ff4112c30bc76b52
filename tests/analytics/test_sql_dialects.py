"""One SQL text per report, valid Trino (Athena) and run as-is by DuckDB."""

from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from services.analytics.duckdb_engine import DuckDbEngine
from services.analytics.reports import DIALECT_SPLITS, REPORTS, ReportArgs, bind, sql_for
from services.analytics.tables import TABLES, current_rows_sql

ARGS = ReportArgs(keyword="refund", phone="+16125550101")


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_report_sql_parses_as_trino(name: str) -> None:
    report = REPORTS[name]
    tree = sqlglot.parse_one(report.text(), read="trino", error_level=sqlglot.ErrorLevel.RAISE)
    assert isinstance(tree, exp.Select)
    tables = {t.name for t in tree.find_all(exp.Table)}
    assert tables <= {"calls", "messages", "evaluations"}
    assert len(list(tree.find_all(exp.Placeholder))) == len(report.params)
    # Every report prunes by partition: Athena must not read the whole table.
    where = tree.args.get("where")
    assert where is not None and any(c.name == "dt" for c in where.find_all(exp.Column))


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_sqlglot_reads_the_same_query_in_both_dialects(name: str, analytics_root: Path) -> None:
    """sqlglot's Trino->DuckDB translation of our text returns exactly what the text itself returns
    in DuckDB: the text means the same in both dialects (or sqlglot would have rewritten it)."""
    text = sql_for(REPORTS[name], "trino")
    translated = sqlglot.transpile(text, read="trino", write="duckdb")[0]
    with DuckDbEngine.local(analytics_root) as engine:
        params = bind(REPORTS[name], ARGS)
        assert engine.query(translated, params).rows == engine.query(text, params).rows


@pytest.mark.parametrize("table", TABLES)
def test_the_current_rows_view_means_the_same_in_both_dialects(table: str, analytics_root: Path) -> None:
    """The text of Athena's view (infra/analytics.yaml) is the text of DuckDB's: as for the reports."""
    text = current_rows_sql(table)
    translated = sqlglot.transpile(text, read="trino", write="duckdb")[0]
    with DuckDbEngine.local(analytics_root) as engine:
        rows = engine.query(f"{text} ORDER BY ALL").rows
        assert rows and engine.query(f"{translated} ORDER BY ALL").rows == rows


def test_dialect_splits_stay_small_and_valid() -> None:
    assert len(DIALECT_SPLITS) <= 2, "one SQL text per report: justify every split in docs/analytics.md"
    for name, duckdb_sql in DIALECT_SPLITS.items():
        assert name in REPORTS
        sqlglot.parse_one(duckdb_sql.replace("{limit}", "1"), read="duckdb")
        assert sql_for(REPORTS[name], "trino") != sql_for(REPORTS[name], "duckdb")
    for name in set(REPORTS) - set(DIALECT_SPLITS):
        assert sql_for(REPORTS[name], "trino") == sql_for(REPORTS[name], "duckdb")


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_every_division_is_floating_point_in_trino(name: str) -> None:
    """Trino divides integers as integers (3 / 4 = 0) where DuckDB gives 0.75, and sqlglot cannot
    see the types: so every division casts one side to DOUBLE, or Athena's rates would all be 0."""
    tree = sqlglot.parse_one(REPORTS[name].text(), read="trino")
    for division in tree.find_all(exp.Div):
        casts = [
            cast
            for side in (division.this, division.expression)
            for cast in side.find_all(exp.Cast)
            if cast.to.this == exp.DataType.Type.DOUBLE
        ]
        assert casts, f"{name}: {division.sql('trino')} is integer division in Trino"

"""``callvault report``, ``callvault sql``, ``callvault backfill-analytics`` and ``callvault compact-analytics``.

Reports run on DuckDB over the local tables (``<data-dir>/analytics``), on DuckDB straight from a
bucket (``--source s3://...``), or on Athena (``--athena``); all three print the same columns.
DuckDB, boto3 and matplotlib are imported inside the commands so ``callvault --help`` stays fast.
"""

import csv
import importlib.util
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.analytics.reports import REPORTS
from services.cli.options import (
    DATA_DIR_OPTION,
    INSTANT,
    archive_settings,
    progress_bars,
    require_archive,
    settings_for,
    terminal_text,
)
from services.core.config import Settings

_T = TypeVar("_T")

if TYPE_CHECKING:
    from services.analytics.reports import Engine
    from services.analytics.result import QueryResult

FORMAT_OPTION = click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="How to print the rows.",
)
SOURCE_OPTION = click.option(
    "--source",
    default=None,
    metavar="s3://BUCKET[/PREFIX]",
    help="Read the tables straight from S3 with DuckDB [default: the local tables; with "
    "CALLVAULT_BACKEND=aws, s3://$CALLVAULT_ANALYTICS_BUCKET].",
)
NO_CACHE_OPTION = click.option(
    "--no-cache", is_flag=True, help="Read the local files directly instead of through the cache (slower)."
)
ATHENA_OPTION = click.option(
    "--athena",
    is_flag=True,
    help="Run on Amazon Athena (needs AWS credentials and a region; workgroup and database from CALLVAULT_ATHENA_*).",
)
CACHE_FILE = "analytics-cache.duckdb"


def _engine(
    settings: Settings,
    data_dir: Path | None,
    *,
    athena: bool,
    source: str | None,
    no_cache: bool,
    read_only: bool = False,
) -> "Engine":
    if athena:
        from botocore.exceptions import NoRegionError

        from services.analytics.athena_engine import AthenaEngine

        try:
            return AthenaEngine(settings.athena_workgroup, settings.athena_database)
        except NoRegionError:
            raise click.ClickException(
                "--athena needs AWS settings: a region (AWS_REGION, or a profile's region), credentials, and "
                "CALLVAULT_ATHENA_WORKGROUP / CALLVAULT_ATHENA_DATABASE if not the defaults (docs/analytics.md)"
            ) from None
    from services.analytics.duckdb_engine import DuckDbEngine

    if source is None and settings.backend == "aws" and settings.analytics_bucket:
        source = f"s3://{settings.analytics_bucket}"
    if source is not None:
        return DuckDbEngine.s3(source, read_only=read_only)
    require_archive(settings, data_dir)
    root = settings.data_dir / "analytics"
    cache = None if no_cache else settings.data_dir / CACHE_FILE
    if cache is not None and not cache.exists() and root.is_dir():
        click.echo(f"Building the analytics cache {cache} (first run; later runs read only new partitions)", err=True)
    return DuckDbEngine.local(root, cache, read_only=read_only)


def _utc_day(seconds: int | None) -> date | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).date()


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


def print_result(result: "QueryResult", output_format: str, title: str | None = None) -> None:
    if output_format == "json":
        rows = [{c: _plain(v) for c, v in zip(result.columns, row, strict=True)} for row in result.rows]
        sys.stdout.buffer.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.flush()
        return
    if output_format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(result.columns)
        for row in result.rows:
            writer.writerow(["" if v is None else _csv_cell(_plain(v)) for v in row])
        return
    table = Table(title=title, title_justify="left")
    for name, kind in zip(result.columns, result.types, strict=True):
        table.add_column(name, justify="right" if kind in {"bigint", "double"} else "left", overflow="fold")
    for row in result.rows:
        table.add_row(*[_percent(v) if _is_rate(c) else _cell(v) for c, v in zip(result.columns, row, strict=True)])
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    console.print(f"{len(result.rows)} row(s)", style="dim")


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection"), and agent
# names, summaries and transcript words come from callers and upstream.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


_PLAIN_NUMBER = re.compile(r"[+-]?[0-9][0-9.]*")  # "+16125550142", "-3.5": a number to a spreadsheet, no formula


def _csv_cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula, prefixed with ' so it shows as text; numbers as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def _is_rate(column: str) -> bool:
    """``success_rate``, ``pass_rate``: fractions in CSV and JSON (for programs), percent in tables and charts."""
    return column.endswith("_rate")


def _percent(value: Any) -> str:
    return f"{100 * float(value):.1f}%" if isinstance(value, int | float | Decimal) else _cell(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    # Text from calls ("[laughs]" in an agent's message) is shown as it is, never read as Rich markup,
    # and a control character in it never reaches the terminal.
    return escape(terminal_text(value))


@click.command()
@click.argument("name", type=click.Choice(sorted(REPORTS)), metavar="NAME")
@click.option(
    "--since",
    type=INSTANT,
    default=None,
    help="First day: a date, ISO time or unix seconds, as for `calls --since`; a time counts as its UTC day "
    "[default: all time].",
)
@click.option("--until", type=INSTANT, default=None, help="Last day (UTC), inclusive; same forms [default: all time].")
@click.option("--keyword", "-k", default=None, help="keyword: the word or phrase to find (case-insensitive).")
@click.option("--phone", default=None, help="caller: the phone number, in any common format.")
@click.option(
    "--limit", type=click.IntRange(1, 100_000), default=None, help="Row limit (top-callers, keyword, caller)."
)
@click.option(
    "--after",
    default=None,
    metavar="CURSOR",
    help="keyword: the next page, from the cursor the previous page printed (DAY.CONVERSATION.TURN).",
)
@FORMAT_OPTION
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write a PNG chart.")
@ATHENA_OPTION
@SOURCE_OPTION
@NO_CACHE_OPTION
@DATA_DIR_OPTION
def report(
    name: str,
    since: int | None,
    until: int | None,
    keyword: str | None,
    phone: str | None,
    limit: int | None,
    after: str | None,
    output_format: str,
    chart: Path | None,
    athena: bool,
    source: str | None,
    no_cache: bool,
    data_dir: Path | None,
) -> None:
    """Run a standard report.

    \b
    NAME is one of:
      calls-per-day   calls, successes, minutes and cost per UTC day      (--chart)
      agents          calls, average duration and total cost per agent
      success-rate    success rate per agent                              (--chart)
      top-callers     the numbers with the most calls
      criteria        evaluation pass rate per criterion, failing first  (--chart)
      keyword         transcript turns containing --keyword, with their conversation ids;
                      newest first, --limit (200) a page, --after for the next one
      caller          one caller's history (--phone)

    \b
    Examples:
      callvault report calls-per-day --since 2025-07-01 --chart calls.png
      callvault report keyword -k refund --format csv > refunds.csv
      callvault report success-rate --athena
    """
    from services.analytics.reports import ReportArgs, run_report
    from services.core.domain.errors import CallVaultError
    from services.web.params import parse_phone

    settings = settings_for(data_dir)
    chosen = REPORTS[name]
    first, last = _utc_day(since), _utc_day(until)
    if first is not None and last is not None and first > last:
        raise click.BadParameter("--since is after --until", param_hint="--since")
    e164 = None
    if phone is not None:  # read as `calls --phone` reads it: a number that cannot match is refused, saying why
        try:
            e164 = parse_phone(phone, settings.default_region)
        except CallVaultError as exc:
            raise click.BadParameter(exc.message, param_hint="--phone") from None
    if chart is not None and chosen.chart is None:
        raise click.UsageError(f"report {name} has no chart; charts: calls-per-day, success-rate, criteria")
    if chart is not None and importlib.util.find_spec("matplotlib") is None:  # checked before the query runs
        raise click.ClickException(
            "--chart needs matplotlib, an optional extra `make serve` leaves out: "
            "run .venv/bin/pip install -c constraints.txt -e '.[charts]' in the clone (or use make test's venv), "
            "then again"
        )
    from services.analytics.reports import TurnPosition, bind, keyword_result

    position = None
    if after is not None:
        if name != "keyword":
            raise click.UsageError("--after pages the keyword report only")
        try:
            position = TurnPosition.parse(after.strip())
        except ValueError:
            raise click.BadParameter(
                "not a cursor: pass the one the previous page printed (like 2025-07-06.conv_abc.3)",
                param_hint="--after",
            ) from None
    args = ReportArgs(first, last, keyword, e164, limit, position)
    try:
        bind(chosen, args)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    engine = _engine(settings, data_dir, athena=athena, source=source, no_cache=no_cache)
    following = None
    try:
        if name == "keyword":  # a page, and where the next one starts
            size = limit or chosen.limit or 200
            result, following = _run(lambda: keyword_result(lambda n, a: run_report(engine, n, a), args, size))
        else:
            result = _run(lambda: run_report(engine, name, args))
    finally:
        _close(engine)
    print_result(result, output_format, chosen.title)
    if following is not None:  # on stderr: a CSV or JSON on stdout stays just the rows
        click.echo(f"More turns match: the next page is --after {following.token()}", err=True)
    _report_athena_bytes(engine)
    if chart is not None:
        from services.analytics.charts import render

        period = f"{args.since or 'start'} to {args.until or 'today'}" if first or last else "all time"
        render(chosen, result, chart, subtitle=period, since=first, until=last)
        click.echo(f"Chart written to {chart}", err=True)


@click.command()
@click.argument("query")
@FORMAT_OPTION
@ATHENA_OPTION
@SOURCE_OPTION
@NO_CACHE_OPTION
@DATA_DIR_OPTION
def sql(
    query: str, output_format: str, athena: bool, source: str | None, no_cache: bool, data_dir: Path | None
) -> None:
    """Run read-only SQL over the tables calls, messages and evaluations (the Glue names: each call's
    current rows, counted once); - reads stdin.

    Only statements that read run (SELECT, WITH, DESCRIBE, SHOW, EXPLAIN, ...); anything that could
    change data or files (DROP, DELETE, INSERT, CREATE, ATTACH, COPY, INSTALL, LOAD, SET) is refused.

    \b
    Examples:
      callvault sql "SELECT dt, count(*) FROM calls GROUP BY dt ORDER BY dt"
      callvault sql "SELECT criteria_id, result, count(*) FROM evaluations GROUP BY 1, 2"
      callvault sql --source s3://my-analytics-bucket "SELECT count(*) FROM messages"
    """
    import duckdb

    from services.analytics.duckdb_engine import QueryRefused, check_read_only

    text = sys.stdin.read() if query == "-" else query
    try:  # refused before any engine opens; DuckDB then also runs it on a read-only connection
        if athena:
            _check_athena_read_only(text)
        else:
            check_read_only(text)
    except (QueryRefused, duckdb.Error) as exc:
        raise click.ClickException(str(exc).strip()) from None
    engine = _engine(settings_for(data_dir), data_dir, athena=athena, source=source, no_cache=no_cache, read_only=True)
    try:
        result = _run(lambda: engine.query(text))
    finally:
        _close(engine)
    print_result(result, output_format)
    _report_athena_bytes(engine)


_ATHENA_READS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "EXPLAIN", "VALUES", "(")


def _check_athena_read_only(text: str) -> None:
    """Athena runs one statement per query, in Trino's dialect (which DuckDB's parser need not accept):
    it must start with a reading keyword, and EXPLAIN ANALYZE (which runs its statement) is refused."""
    from services.analytics.duckdb_engine import QueryRefused

    words = text.lstrip().upper().split(None, 2)
    first = words[0] if words else ""
    if not first.startswith(_ATHENA_READS) or (first == "EXPLAIN" and words[1:2] == ["ANALYZE"]):
        raise QueryRefused(f"{first or 'an empty statement'} refused: this SQL is read-only (SELECT, WITH, SHOW, ...)")


def _close(engine: "Engine") -> None:
    """A DuckDB file stays free for the next command, and for the next engine of this process."""
    from services.analytics.duckdb_engine import DuckDbEngine

    if isinstance(engine, DuckDbEngine):
        engine.close()


def _run(call: Callable[[], _T]) -> _T:
    import duckdb
    from botocore.exceptions import BotoCoreError, ClientError

    from services.analytics.athena_engine import AthenaQueryFailed

    try:
        result = call()
    except (duckdb.Error, AthenaQueryFailed) as exc:
        raise click.ClickException(str(exc).strip()) from None
    except (BotoCoreError, ClientError) as exc:  # no credentials, no such workgroup, access denied, ...
        raise click.ClickException(f"Athena: {exc}") from None
    return result


def _report_athena_bytes(engine: object) -> None:
    scanned = getattr(engine, "last_bytes_scanned", None)
    if scanned is not None:
        cost = max(scanned, 10 * 1024 * 1024) / 1024**4 * 5.0
        click.echo(f"Athena scanned {scanned / 1e6:,.2f} MB (about ${cost:.6f} at $5/TB, 10 MB minimum)", err=True)


@click.command(name="backfill-analytics")
@click.option("--prune", is_flag=True, help="Also delete rows of calls that are no longer in the archive.")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True, help="Calls processed at once.")
@DATA_DIR_OPTION
def backfill_analytics(prune: bool, workers: int, data_dir: Path | None) -> None:
    """Rebuild the analytics tables from the archive (calls archived before them, or after a schema change).

    Safe to run again and alongside the live webhook: each call's rows are overwritten in place.
    Closed days are merged into one object per table at the end; until then a call whose start
    moved to another day can be counted in both days.
    """
    from services.analytics.backfill import backfill_analytics as run_backfill
    from services.core.wiring import build_analytics_store, build_erased, build_storage

    settings = archive_settings(data_dir)
    storage = build_storage(settings)
    analytics = build_analytics_store(settings)
    erased = build_erased(settings)  # a call `forget` erases while the run writes it keeps no rows
    with progress_bars() as bar:
        summary = run_backfill(
            storage.blobs,
            storage.index,
            analytics,
            default_region=settings.default_region,
            prune=prune,
            workers=workers,
            progress=bar("backfilling calls"),
            compaction_progress=bar("merging closed days"),
            is_erased=erased.is_erased if erased is not None else None,
        )
    click.echo(
        f"{summary.calls} calls, {summary.messages} messages, {summary.evaluations} evaluation rows written; "
        f"{summary.deleted} superseded objects deleted; {summary.days_compacted} closed day objects merged; "
        f"{summary.expired} calls left out (rows expired under retention); "
        + (f"{summary.erased} calls erased meanwhile, their rows removed; " if summary.erased else "")
        + (f"{summary.behind} calls left to an unfinished delivery (its retry); " if summary.behind else "")
        + f"{len(summary.failed)} failed",
        err=True,
    )
    for key, reason in summary.failed[:20]:
        click.echo(f"failed {key}: {reason}", err=True)
    if summary.failed:
        sys.exit(1)


@click.command(name="compact-analytics")
@DATA_DIR_OPTION
def compact_analytics(data_dir: Path | None) -> None:
    """Merge each closed day's per-call objects into one object per table.

    A day is closed two UTC dates after it (a call on Monday is merged from Wednesday 00:00).
    `callvault serve` does this when it starts and every hour, and the AWS stack every hour: run it
    by hand for tables whose days closed while no server was running. Safe beside the live webhook
    and against itself: no row is lost, and none is counted twice once it ends.
    """
    from services.analytics.compaction import compact_closed_days
    from services.core.wiring import build_analytics_store

    analytics = build_analytics_store(archive_settings(data_dir))
    with progress_bars() as bar:
        summary = compact_closed_days(analytics, progress=bar("merging closed days"))
    click.echo(f"{summary.written} day objects written from {summary.objects_merged} per-call objects", err=True)
    for table, dt, why in summary.failed[:20]:
        click.echo(f"not merged: {table}/dt={dt}: {why}", err=True)
    if summary.failed:
        click.echo(f"{len(summary.failed)} days not merged: run again (their per-call objects are kept)", err=True)
        sys.exit(1)


ANALYTICS_COMMANDS: Sequence[click.Command] = (report, sql, backfill_analytics, compact_analytics)

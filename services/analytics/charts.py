"""PNG charts for the reports people look at rather than read: calls per day and the rate reports.

matplotlib with the Agg backend (no display needed), imported only when a chart is asked for.
"""

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from .reports import Report
from .result import QueryResult

SUCCESS_COLOUR = "#2e8b57"
FAILURE_COLOUR = "#c0392b"
NEUTRAL_COLOUR = "#4c72b0"
OTHER_COLOUR = "#b0b7c3"
MAX_DAYS = 4000  # a longer span is drawn from the first to the last day with calls
MIN_BAR_PERCENT = 1.0  # a 0 % bar is drawn this wide, so it is seen (its label says 0.0 %)


class ChartUnavailable(ValueError):
    """The report has no chart (tables of phone numbers or turns are for reading)."""


def render(
    report: Report,
    result: QueryResult,
    path: Path,
    *,
    subtitle: str = "",
    since: date | None = None,
    until: date | None = None,
) -> None:
    """Write the report's PNG chart; ``since``/``until`` (inclusive days) set a per-day chart's span."""
    if report.chart is None:
        raise ChartUnavailable(f"report {report.name} has no chart; charts: calls-per-day, success-rate, criteria")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.dicts()
    figure = _per_day(plt, daily_series(rows, since, until)) if report.chart == "per_day" else _rates(plt, report, rows)
    title = report.title + (f" — {subtitle}" if subtitle else "")
    figure.suptitle(title, fontsize=14, fontweight="bold", x=0.01, ha="left")
    figure.savefig(path, format="png", dpi=120)
    plt.close(figure)


def daily_series(
    rows: list[dict[str, Any]], since: date | None = None, until: date | None = None
) -> list[tuple[date, int, int]]:
    """``(day, calls, successful)`` for every day of the span, 0 on days without calls: a gap in the
    calls is a gap on the axis. The span is ``since``..``until`` where given, else the rows' first/last day."""
    found = {date.fromisoformat(str(r["day"])[:10]): (int(r["calls"] or 0), int(r["successful"] or 0)) for r in rows}
    first = since or (min(found) if found else until)
    last = until or (max(found) if found else since)
    if first is None or last is None or first > last:
        return []
    if (last - first).days >= MAX_DAYS and found:
        first, last = max(first, min(found)), min(last, max(found))
    days = [first + timedelta(days=n) for n in range(min((last - first).days + 1, MAX_DAYS))]
    return [(day, *found.get(day, (0, 0))) for day in days]


def _per_day(plt: Any, series: list[tuple[date, int, int]]) -> Any:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.ticker import MaxNLocator

    days = [day for day, _calls, _ok in series]
    calls = [count for _day, count, _ok in series]
    successful = [ok for _day, _count, ok in series]
    other = [c - s for c, s in zip(calls, successful, strict=True)]
    width = max(8.0, min(20.0, 0.35 * len(days) + 3))
    figure, axis = plt.subplots(figsize=(width, 5), layout="constrained")
    # A legend entry only for a series that has data; matplotlib leaves out labels starting with "_".
    axis.bar(days, successful, width=0.8, color=SUCCESS_COLOUR, label="successful" if any(successful) else "_")
    axis.bar(
        days, other, width=0.8, bottom=successful, color=OTHER_COLOUR, label="failed or unknown" if any(other) else "_"
    )
    axis.set_ylabel("calls")
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))  # no 0.5 calls
    axis.set_ylim(bottom=0, top=max(max(calls, default=0), 1) * 1.1)
    locator = AutoDateLocator(maxticks=15)  # type: ignore[no-untyped-call]
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axis.spines[["top", "right"]].set_visible(False)
    axis.grid(axis="y", alpha=0.3)
    if any(calls):
        axis.legend(frameon=False, loc="upper left")
    if days:
        total = sum(calls)
        axis.set_title(
            f"{days[0]} to {days[-1]} · {total:,} calls · {total / len(days):,.1f} per day over {len(days):,} days",
            loc="left",
            fontsize=10,
        )
    else:
        axis.set_title("no calls in this period", loc="left", fontsize=10)
    return figure


def _rates(plt: Any, report: Report, rows: list[dict[str, Any]]) -> Any:
    if report.name == "criteria":
        labels = [str(r["criteria_id"]) for r in rows]
        rates = [r["pass_rate"] for r in rows]
        counts = [int(r["passed"] or 0) + int(r["failed"] or 0) for r in rows]
        noun = "evaluated"
    else:
        labels = [str(r.get("agent_name") or r.get("agent_id") or "(no agent)") for r in rows]
        rates = [r["success_rate"] for r in rows]
        counts = [int(r["successful"] or 0) + int(r["failed"] or 0) for r in rows]
        noun = "with an outcome"
    height = max(2.5, 0.45 * len(labels) + 1.5)
    figure, axis = plt.subplots(figsize=(9, height), layout="constrained")
    positions = list(range(len(labels)))[::-1]  # first row on top
    values = [100.0 * (r or 0.0) for r in rates]
    colours = [SUCCESS_COLOUR if v >= 80 else NEUTRAL_COLOUR if v >= 50 else FAILURE_COLOUR for v in values]
    # 0 % is a sliver, not nothing; no rate (n/a) has no bar.
    drawn = [0.0 if r is None else max(v, MIN_BAR_PERCENT) for r, v in zip(rates, values, strict=True)]
    axis.barh(positions, drawn, color=colours)
    axis.set_yticks(positions, labels)
    axis.set_xlim(0, 112)
    axis.set_xlabel("%")
    for y, value, rate, count in zip(positions, values, rates, counts, strict=True):
        text = "n/a" if rate is None else f"{value:.1f}%"
        axis.text(value + 1, y, f"{text}  (n={count:,})", va="center", fontsize=9)
    axis.spines[["top", "right"]].set_visible(False)
    axis.grid(axis="x", alpha=0.3)
    axis.set_title(f"share of calls {noun}; green ≥ 80 %, red < 50 %", loc="left", fontsize=10)
    return figure

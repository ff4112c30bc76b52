"""PNG charts for the reports people look at rather than read: calls per day and the rate reports.

matplotlib with the Agg backend (no display needed), imported only when a chart is asked for.
"""

from pathlib import Path
from typing import Any

from .reports import Report
from .result import QueryResult

SUCCESS_COLOUR = "#2e8b57"
FAILURE_COLOUR = "#c0392b"
NEUTRAL_COLOUR = "#4c72b0"


class ChartUnavailable(ValueError):
    """The report has no chart (tables of phone numbers or turns are for reading)."""


def render(report: Report, result: QueryResult, path: Path, *, subtitle: str = "") -> None:
    if report.chart is None:
        raise ChartUnavailable(f"report {report.name} has no chart; charts: calls-per-day, success-rate, criteria")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.dicts()
    figure = _per_day(plt, rows) if report.chart == "per_day" else _rates(plt, report, rows)
    title = report.title + (f" — {subtitle}" if subtitle else "")
    figure.suptitle(title, fontsize=14, fontweight="bold", x=0.01, ha="left")
    figure.savefig(path, format="png", dpi=120)
    plt.close(figure)


def _per_day(plt: Any, rows: list[dict[str, Any]]) -> Any:
    days = [str(r["day"]) for r in rows]
    calls = [int(r["calls"] or 0) for r in rows]
    successful = [int(r["successful"] or 0) for r in rows]
    other = [c - s for c, s in zip(calls, successful, strict=True)]
    width = max(8.0, min(20.0, 0.35 * len(days) + 3))
    figure, axis = plt.subplots(figsize=(width, 5), layout="constrained")
    positions = list(range(len(days)))
    axis.bar(positions, successful, color=SUCCESS_COLOUR, label="successful")
    axis.bar(positions, other, bottom=successful, color="#b0b7c3", label="failed or unknown")
    axis.set_ylabel("calls")
    step = max(1, len(days) // 15)
    axis.set_xticks(positions[::step], [d[5:] if len(days) > 1 else d for d in days[::step]], rotation=45)
    axis.spines[["top", "right"]].set_visible(False)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(frameon=False, loc="upper left")
    if days:
        total = sum(calls)
        axis.set_title(
            f"{days[0]} to {days[-1]} · {total:,} calls · {total / len(days):,.1f} per day", loc="left", fontsize=10
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
    axis.barh(positions, values, color=colours)
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

"""The PNG charts tell the truth (issue #14): a continuous day axis (a gap in the calls is a gap on the
axis), whole-number ticks, the average over every day of the span, a legend only for series with data,
a visible 0 % bar; tables print rates as percent like the charts."""

import csv
import io
from datetime import date
from pathlib import Path
from typing import Any

import matplotlib
import pytest
from click.testing import CliRunner

from services.analytics.charts import MIN_BAR_PERCENT, _per_day, _rates, daily_series
from services.analytics.reports import REPORTS
from services.cli.main import cli
from tests.support import FIXTURES

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _rows(*days: tuple[str, int, int]) -> list[dict[str, Any]]:
    return [{"day": day, "calls": calls, "successful": ok} for day, calls, ok in days]


def test_daily_series_keeps_gaps_on_the_axis() -> None:
    series = daily_series(_rows(("2025-07-01", 2, 1), ("2025-07-25", 3, 0)))
    assert len(series) == 25 and series[0] == (date(2025, 7, 1), 2, 1) and series[-1] == (date(2025, 7, 25), 3, 0)
    assert all(calls == 0 for _day, calls, _ok in series[1:-1])


def test_daily_series_spans_since_to_until() -> None:
    series = daily_series(_rows(("2025-07-03", 1, 1)), date(2025, 7, 1), date(2025, 7, 10))
    assert [d.day for d, _c, _s in series] == list(range(1, 11))
    assert daily_series([], date(2025, 7, 1), date(2025, 7, 2)) == [(date(2025, 7, 1), 0, 0), (date(2025, 7, 2), 0, 0)]
    assert daily_series([]) == []


def test_per_day_chart_ticks_average_and_legend() -> None:
    figure = _per_day(plt, daily_series(_rows(("2025-07-01", 1, 0), ("2025-07-24", 2, 0))))
    try:
        axis = figure.axes[0]
        figure.canvas.draw()
        ticks = [t for t in axis.get_yticks() if axis.get_ylim()[0] <= t <= axis.get_ylim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)  # no 0.5 calls
        assert "3 calls · 0.1 per day over 24 days" in axis.get_title(loc="left")
        assert [t.get_text() for t in axis.get_legend().get_texts()] == ["failed or unknown"]  # no successes: no entry
        bars = [p for p in axis.patches if p.get_height() > 0]
        assert len(bars) == 2 and len(axis.patches) == 2 * 24  # one slot per day, two series
    finally:
        plt.close(figure)


def test_rate_chart_shows_zero_and_not_missing() -> None:
    report = REPORTS["criteria"]
    rows: list[dict[str, Any]] = [
        {"criteria_id": "a", "pass_rate": 0.0, "passed": 0, "failed": 3},
        {"criteria_id": "b", "pass_rate": None, "passed": 0, "failed": 0},
        {"criteria_id": "c", "pass_rate": 1.0, "passed": 3, "failed": 0},
    ]
    figure = _rates(plt, report, rows)
    try:
        widths = [p.get_width() for p in figure.axes[0].patches]
        assert widths == [MIN_BAR_PERCENT, 0.0, 100.0]
    finally:
        plt.close(figure)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("data")
    assert CliRunner().invoke(cli, ["import", str(FIXTURES), "--data-dir", str(target)]).exit_code == 0
    return target


def test_tables_print_rates_as_percent_and_files_keep_fractions(data_dir: Path) -> None:
    table = CliRunner().invoke(cli, ["report", "criteria", "--data-dir", str(data_dir)], terminal_width=200)
    assert table.exit_code == 0 and "100.0%" in table.stdout and "0.0%" in table.stdout
    out = CliRunner().invoke(cli, ["report", "criteria", "--format", "csv", "--data-dir", str(data_dir)]).stdout
    assert {row["pass_rate"] for row in csv.DictReader(io.StringIO(out))} >= {"0.0", "1.0"}


def test_chart_over_a_window_is_written(data_dir: Path, tmp_path: Path) -> None:
    args = [
        "report",
        "calls-per-day",
        "--since",
        "2025-06-20",
        "--until",
        "2025-07-10",
        "--chart",
        str(tmp_path / "c.png"),
    ]
    result = CliRunner().invoke(cli, [*args, "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")

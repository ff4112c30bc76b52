"""What the pages show, as plain data: a stored transcript read into turns, evaluations, data and tool
calls; report rows turned into chart geometry. Pure functions; the templates only lay them out."""

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

MAX_DAYS = 400  # a continuous axis beyond ~13 months is unreadable; older days are left out


def when(seconds: int | float | None) -> str:
    if seconds is None:
        return "—"
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%d %H:%M UTC")


def clock(seconds: int | float | None) -> str:
    """``m:ss`` (``h:mm:ss`` past an hour) for durations and turn times."""
    if seconds is None:
        return "—"
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str
    result: str | None
    is_error: bool


@dataclass(frozen=True)
class Turn:
    index: int
    role: str
    text: str
    time: float | None
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass(frozen=True)
class Evaluation:
    criterion: str
    result: str
    rationale: str


@dataclass(frozen=True)
class Collected:
    name: str
    value: str
    rationale: str


@dataclass(frozen=True)
class Conversation:
    turns: list[Turn]
    evaluations: list[Evaluation]
    collected: list[Collected]

    @property
    def tool_calls(self) -> list[tuple[Turn, ToolCall]]:
        return [(turn, call) for turn in self.turns for call in turn.tool_calls]


def read_conversation(raw: bytes) -> Conversation:
    """The parts of an archived ``data`` object the call page shows; tolerant of missing or odd fields
    (the archive keeps whatever ElevenLabs sent)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Conversation([], [], [])
    if not isinstance(data, dict):
        return Conversation([], [], [])
    turns: list[Turn] = []
    transcript = data.get("transcript")
    for index, entry in enumerate(transcript if isinstance(transcript, list) else []):
        if not isinstance(entry, dict):
            continue
        results = {
            r["request_id"]: r
            for r in _list(entry.get("tool_results"))
            if isinstance(r, dict) and isinstance(r.get("request_id"), str) and r["request_id"]
        }
        calls = []
        for call in _list(entry.get("tool_calls")):
            if not isinstance(call, dict):
                continue
            request_id = call.get("request_id")
            result = results.get(request_id) if isinstance(request_id, str) else None
            arguments = call.get("params_as_json")
            calls.append(
                ToolCall(
                    name=_text(call.get("tool_name")) or "(unnamed tool)",
                    arguments=_pretty(arguments) if isinstance(arguments, str) else _text(arguments),
                    result=_pretty(_text(result.get("result_value"))) if result else None,
                    is_error=bool(result and result.get("is_error")),
                )
            )
        turns.append(
            Turn(
                index,
                _text(entry.get("role")) or "unknown",
                _text(entry.get("message")),
                _number(entry.get("time_in_call_secs")),
                calls,
            )
        )
    analysis = data.get("analysis") if isinstance(data.get("analysis"), dict) else {}
    assert isinstance(analysis, dict)
    evaluations = [
        Evaluation(_text(v.get("criteria_id") or k), _text(v.get("result")) or "unknown", _text(v.get("rationale")))
        for k, v in _dict(analysis.get("evaluation_criteria_results")).items()
        if isinstance(v, dict)
    ]
    collected = [
        Collected(_text(v.get("data_collection_id") or k), _text(v.get("value")), _text(v.get("rationale")))
        for k, v in _dict(analysis.get("data_collection_results")).items()
        if isinstance(v, dict)
    ]
    return Conversation(turns, evaluations, collected)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _pretty(text: str) -> str:
    """Tool arguments and results arrive as JSON text: indented when they parse, as sent when not."""
    try:
        return orjson.dumps(orjson.loads(text), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return text


# -- charts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class DayChart:
    width: int
    height: int
    bars: list[Bar]
    successes: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    total: int
    first: str
    last: str
    left_out: int = 0  # calls on the days before ``first`` (a period longer than MAX_DAYS)
    left_out_from: str | None = None  # the first of those days

    @property
    def successful(self) -> int:
        return sum(bar.value for bar in self.successes)


def integer_ticks(top: int, count: int = 4) -> list[int]:
    """0 .. at least ``top`` in whole, round steps (1, 2, 5 x 10^n): never 2.5 calls."""
    if top <= 0:
        return [0, 1]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(1, int(step))
    return list(range(0, top + step, step)) if top % step else list(range(0, top + 1, step))


def per_day_chart(rows: list[dict[str, Any]], *, width: int = 720, height: int = 240) -> DayChart | None:
    """Calls per day on a continuous axis: every day from the first to the last, days without calls at 0."""
    counts: dict[date, tuple[int, int]] = {}
    for row in rows:
        day = date.fromisoformat(str(row["day"])[:10])
        counts[day] = (int(row.get("calls") or 0), int(row.get("successful") or 0))
    if not counts:
        return None
    last = max(counts)
    first = max(min(counts), last - timedelta(days=MAX_DAYS - 1))
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    left, bottom, top_pad = 40, 28, 8
    plot_w, plot_h = width - left - 8, height - bottom - top_pad
    peak = max(counts.get(d, (0, 0))[0] for d in days)
    ticks = integer_ticks(peak)
    scale = plot_h / ticks[-1]
    slot = plot_w / len(days)
    bar_w = max(1.0, slot * 0.8)
    bars, successes = [], []
    for i, day in enumerate(days):
        calls, ok = counts.get(day, (0, 0))
        x = left + i * slot + (slot - bar_w) / 2
        bars.append(Bar(x, top_pad + plot_h - calls * scale, bar_w, calls * scale, day.isoformat(), calls))
        successes.append(Bar(x, top_pad + plot_h - ok * scale, bar_w, ok * scale, day.isoformat(), ok))
    every = max(1, math.ceil(len(days) / 8))
    x_ticks = [Tick(left + i * slot + slot / 2, days[i].strftime("%b %d")) for i in range(0, len(days), every)]
    y_ticks = [Tick(top_pad + plot_h - t * scale, str(t)) for t in ticks]
    total = sum(counts.get(d, (0, 0))[0] for d in days)
    left_out = sum(calls for day, (calls, _) in counts.items() if day < first)
    return DayChart(
        width,
        height,
        bars,
        successes,
        y_ticks,
        x_ticks,
        total,
        days[0].isoformat(),
        days[-1].isoformat(),
        left_out,
        min(counts).isoformat() if left_out else None,
    )


@dataclass(frozen=True)
class RateRow:
    label: str
    rate: float | None  # 0..1, None when nothing had an outcome
    count: int
    bar_width: float  # in the chart's units (0..100), at least 0.5 so a 0% bar is still drawn


def rate_rows(
    rows: list[dict[str, Any]], *, label_keys: tuple[str, ...], rate_key: str, count_keys: tuple[str, str]
) -> list[RateRow]:
    out = []
    for row in rows:
        label = next((str(row[k]) for k in label_keys if row.get(k)), "(none)")
        rate = row.get(rate_key)
        value = float(rate) if rate is not None else None
        count = sum(int(row.get(k) or 0) for k in count_keys)
        out.append(RateRow(label, value, count, max(0.5, 100.0 * (value or 0.0))))
    return out

"""Flatten one archived call into rows of the three analytics tables (pure functions, no I/O).

The call-level facts come from the same ``CallRecord`` the index stores (one reading of the payload,
so the index and the tables never disagree about phone, outcome or start); turns, evaluations and
data-collection values are read here, as tolerantly as ``domain.payload`` reads the rest.
"""

import gzip
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from services.core.domain.coerce import obj as _obj
from services.core.domain.coerce import text as _str
from services.core.domain.coerce import whole_seconds
from services.core.domain.models import CallRecord

from .tables import CALLS, COLUMNS, EVALUATIONS, KIND_CRITERION, KIND_DATA, MESSAGES, column_names, partition_of

Row = dict[str, Any]
_LINE = orjson.OPT_APPEND_NEWLINE


@dataclass(frozen=True)
class CallRows:
    """Everything one call contributes: exactly one ``calls`` row, any number of the others."""

    conversation_id: str
    dt: str
    calls: list[Row]
    messages: list[Row]
    evaluations: list[Row]

    def by_table(self) -> dict[str, list[Row]]:
        return {CALLS: self.calls, MESSAGES: self.messages, EVALUATIONS: self.evaluations}


def _text_value(value: object) -> str | None:
    """A data-collection value as text: strings as they are, other JSON as JSON; null and "None" as null."""
    if value is None or value == "None":
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _tool_names(turn: dict[str, Any]) -> list[str]:
    calls = turn.get("tool_calls")
    if not isinstance(calls, list):
        return []
    return [name for call in calls if (name := _str(_obj(call).get("tool_name")))]


def call_start(record: CallRecord, fallback: int) -> int:
    """The instant that decides ``dt``: the call's start, else ``fallback`` (when the row is first written)."""
    return record.started_at if record.started_at else fallback


def rows_for_call(data: dict[str, Any], record: CallRecord, *, has_audio: bool, fallback_start: int) -> CallRows:
    """Rows for a transcription (or an initiation failure, which has no turns and no evaluations).

    ``record`` is ``payload.call_from_transcription`` / ``call_from_initiation_failure`` of ``data``;
    ``has_audio`` says whether the call's audio is archived at the time of writing.
    """
    started_at = call_start(record, fallback_start)
    common = {"conversation_id": record.conversation_id, "phone": record.phone, "agent_id": record.agent_id}

    # The turns the index counts: none for an initiation failure, whatever its payload carries.
    transcript = data.get("transcript") if record.message_count else None
    messages: list[Row] = []
    for index, raw_turn in enumerate(transcript if isinstance(transcript, list) else []):
        turn = _obj(raw_turn)
        messages.append(
            {
                **common,
                "turn_index": index,
                "role": _str(turn.get("role")),
                "time_in_call_secs": whole_seconds(turn.get("time_in_call_secs")),
                "text": _str(turn.get("message")),
                "interrupted": turn.get("interrupted") if isinstance(turn.get("interrupted"), bool) else None,
                "tool_names": _tool_names(turn),
            }
        )

    analysis = _obj(data.get("analysis"))
    evaluations: list[Row] = []
    for key, raw in _obj(analysis.get("evaluation_criteria_results")).items():
        item = _obj(raw)
        evaluations.append(
            {
                **common,
                "kind": KIND_CRITERION,
                "criteria_id": _str(item.get("criteria_id")) or key,
                "result": _str(item.get("result")),
                "value": None,
                "rationale": _str(item.get("rationale")),
            }
        )
    for key, raw in _obj(analysis.get("data_collection_results")).items():
        item = _obj(raw)
        evaluations.append(
            {
                **common,
                "kind": KIND_DATA,
                "criteria_id": _str(item.get("data_collection_id")) or key,
                "result": None,
                "value": _text_value(item.get("value")),
                "rationale": _str(item.get("rationale")),
            }
        )

    criteria = [e for e in evaluations if e["kind"] == KIND_CRITERION]
    call: Row = {
        "conversation_id": record.conversation_id,
        "agent_id": record.agent_id,
        "agent_name": record.agent_name,
        "phone": record.phone,
        "direction": record.direction,
        "status": record.status,
        "call_successful": record.call_successful,
        "started_at": started_at,
        "start_time": datetime.fromtimestamp(started_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "duration_secs": record.duration_s,
        "cost_credits": record.cost,
        "cost_usd": record.cost_usd,
        "termination_reason": record.termination_reason,
        "failure_reason": record.failure_reason,
        "language": record.language,
        "summary_title": record.summary_title,
        "summary": record.summary,
        "message_count": len(messages),
        "user_message_count": sum(1 for m in messages if m["role"] == "user"),
        "agent_message_count": sum(1 for m in messages if m["role"] == "agent"),
        "tool_call_count": sum(len(m["tool_names"]) for m in messages),
        "criteria_count": len(criteria),
        "criteria_failed": sum(1 for e in criteria if e["result"] == "failure"),
        "has_audio": has_audio,
    }
    return CallRows(record.conversation_id, partition_of(started_at), [call], messages, evaluations)


def encode(table: str, rows: list[Row], *, level: int = 6) -> bytes:
    """Gzip'd newline-delimited JSON, keys in schema order; ``mtime=0`` so equal rows give equal bytes.

    Per-call objects use ``level=1`` (on the webhook's hot path, read for two days at most); the
    day objects Athena scans for ever keep 6.
    """
    names = column_names(table)
    # ``rows_for_call`` builds rows in schema order already: only other rows (merges, edits) are reordered.
    lines = b"".join(
        orjson.dumps(row if tuple(row) == names else {name: row.get(name) for name in names}, option=_LINE)
        for row in rows
    )
    return gzip.compress(lines, compresslevel=level, mtime=0)


class UnreadableRows(ValueError):
    """An analytics object that is not gzip'd JSON lines (a power cut cut it short)."""


def decode(blob: bytes) -> list[Row]:
    if not blob:
        # ``encode`` never writes zero bytes (gzip of nothing has a header): an empty object is one a
        # power cut left before its data (analytics are not fsynced), not a call or day with no rows.
        raise UnreadableRows("an analytics object is empty")
    try:
        text = gzip.decompress(blob)
        rows = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, EOFError, orjson.JSONDecodeError) as exc:  # BadGzipFile is an OSError
        raise UnreadableRows("an analytics object is not gzip'd JSON lines") from exc
    # A line that is JSON but not one of our rows (a hand edit): unreadable too, so merges and verify
    # replace the object instead of failing on it every run.
    if not all(isinstance(row, dict) and isinstance(row.get("conversation_id"), str) for row in rows):
        raise UnreadableRows("an analytics object holds a line that is not a row")
    return rows


def check_row_types(table: str, row: Row) -> list[str]:
    """Problems that would make Athena's JSON SerDe read a row differently from DuckDB (empty: none)."""
    problems: list[str] = []
    if list(row) != list(column_names(table)):
        problems.append(f"{table}: keys {list(row)} differ from columns {list(column_names(table))}")
    for name, glue_type in COLUMNS[table]:
        value = row.get(name)
        if value is None:
            continue
        ok = {
            "string": isinstance(value, str),
            "bigint": isinstance(value, int) and not isinstance(value, bool),
            "double": isinstance(value, int | float) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
            "array<string>": isinstance(value, list) and all(isinstance(v, str) for v in value),
        }[glue_type]
        if not ok:
            problems.append(f"{table}.{name}: {value!r} is not {glue_type}")
    return problems

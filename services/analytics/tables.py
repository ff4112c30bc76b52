"""The three compact analytics tables: their columns, types and object keys.

This is the one schema: the writer emits exactly these keys in this order, DuckDB reads them with
these types, and the Glue tables in ``infra/analytics.yaml`` declare the same columns (a test checks).
Types are Glue/Hive names; ``DUCKDB_TYPES`` maps them for the local engine.

Layout: gzip'd newline-delimited JSON under ``{table}/dt=YYYY-MM-DD/``, ``dt`` the UTC start date of
the call. ``dt`` is a partition column only: it is never a key inside the rows (Athena refuses a
column that is both). While a day is open, one object per call per table, named by ``conversation_id``
(``{conversation_id}.json.gz``), so a redelivery overwrites; once the day is closed
(``CLOSED_AFTER_DAYS``), its calls are merged into one day object (``day.compacted.json.gz``, see
``compaction.py``). A late write to a closed day is a per-call object beside the day object until
the next merge, so the same call can be stored twice: the tables people query (``calls``, ...) are
views that keep, per call, the per-call object's rows (``current_rows_sql``).
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Final

from services.core.domain.keys import CONVERSATION_ID, check_conversation_id

CALLS: Final = "calls"
MESSAGES: Final = "messages"
EVALUATIONS: Final = "evaluations"
TABLES: Final[tuple[str, ...]] = (CALLS, MESSAGES, EVALUATIONS)
PARTITION_COLUMN: Final = "dt"
OBJECT_SUFFIX: Final = ".json.gz"
CONTENT_TYPE: Final = "application/x-ndjson"
# A '.' never appears in a conversation id, so the day object cannot collide with a call's object.
DAY_OBJECT: Final = "day.compacted" + OBJECT_SUFFIX
# A day is closed, and compacted, once this many UTC dates have begun after it: a call started at
# 23:59 on day D has all of D+1 for its webhooks (retries, late audio) before D is merged.
CLOSED_AFTER_DAYS: Final = 2
_DT = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Columns = tuple[tuple[str, str], ...]

COLUMNS: Final[dict[str, Columns]] = {
    CALLS: (
        ("conversation_id", "string"),
        ("agent_id", "string"),
        ("agent_name", "string"),
        ("phone", "string"),  # E.164 with '+', null for web/SDK calls
        ("direction", "string"),  # inbound / outbound
        ("status", "string"),  # done, initiation_failed, ...
        ("call_successful", "string"),  # the outcome: success / failure / unknown
        ("started_at", "bigint"),  # unix seconds, UTC
        ("start_time", "string"),  # the same instant as 'YYYY-MM-DD HH:MM:SS' (UTC), for people
        ("duration_secs", "bigint"),
        ("cost_credits", "bigint"),  # ElevenLabs credits (metadata.cost)
        ("cost_usd", "double"),  # metadata.cost_fiat, newer payloads only
        ("termination_reason", "string"),
        ("failure_reason", "string"),  # call_initiation_failure: busy / no-answer / unknown
        ("language", "string"),
        ("summary_title", "string"),
        ("summary", "string"),
        ("message_count", "bigint"),
        ("user_message_count", "bigint"),
        ("agent_message_count", "bigint"),
        ("tool_call_count", "bigint"),
        ("criteria_count", "bigint"),
        ("criteria_failed", "bigint"),
        ("has_audio", "boolean"),
    ),
    MESSAGES: (
        ("conversation_id", "string"),
        ("phone", "string"),
        ("agent_id", "string"),
        ("turn_index", "bigint"),  # 0-based position in the transcript
        ("role", "string"),  # user / agent
        ("time_in_call_secs", "bigint"),
        ("text", "string"),
        ("interrupted", "boolean"),
        ("tool_names", "array<string>"),
    ),
    EVALUATIONS: (
        ("conversation_id", "string"),
        ("phone", "string"),
        ("agent_id", "string"),
        ("kind", "string"),  # 'criterion' (evaluation_criteria_results) or 'data' (data_collection_results)
        ("criteria_id", "string"),  # the criterion id, or the data_collection_id
        ("result", "string"),  # criterion: success / failure / unknown; data: null
        ("value", "string"),  # data: the collected value as text (JSON for non-strings); criterion: null
        ("rationale", "string"),
    ),
}

KIND_CRITERION: Final = "criterion"
KIND_DATA: Final = "data"

DUCKDB_TYPES: Final[dict[str, str]] = {
    "string": "VARCHAR",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "array<string>": "VARCHAR[]",
}


# The version label of a ``calls`` row that ``mark_audio`` copied out of a day object: it sorts below
# every call version (any write of the call replaces it) and tells the merge what the object is. A
# copy whose call has left the day object is an orphan (its writer died before taking it back), and
# the merge drops it instead of folding it in (``compaction.rewrite_day``).
COPIED_OUT: Final = "!copied-out"

# The raw rows of every object of a table, as stored (Glue tables on AWS, DuckDB views locally), with
# the object each row came from in "$path": Athena's name for it, given to DuckDB's `filename` too.
OBJECTS_SUFFIX: Final = "_objects"
PATH_COLUMN: Final = '"$path"'


def objects_table(table: str) -> str:
    """The name of ``table``'s raw rows, one call possibly twice (``calls_objects``)."""
    return table + OBJECTS_SUFFIX


def current_rows_sql(table: str, source: str | None = None) -> str:
    """The view ``table``: the rows of ``source`` (default ``objects_table(table)``), where a call
    with rows in a per-call object of a partition loses its rows in that partition's day object.

    A per-call object beside a day object is always the later write: the merge deletes a per-call
    object only after the day object holds its rows, and only if it is still the version merged
    (``compaction.rewrite_day``), so one that survives is the same rows or newer ones. One text for
    Trino (the Glue view, ``infra/analytics.yaml``) and DuckDB; a window partitioned by ``dt`` lets
    both push a ``dt`` filter down to the scan (Athena still reads only the partitions asked for).
    A per-call object with no rows (a newer version with no turns) is invisible to SQL: the call's
    older day rows stay until the merge, never counted beside newer ones."""
    columns = ", ".join([f'"{name}"' for name, _type in COLUMNS[table]] + [PARTITION_COLUMN])
    in_day_object = f"{PATH_COLUMN} LIKE '%/{DAY_OBJECT}'"
    return (
        f"SELECT {columns}\n"  # noqa: S608 - names are constants of this module
        f"FROM (SELECT {columns},\n"
        f"             {in_day_object} AS in_day_object,\n"
        f"             max(CASE WHEN {in_day_object} THEN 0 ELSE 1 END)\n"
        f"               OVER (PARTITION BY {PARTITION_COLUMN}, conversation_id) AS has_per_call_rows\n"
        f"      FROM {source or objects_table(table)}) AS stored\n"
        "WHERE NOT in_day_object OR has_per_call_rows = 0"
    )


def column_names(table: str) -> tuple[str, ...]:
    return tuple(name for name, _type in COLUMNS[table])


def partition_of(unix_secs: int) -> str:
    """``dt`` of a call: its UTC start date."""
    return datetime.fromtimestamp(unix_secs, tz=UTC).strftime("%Y-%m-%d")


def is_closed(dt: str, now: float) -> bool:
    """Whether the day ``dt`` is closed at unix time ``now`` (and so kept as one day object)."""
    last_closed = datetime.fromtimestamp(now, tz=UTC).date() - timedelta(days=CLOSED_AFTER_DAYS)
    return dt <= last_closed.isoformat()  # YYYY-MM-DD strings order like dates


def partition_prefix(table: str, dt: str) -> str:
    if table not in COLUMNS:
        raise ValueError(f"unknown analytics table {table!r}")
    if not _DT.fullmatch(dt):
        raise ValueError(f"partition must be YYYY-MM-DD, got {dt!r}")
    return f"{table}/{PARTITION_COLUMN}={dt}/"


def object_key(table: str, dt: str, conversation_id: str) -> str:
    """The key of one call's rows while its day is open."""
    return f"{partition_prefix(table, dt)}{check_conversation_id(conversation_id)}{OBJECT_SUFFIX}"


def day_object_key(table: str, dt: str) -> str:
    """The key of a closed day's rows, all its calls in one object."""
    return partition_prefix(table, dt) + DAY_OBJECT


def _parse(key: str) -> tuple[str, str, str] | None:
    parts = key.split("/")
    if len(parts) != 3 or parts[0] not in COLUMNS or not parts[2].endswith(OBJECT_SUFFIX):
        return None
    name, sep, dt = parts[1].partition("=")
    if name != PARTITION_COLUMN or not sep or not _DT.fullmatch(dt):
        return None
    return parts[0], dt, parts[2]


def parse_object_key(key: str) -> tuple[str, str, str] | None:
    """``(table, dt, conversation_id)`` of a per-call object key, or None for anything else."""
    parsed = _parse(key)
    if parsed is None:
        return None
    stem = parsed[2].removesuffix(OBJECT_SUFFIX)
    return (parsed[0], parsed[1], stem) if CONVERSATION_ID.fullmatch(stem) else None


def parse_day_object_key(key: str) -> tuple[str, str] | None:
    """``(table, dt)`` of a day object key, or None for anything else."""
    parsed = _parse(key)
    return (parsed[0], parsed[1]) if parsed is not None and parsed[2] == DAY_OBJECT else None

"""Athena (Trino) over the Glue tables, through boto3: the same reports, the same result shape.

Athena returns every value as text with the column types beside it; they are converted here so a
report's rows are the same Python values as DuckDB's (``bigint`` -> int, ``double`` -> float, ...).
The workgroup (from settings) decides where results go, enforces encryption and caps the bytes a
query may scan; this client only names it.
"""

import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from .result import QueryResult, neutral_type

_RUNNING = frozenset({"QUEUED", "RUNNING"})


class AthenaQueryFailed(Exception):
    """The query did not succeed (failed, cancelled, timed out); the message is Athena's reason (for
    the CLI's operator: it may quote a result path or a value read), ``summary`` the same without it."""

    def __init__(self, message: str, query_id: str, outcome: str) -> None:
        super().__init__(message)
        self.summary = f"Athena query {query_id} {outcome}"


def athena_literal(value: object) -> str:
    """A Trino literal for ``ExecutionParameters`` (strings quoted, quotes doubled: no injection)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _convert(text: str | None, athena_type: str) -> Any:
    if text is None:
        return None
    kind = neutral_type(athena_type.split("(")[0])
    if kind == "bigint":
        return int(text)
    if kind == "double":
        return float(text)
    if kind == "boolean":
        return text.lower() == "true"
    return text


class AthenaEngine:
    dialect: Final = "trino"

    def __init__(
        self,
        workgroup: str,
        database: str,
        client: Any | None = None,
        *,
        timeout_secs: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if client is None:
            import boto3

            client = boto3.client("athena")
        self.client = client
        self.workgroup = workgroup
        self.database = database
        self.timeout_secs = timeout_secs
        self.sleep = sleep
        self.last_bytes_scanned: int | None = None
        self.last_query_id: str | None = None

    def query(self, sql: str, params: Sequence[object] = ()) -> QueryResult:
        request: dict[str, Any] = {
            "QueryString": sql,
            "WorkGroup": self.workgroup,
            "QueryExecutionContext": {"Database": self.database},
        }
        if params:
            request["ExecutionParameters"] = [athena_literal(p) for p in params]
        query_id = str(self.client.start_query_execution(**request)["QueryExecutionId"])
        self.last_query_id = query_id
        try:
            self._wait(query_id)
        except KeyboardInterrupt:
            self._stop(query_id)  # Ctrl-C must not leave a query scanning (and billing) on its own
            raise
        return self._results(query_id)

    def _stop(self, query_id: str) -> None:
        self.client.stop_query_execution(QueryExecutionId=query_id)

    def _wait(self, query_id: str) -> None:
        deadline = time.monotonic() + self.timeout_secs
        delay = 0.2
        while True:
            execution = self.client.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            status = execution.get("Status", {})
            state = status.get("State")
            if state == "SUCCEEDED":
                scanned = execution.get("Statistics", {}).get("DataScannedInBytes")
                self.last_bytes_scanned = int(scanned) if scanned is not None else None
                return
            if state not in _RUNNING:
                reason = status.get("StateChangeReason") or status.get("AthenaError", {}).get("ErrorMessage")
                outcome = str(state).lower()
                message = f"Athena query {query_id} {outcome}: {reason or 'no reason given'}"
                raise AthenaQueryFailed(message, query_id, outcome)
            if time.monotonic() > deadline:
                self._stop(query_id)
                outcome = f"still {state} after {self.timeout_secs:.0f} s"
                raise AthenaQueryFailed(f"Athena query {query_id} {outcome}", query_id, outcome)
            self.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    def _results(self, query_id: str) -> QueryResult:
        columns: list[str] = []
        types: list[str] = []
        rows: list[tuple[Any, ...]] = []
        first = True
        for page in self.client.get_paginator("get_query_results").paginate(QueryExecutionId=query_id):
            result_set = page["ResultSet"]
            if first:
                info = result_set.get("ResultSetMetadata", {}).get("ColumnInfo", [])
                columns = [c["Name"] for c in info]
                athena_types = [c["Type"] for c in info]
                types = [neutral_type(t.split("(")[0]) for t in athena_types]
            for position, raw in enumerate(result_set.get("Rows", [])):
                values = [cell.get("VarCharValue") for cell in raw.get("Data", [])]
                if first and position == 0 and values == columns:
                    continue  # a SELECT's first row repeats the column names
                rows.append(tuple(_convert(v, t) for v, t in zip(values, athena_types, strict=True)))
            first = False
        return QueryResult(columns, types, rows)

"""What every engine returns: rows with column names and engine-neutral type names.

Kept apart from the engines so the report definitions (and ``callvault --help``) load no database client.
"""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class QueryResult:
    """Rows with their column names and engine-neutral type names (``bigint``, ``double``, ``varchar``...)."""

    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def neutral_type(name: str) -> str:
    """DuckDB and Trino type names mapped to one vocabulary, so both engines' results compare."""
    upper = name.upper()
    if upper in {"BIGINT", "HUGEINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER", "INT"}:
        return "bigint"
    if upper in {"DOUBLE", "FLOAT", "REAL"} or upper.startswith("DECIMAL"):
        return "double"
    if upper in {"VARCHAR", "STRING", "CHAR"} or upper.startswith("VARCHAR"):
        return "varchar"
    if upper == "BOOLEAN":
        return "boolean"
    if upper.endswith("[]") or upper.startswith("ARRAY"):
        return "array"
    return name.lower()

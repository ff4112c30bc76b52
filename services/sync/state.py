"""Where the last sync ended (the watermark), kept beside the call index: a table in the index's
SQLite file locally, an item in the DynamoDB calls table on AWS (its key starts with ``~``, which no
conversation id can, so listings and scans never see it)."""

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from services.core.adapters.sqlite_database import SqliteDatabase
from services.core.domain.errors import StorageUnavailable

if TYPE_CHECKING:
    from services.core.config import Settings


class SyncState(Protocol):
    def get_watermark(self, scope: str) -> int | None:
        """Unix seconds: calls starting before this were final and archived by an earlier sync."""
        ...

    def set_watermark(self, scope: str, value: int, now: int) -> None: ...


class MemorySyncState:
    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self._lock = threading.Lock()

    def get_watermark(self, scope: str) -> int | None:
        with self._lock:
            return self.values.get(scope)

    def set_watermark(self, scope: str, value: int, now: int) -> None:
        with self._lock:
            self.values[scope] = value


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_state (
    scope      TEXT PRIMARY KEY,
    watermark  INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
"""


class SqliteSyncState:
    def __init__(self, path: Path) -> None:
        self._db = SqliteDatabase(path, "the local index")
        self._db.apply_schema(_SCHEMA)

    def get_watermark(self, scope: str) -> int | None:
        row = self._db.execute("SELECT watermark FROM sync_state WHERE scope = ?", (scope,)).fetchone()
        return int(row[0]) if row else None

    def set_watermark(self, scope: str, value: int, now: int) -> None:
        self._db.execute(
            "INSERT INTO sync_state (scope, watermark, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (scope) DO UPDATE SET watermark = excluded.watermark, updated_at = excluded.updated_at",
            (scope, value, now),
        )


class DynamoSyncState:
    """An item ``~sync/<scope>`` in the calls table: no GSI key attributes, so no listing shows it."""

    def __init__(self, table_name: str, client: Any = None) -> None:
        import boto3

        self.table_name = table_name
        self.client = client or boto3.client("dynamodb")

    @staticmethod
    def _key(scope: str) -> dict[str, Any]:
        return {"conversation_id": {"S": f"~sync/{scope}"}}

    def get_watermark(self, scope: str) -> int | None:
        try:
            item = self.client.get_item(TableName=self.table_name, Key=self._key(scope), ConsistentRead=True)
        except Exception as exc:  # botocore's ClientError / BotoCoreError: one message, no details
            raise StorageUnavailable("the sync state in DynamoDB is unavailable (GetItem)") from exc
        value = item.get("Item", {}).get("watermark", {}).get("N")
        return int(value) if value is not None else None

    def set_watermark(self, scope: str, value: int, now: int) -> None:
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(scope),
                UpdateExpression="SET watermark = :w, updated_at = :now",
                ExpressionAttributeValues={":w": {"N": str(value)}, ":now": {"N": str(now)}},
            )
        except Exception as exc:
            raise StorageUnavailable("the sync state in DynamoDB is unavailable (UpdateItem)") from exc


def build_sync_state(settings: "Settings") -> SyncState:
    """Beside the index: the index's SQLite file locally, the calls table on AWS."""
    if settings.backend == "aws":
        return DynamoSyncState(settings.table)
    return SqliteSyncState(settings.data_dir / "index.sqlite3")

"""The only place that chooses adapters. Everything else receives its ports as arguments."""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Settings
from .ports import BlobStore, CallIndex

if TYPE_CHECKING:
    from .erased import ErasedConversations

WEBHOOK_SECRET_FILE = "webhook-secret"  # noqa: S105 - a file name, not a secret
# The analytics store's S3 connection pool. botocore keeps 10 by default, and compaction reads and
# deletes with 16 threads (services/analytics/compaction.py, IO_WORKERS; a test keeps this at least
# that): the others waited or opened throw-away connections. Room beyond that for `backfill-analytics
# --workers`; an idle pool slot costs nothing.
ANALYTICS_S3_CONNECTIONS = 32


@dataclass
class Storage:
    blobs: BlobStore
    index: CallIndex


def build_storage(settings: Settings) -> Storage:
    if settings.backend == "aws":
        # Imported here so the local back end never pays for boto3/PynamoDB at start-up.
        from .adapters.s3_blob_store import S3BlobStore

        if not settings.bucket:
            raise RuntimeError("CALLVAULT_BUCKET must name the archive bucket when CALLVAULT_BACKEND=aws")
        return Storage(S3BlobStore(settings.bucket), build_index(settings))
    from .adapters.fs_blob_store import FsBlobStore

    return Storage(FsBlobStore(settings.data_dir / "archive"), build_index(settings))


def build_index(settings: Settings) -> CallIndex:
    """The call index alone, for a function that reads no archive object (the memory API): on AWS it
    needs only ``CALLVAULT_TABLE``, and its stack gives it neither the archive bucket nor access to it."""
    if settings.backend == "aws":
        from .adapters.dynamo_call_index import DynamoCallIndex

        return DynamoCallIndex(settings.table)
    from .adapters.sqlite_call_index import SqliteCallIndex

    return SqliteCallIndex(settings.data_dir / "index.sqlite3")


def build_analytics_store(settings: Settings) -> BlobStore:
    """The analytics tables' own store: a separate bucket on AWS, ``<data-dir>/analytics`` locally.

    Separate from the archive so the report tables never follow the archive to cold storage and
    analysts can read them without any access to raw transcripts and audio.
    """
    if settings.backend == "aws":
        from .adapters.s3_blob_store import S3BlobStore

        if not settings.analytics_bucket:
            raise RuntimeError("CALLVAULT_ANALYTICS_BUCKET must name the analytics bucket when CALLVAULT_BACKEND=aws")
        return S3BlobStore(settings.analytics_bucket, max_connections=ANALYTICS_S3_CONNECTIONS)
    from .adapters.fs_blob_store import FsBlobStore

    # Derived from the archive: written atomically but not fsynced (three fsyncs per call saved);
    # what a power cut loses, `callvault verify --repair` rewrites from the archive.
    return FsBlobStore(settings.data_dir / "analytics", durable=False)


def webhook_secrets(settings: Settings) -> list[str]:
    """Secrets from the environment, else (AWS) from SSM. Empty means: refuse every webhook."""
    from .secrets import secret_list

    return secret_list(settings.webhook_secret, settings.webhook_secret_param)


def local_webhook_secret(data_dir: Path) -> tuple[str, bool]:
    """The local server's webhook secret, generated on first run and kept (0600) in the data dir.

    Returns ``(secret, created)`` so the caller can show a new secret once.
    """
    from .secrets import local_secret

    return local_secret(data_dir, WEBHOOK_SECRET_FILE, "wsec_")


def build_erased(settings: Settings) -> "ErasedConversations | None":
    """The tombstones of erased conversations with their key: ``<data-dir>/privacy.sqlite3`` and
    ``<data-dir>/tombstone-key`` locally; on AWS items in the calls table and the key from SSM (None
    when no key is configured: nothing was ever erased there)."""
    from .erased import TOMBSTONE_KEY_FILE, ErasedConversations
    from .secrets import local_secret, secret_list

    if settings.backend == "aws":
        from .adapters.dynamo_tombstones import DynamoTombstones

        keys = secret_list(settings.tombstone_key, settings.tombstone_key_param)
        return ErasedConversations(keys[0].encode(), DynamoTombstones(settings.table)) if keys else None
    from .adapters.sqlite_tombstones import PRIVACY_FILE, SqliteTombstones

    key = settings.tombstone_key.get_secret_value() if settings.tombstone_key else None
    if not key:
        key, _created = local_secret(settings.data_dir, TOMBSTONE_KEY_FILE, "tsk_")
    return ErasedConversations(key.encode(), SqliteTombstones(settings.data_dir / PRIVACY_FILE))

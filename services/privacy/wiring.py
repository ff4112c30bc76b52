"""Builds the Eraser: the composition root that tells erasure which features keep data of a call.

Erasure (``service.py``) knows only the ports; this module may import the features that implement
``CallerData``, as ``ingest/wiring.py`` wires analytics into the Archiver.
"""

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from services.analytics.erasure import AnalyticsErasure, DuckDbCacheErasure
from services.analytics.reader import CACHE_FILE
from services.analytics.writer import AnalyticsWriter
from services.core.adapters.fs_blob_store import CallerTempFiles
from services.core.config import Settings
from services.core.ports import CallerData, UpstreamConversations
from services.core.wiring import Storage, build_analytics_store, build_erased

from .audit import Auditor
from .holds import HoldBook
from .service import Eraser

if TYPE_CHECKING:
    from .retention import RetentionRules, RetentionRunner
    from .schedule import RetentionThread

# Retention is imported where it is built: the search and memory API functions import this module
# for ``build_auditor`` alone, and a cold start should not pay for what they never run.


def build_eraser(
    settings: Settings, storage: Storage, memory: CallerData | None = None, *, upstream: bool = False
) -> Eraser:
    """``memory``: ``services.memory.erasure.MemoryErasure`` over the store the process holds (the
    local Mem0 store is locked to one process: `serve` passes its own). ``upstream``: able to delete
    at ElevenLabs too, when an API key is configured (``build_upstream``)."""
    derived: list[CallerData] = []
    if settings.backend != "aws" or settings.analytics_bucket:
        derived.append(AnalyticsErasure(build_analytics_store(settings)))
    if settings.backend != "aws":
        derived.append(DuckDbCacheErasure(settings.data_dir / CACHE_FILE))
        derived.append(CallerTempFiles(settings.data_dir / "archive"))  # S3 writes leave no temp objects
    if memory is not None:
        derived.append(memory)
    audit = build_auditor(settings)
    return Eraser(
        storage.blobs,
        storage.index,
        derived,
        erased=build_erased(settings),
        audit=audit,
        holds=build_holds(settings, audit),
        upstream=build_upstream(settings) if upstream else None,
    )


def build_upstream(settings: Settings) -> UpstreamConversations | None:
    """The ElevenLabs conversations, with the key sync uses (``ELEVENLABS_API_KEY``, or on AWS the SSM
    parameter ``CALLVAULT_ELEVENLABS_API_KEY_PARAM``); None without one (erasure then refuses ``upstream``)."""
    from services.core.adapters.elevenlabs_conversations import ElevenLabsConversations
    from services.core.elevenlabs import api_key

    key = api_key(settings)
    if not key:
        return None
    return ElevenLabsConversations(
        settings.elevenlabs_base_url,
        key,
        timeout=settings.elevenlabs_timeout_secs,
        max_attempts=settings.elevenlabs_max_attempts,
    )


def build_holds(settings: Settings, audit: Auditor | None = None) -> HoldBook | None:
    """Legal holds: ``<data-dir>/privacy.sqlite3`` locally; on AWS the audit table's ``holds``
    partition (None without ``CALLVAULT_AUDIT_TABLE`` or a tombstone key, whose key names them)."""
    if settings.backend == "aws" and not settings.audit_table:
        return None
    erased = build_erased(settings)
    if erased is None:
        return None
    if settings.backend == "aws" and settings.audit_table:
        from services.core.adapters.dynamo_audit_log import DynamoHolds

        return HoldBook(DynamoHolds(settings.audit_table), erased, audit)
    from services.core.adapters.sqlite_holds import SqliteHolds
    from services.core.adapters.sqlite_tombstones import PRIVACY_FILE

    return HoldBook(SqliteHolds(settings.data_dir / PRIVACY_FILE), erased, audit)


def build_auditor(settings: Settings) -> Auditor | None:
    """The audit trail: ``<data-dir>/privacy.sqlite3`` locally; on AWS the DynamoDB table
    ``CALLVAULT_AUDIT_TABLE`` (None without it or without a tombstone key, whose key names conversations)."""
    if settings.backend == "aws" and not settings.audit_table:
        return None
    erased = build_erased(settings)
    if erased is None:  # never locally: the key is generated
        return None
    if settings.backend == "aws" and settings.audit_table:
        from services.core.adapters.dynamo_audit_log import DynamoAuditLog

        return Auditor(DynamoAuditLog(settings.audit_table), erased)
    from services.core.adapters.sqlite_audit_log import SqliteAuditLog
    from services.core.adapters.sqlite_tombstones import PRIVACY_FILE

    return Auditor(SqliteAuditLog(settings.data_dir / PRIVACY_FILE), erased)


RETENTION_FILE = "retention.toml"
AWS_NO_TOMBSTONES = (
    "retention on AWS needs the tombstone key: set CALLVAULT_TOMBSTONE_KEY_PARAM (an SSM SecureString) or "
    "CALLVAULT_TOMBSTONE_KEY; without tombstones an expired call comes back with the next sync"
)
AWS_NO_HOLDS = (
    "retention on AWS needs the legal holds: set CALLVAULT_AUDIT_TABLE to the stack's audit table (it keeps "
    "the holds); without them a call under a legal hold would be erased"
)

AWS_NO_ANALYTICS = (
    "on AWS set CALLVAULT_ANALYTICS_BUCKET (the stack's AnalyticsBucketName) too: without it the calls' "
    "analytics rows (what was said, in the messages table) would stay after their index rows are gone; "
    "nothing was changed"
)
AWS_NO_RULES = (
    "the retention function needs its rules: set CALLVAULT_RETENTION_RULES_PARAM to the SSM parameter "
    "(the stack's RetentionRulesParameterName); without it nothing would ever expire"
)


def load_retention_rules(settings: Settings, rules_file: Path | None = None) -> "RetentionRules":
    """``rules_file`` if given; else on AWS with ``CALLVAULT_RETENTION_RULES_PARAM`` the TOML in that SSM
    parameter (read on every run, so an edit counts from the next one; a parameter that does not exist
    is no rules, like a missing file); else ``<data-dir>/retention.toml``."""
    from .retention import RetentionRules

    if rules_file is None and settings.backend == "aws" and settings.retention_rules_param:
        text = _ssm_parameter(settings.retention_rules_param)
        return RetentionRules() if text is None else RetentionRules.parse(text, settings.retention_rules_param)
    return RetentionRules.load(rules_file or settings.data_dir / RETENTION_FILE)


def _ssm_parameter(name: str) -> str | None:
    import boto3
    from botocore.exceptions import ClientError

    try:
        value: str = boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return None
        raise
    return value


def build_retention(
    settings: Settings,
    storage: Storage,
    memory: CallerData | None = None,
    rules_file: Path | None = None,
    on_late_write: Callable[[str], None] | None = None,
) -> "RetentionRunner":
    """Retention over the same Eraser as erasure; the rules from ``load_retention_rules``. On AWS it
    refuses (``RetentionConfigError``) without the tombstone key (expired calls would come back with the
    next sync) or the legal holds (a held call would be erased). ``on_late_write`` hears of the closed
    analytics days whose ``has_audio`` expired audio rewrote (a per-call object the next merge folds in)."""
    from .retention import RetentionConfigError, RetentionRunner

    eraser = build_eraser(settings, storage, memory)
    if settings.backend == "aws" and eraser.erased is None:
        raise RetentionConfigError(AWS_NO_TOMBSTONES)
    if settings.backend == "aws" and eraser.holds is None:
        raise RetentionConfigError(AWS_NO_HOLDS)
    if settings.backend == "aws" and not settings.analytics_bucket:
        raise RetentionConfigError(AWS_NO_ANALYTICS)
    rules = load_retention_rules(settings, rules_file)
    has_analytics = settings.backend != "aws" or bool(settings.analytics_bucket)
    flags = AnalyticsWriter(build_analytics_store(settings), on_late_write=on_late_write) if has_analytics else None
    return RetentionRunner(
        storage.index,
        eraser,
        rules,
        memories=memory,
        blobs=storage.blobs,
        audio_flags=flags,
        analytics=AnalyticsErasure(build_analytics_store(settings)) if has_analytics else None,
        analytics_cache=DuckDbCacheErasure(settings.data_dir / CACHE_FILE) if settings.backend != "aws" else None,
        holds=eraser.holds,
        audit=eraser.audit,
    )


def build_retention_thread(
    settings: Settings,
    storage: Storage,
    memory: CallerData | None = None,
    on_late_write: Callable[[str], None] | None = None,
) -> "RetentionThread":
    """`callvault serve`'s daily retention run, over the server's own stores and memory; ``on_late_write``:
    its compactor's nudge."""
    from .schedule import RetentionThread

    return RetentionThread(lambda: build_retention(settings, storage, memory, on_late_write=on_late_write))


def build_scheduled_retention(settings: Settings) -> "RetentionRunner":
    """The AWS function's run (``handler.py``): the stores from the environment, the caller memories
    on Mem0 Platform when memory is on. Built per run, so the rules are read again each time. Refuses
    without ``CALLVAULT_RETENTION_RULES_PARAM``: the function has no rules file, so it would succeed
    every day and expire nothing."""
    from services.core.wiring import build_storage

    from .retention import RetentionConfigError

    if not settings.retention_rules_param:
        raise RetentionConfigError(AWS_NO_RULES)
    return build_retention(settings, build_storage(settings), build_memory_erasure(settings))


def build_memory_erasure(settings: Settings) -> CallerData | None:
    """Memories of expired calls on AWS (Mem0 Platform; SQS jobs are dropped by the worker's tombstone
    check); None when memory is off."""
    from services.memory.wiring import build_memory_store, memory_enabled

    if not memory_enabled(settings):
        return None
    from services.memory.erasure import MemoryErasure

    return MemoryErasure(build_memory_store(settings))

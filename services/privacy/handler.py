"""Lambda entry of the daily retention run on AWS (an EventBridge schedule; docs/privacy.md).

Applies the retention rules once through the same ``RetentionRunner`` and ``Eraser`` as ``callvault
retention run``: expired calls are tombstoned, audited and erased from the archive (every S3 version),
the index, the analytics tables and Mem0 Platform; expired audio and memories go on their own. The
rules are the TOML of ``retention.toml`` in an SSM parameter, read on every run (a runner per
invocation), so an edit counts from the next day.

Refuses to run, and fails the invocation (the Errors alarm fires), without the tombstone key or the
legal holds, or with rules that do not parse: the "retention refused" line says which, naming
settings only. Logs one "retention done" line of counts (never a conversation id or phone number);
the template turns its ``calls`` and ``held`` into metrics. A run that fails midway raises: what it
erased stays erased, and the next run (or ``callvault retention run``) finishes, since every step of
an erasure is idempotent.
"""

import time
from typing import Any

from services.core.config import get_settings
from services.core.logging import get_logger

from .retention import RetentionConfigError
from .wiring import build_scheduled_retention

logger = get_logger("callvault-retention")
ACTOR = "aws:retention-schedule"  # the audit trail's actor of a scheduled run


def retention_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        runner = build_scheduled_retention(get_settings())
    except RetentionConfigError as exc:  # its message names settings and TOML positions, no data
        logger.error("retention refused", extra={"reason": str(exc)})
        raise
    summary = runner.run(actor=ACTOR).to_dict()
    logger.info("retention done", extra={**summary, "duration_ms": round((time.monotonic() - started) * 1000)})
    return summary

"""What every ElevenLabs API client here shares: the API key's lookup, the retry policy (``Retry-After``,
backoff bounds, what counts as worth another attempt), and the API's own words for an error. Used by
sync's Conversations client (``services/sync/elevenlabs.py``) and the upstream-deletion adapter of erasure
(``adapters/elevenlabs_conversations.py``), which must not import each other's feature."""

import math
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import orjson
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

if TYPE_CHECKING:
    from .config import Settings

MAX_RETRY_AFTER_SECS = 60.0  # a longer Retry-After is a quota reset: waiting it out inside a request helps no one
BACKOFF_BASE_SECS = 1.0
BACKOFF_MAX_SECS = 30.0


def api_key(settings: "Settings") -> str:
    """From the environment (``ELEVENLABS_API_KEY``), else (AWS) the SSM SecureString named by
    ``CALLVAULT_ELEVENLABS_API_KEY_PARAM``, read once per process; "" when neither is set."""
    key = settings.elevenlabs_api_key.get_secret_value().strip() if settings.elevenlabs_api_key else ""
    if not key and settings.elevenlabs_api_key_param:
        from .secrets import read_ssm_secret

        key = read_ssm_secret(settings.elevenlabs_api_key_param).strip()
    return key


class Transient(Exception):
    """One attempt failed in a way a later attempt may not (429, 5xx, timeout, dropped connection)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def retrying(
    max_attempts: int, sleep: Callable[[float], None], before_sleep: Callable[[RetryCallState], None]
) -> Retrying:
    """``max_attempts`` in all for ``Transient`` failures: after upstream's ``Retry-After`` when it sent
    one, else exponential backoff with full jitter. The last ``Transient`` is re-raised as it was."""
    backoff = wait_random_exponential(multiplier=BACKOFF_BASE_SECS, max=BACKOFF_MAX_SECS)

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, Transient) and error.retry_after is not None:
            return error.retry_after
        return float(backoff(state))

    return Retrying(
        stop=stop_after_attempt(max_attempts),
        wait=wait,
        retry=retry_if_exception_type(Transient),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


def retry_log_fields(state: RetryCallState) -> dict[str, Any]:
    """The fields of a "retrying" log line: the attempt that failed, why, and the wait before the next."""
    error = state.outcome.exception() if state.outcome is not None else None
    return {
        "attempt": state.attempt_number,
        "reason": error.reason if isinstance(error, Transient) else type(error).__name__,
        "wait_secs": state.next_action.sleep if state.next_action is not None else None,
    }


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds to wait (delta-seconds or an HTTP date), capped; None if absent or unreadable."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER_SECS, max(0.0, seconds))


def detail_of(raw: bytes) -> str:
    """The API's own words for an error (``{"detail": {"message": ...}}`` or ``{"detail": "..."}``), short."""
    try:
        body = orjson.loads(raw)
    except ValueError:
        return "no detail"
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        detail = detail.get("message") or detail.get("status")
    text = detail if isinstance(detail, str) else orjson.dumps(detail).decode() if detail else "no detail"
    # Printed to terminals and logs: upstream's escape sequences and line breaks go no further.
    return "".join(c if c.isprintable() else "?" for c in text[:300])

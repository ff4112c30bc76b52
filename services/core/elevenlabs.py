"""What every ElevenLabs API client here shares: the API key's lookup, ``Retry-After`` and the
backoff bounds, and the API's own words for an error. Used by sync's Conversations client
(``services/sync/elevenlabs.py``) and the upstream-deletion adapter of erasure
(``adapters/elevenlabs_conversations.py``), which must not import each other's feature."""

import math
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import orjson

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

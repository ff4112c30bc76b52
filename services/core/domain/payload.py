"""Reading ElevenLabs payloads: the envelope strictly, the call's facts tolerantly.

Strict where a wrong value would corrupt the archive (envelope, ``data``, ``conversation_id``,
audio); tolerant everywhere else, because the vendor adds and reshapes fields over time and a
call we refuse is a call we may lose (retries are off by default).
"""

from typing import Any

import orjson

from . import keys, phone
from .coerce import integer as _int
from .coerce import number as _float
from .coerce import obj as _obj
from .coerce import text as _str
from .errors import InvalidPayload
from .models import STATUS_INITIATION_FAILED, CallRecord, WebhookEvent

SUMMARY_MAX_CHARS = 500
# Numbers must fit every index back end (SQLite INTEGER is signed 64-bit): a larger value would
# fail at the index write, after the archive object, on every retry.
_MAX_UNIX_SECS = 10**12 - 1  # the 12 digits the string form of event_timestamp allows


def parse_envelope(raw: bytes) -> WebhookEvent:
    if not raw.strip():
        raise InvalidPayload("request body is empty; expected a JSON webhook envelope")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidPayload("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidPayload("webhook envelope must be a JSON object with 'type' and 'data'")
    event_type = body.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise InvalidPayload("webhook envelope has no 'type' string")
    data = body.get("data")
    if not isinstance(data, dict):
        raise InvalidPayload("webhook envelope has no 'data' object")
    return WebhookEvent(event_type, _event_timestamp(body.get("event_timestamp")), data)


def _event_timestamp(value: object) -> int | None:
    # Real captures send an int; the vendor's docs say string. Accept both, refuse anything else.
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidPayload("event_timestamp must be unix seconds")
    if isinstance(value, int) and 0 <= value <= _MAX_UNIX_SECS:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    raise InvalidPayload("event_timestamp must be unix seconds")


def customer_phone(data: dict[str, Any], default_region: str = phone.DEFAULT_REGION) -> str | None:
    """The customer's number: ``external_number`` (inbound and outbound), else the caller id on inbound."""
    phone_call = _obj(_obj(data.get("metadata")).get("phone_call"))
    found = phone.to_e164(phone_call.get("external_number"), default_region)
    if found is None and phone_call.get("direction") == "inbound":
        variables = _obj(_obj(data.get("conversation_initiation_client_data")).get("dynamic_variables"))
        found = phone.to_e164(variables.get("system__caller_id"), default_region)
    return found


def call_from_transcription(
    data: dict[str, Any], event_at: int | None, default_region: str = phone.DEFAULT_REGION
) -> CallRecord:
    conversation_id = keys.check_conversation_id(data.get("conversation_id"))
    metadata = _obj(data.get("metadata"))
    analysis = _obj(data.get("analysis"))
    transcript = data.get("transcript")
    e164 = customer_phone(data, default_region)
    summary = _str(analysis.get("transcript_summary"))
    return CallRecord(
        conversation_id=conversation_id,
        phone=e164,
        archive_prefix=keys.phone_prefix(e164),
        agent_id=_str(data.get("agent_id")),
        agent_name=_str(data.get("agent_name")),
        direction=_str(_obj(metadata.get("phone_call")).get("direction")),
        started_at=_int(metadata.get("start_time_unix_secs")) or event_at,
        duration_s=_int(metadata.get("call_duration_secs")),
        message_count=len(transcript) if isinstance(transcript, list) else 0,
        status=_str(data.get("status")),
        call_successful=_str(analysis.get("call_successful")),
        termination_reason=_str(metadata.get("termination_reason")),
        cost=_int(metadata.get("cost")),
        cost_usd=_float(metadata.get("cost_fiat")),
        language=_str(metadata.get("main_language")),
        summary_title=_str(analysis.get("call_summary_title")),
        summary=summary[:SUMMARY_MAX_CHARS] if summary else None,
        event_at=event_at if event_at is not None else 0,
    )


def call_from_initiation_failure(
    data: dict[str, Any], event_at: int | None, default_region: str = phone.DEFAULT_REGION
) -> CallRecord:
    """A call that never connected: recorded as failed, with the provider's reason and dialled number."""
    conversation_id = keys.check_conversation_id(data.get("conversation_id"))
    provider = _obj(_obj(data.get("metadata")).get("body"))
    twilio_direction = _str(provider.get("Direction")) or ""
    outbound = twilio_direction.startswith("outbound")
    # Twilio: the customer is the dialled "To" on outbound calls, the caller "From" on inbound ones.
    e164 = phone.to_e164(provider.get("To") if outbound else provider.get("From"), default_region)
    reason = _str(data.get("failure_reason")) or "unknown"
    return CallRecord(
        conversation_id=conversation_id,
        phone=e164,
        archive_prefix=keys.phone_prefix(e164),
        agent_id=_str(data.get("agent_id")),
        direction=("outbound" if outbound else "inbound") if twilio_direction else None,
        started_at=event_at,
        duration_s=0,
        message_count=0,
        status=STATUS_INITIATION_FAILED,
        call_successful="failure",
        failure_reason=reason,
        termination_reason=f"call initiation failed: {reason}",
        event_at=event_at if event_at is not None else 0,
    )


def as_transcription_event(document: dict[str, Any]) -> WebhookEvent:
    """Accept a saved webhook envelope or a bare ``GET /v1/convai/conversations/{id}`` document."""
    if isinstance(document.get("type"), str) and isinstance(document.get("data"), dict):
        return WebhookEvent(document["type"], _event_timestamp(document.get("event_timestamp")), document["data"])
    if "conversation_id" in document and "transcript" in document:
        return WebhookEvent("post_call_transcription", None, document)
    raise InvalidPayload("not a webhook envelope nor a conversation document")

"""Reading ElevenLabs payloads: the envelope strictly, the call's facts tolerantly.

Strict where a wrong value would corrupt the archive (envelope, ``data``, ``conversation_id``,
audio) or could not be stored (see "Storable values" below); tolerant everywhere else, because the
vendor adds and reshapes fields over time and a call we refuse is a call we may lose (retries are
off by default).

Storable values. Every value the index, the analytics tables or caller memory read from a payload
must be one every back end can hold, or the event is refused with 400 before anything is written:
otherwise the archive object is written, then the index, analytics or a report fails, on every
retry (``datetime`` cannot hold the year 10000; SQLite and DynamoDB refuse numbers beyond 64 bits or
38 digits; orjson cannot re-encode JSON nested deeper than 254 levels). A field of another type
than the one we read (a string where a number was expected, an object where text was) is still read
as "unknown", as before: only values that would break storage are refused.
"""

from typing import Any

import orjson

from . import keys, phone
from .coerce import integer as _int
from .coerce import number as _float
from .coerce import obj as _obj
from .coerce import text as _str
from .errors import InvalidPayload
from .models import KNOWN_EVENT_TYPES, STATUS_INITIATION_FAILED, CallRecord, WebhookEvent

# Events whose ``data`` is archived as the call's JSON document.
CALL_EVENT_TYPES = frozenset({"post_call_transcription", "call_initiation_failure"})

SUMMARY_MAX_CHARS = 500
# Free text copied into the index (termination reason, titles, names): cut like the summary, so one
# row stays far below DynamoDB's 400 KB item limit. The archive keeps the whole text.
INDEX_TEXT_MAX_CHARS = 500
# Identifiers the index keys on (agent_id, status and outcome are DynamoDB index keys, at most
# 2,048 bytes) or groups by: longer values are not identifiers, and would fail the index write.
MAX_ID_CHARS = 256

# Unix times we read: 2000-01-01T00:00:00Z up to 2099-12-31T23:59:59Z. ElevenLabs has no calls from
# before 2000 or after 2100; values outside break date conversion (analytics partitions, reports).
MIN_UNIX_SECS = 946_684_800
MAX_UNIX_SECS = 4_102_444_799
# Integer quantities we index (seconds, credits): 0 up to 2**53 - 1, the integers every JSON
# consumer (JavaScript, DuckDB and Athena double casts) holds exactly; far inside SQLite's int64.
MAX_QUANTITY = 2**53 - 1
# metadata.cost_fiat (USD): DynamoDB numbers must lie within 1e-130..1e125, so tiny and huge
# floats fail the index write; a call costs neither less than a nano-dollar nor more than 1e9.
MIN_COST_USD, MAX_COST_USD = 1e-9, 1e9
# JSON nesting, counted on the whole envelope: orjson (which writes the archive object) refuses to
# encode deeper structures, and decodes at most 1,024 levels.
MAX_JSON_DEPTH = 254

_TIME_RANGE = f"unix seconds from {MIN_UNIX_SECS} (2000-01-01) to {MAX_UNIX_SECS} (2099-12-31)"


def parse_envelope(raw: bytes) -> WebhookEvent:
    """The envelope of a webhook body, refused (``InvalidPayload``) unless it can be stored as it is."""
    if not raw.strip():
        raise InvalidPayload("request body is empty; expected a JSON webhook envelope")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # Only the wording depends on orjson's message; the answer is the same 400 either way.
        if exc.msg.startswith("depth limit"):
            raise InvalidPayload(_too_deep_message()) from None
        raise InvalidPayload("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidPayload("webhook envelope must be a JSON object with 'type' and 'data'")
    event_type = body.get("type")
    if event_type is None and "conversation_id" in body and "transcript" in body:
        raise InvalidPayload(
            "this is a conversation document (GET /v1/convai/conversations/{id}), not a webhook envelope: "
            "archive saved documents with `callvault import FILE_OR_FOLDER`"
        )
    if not isinstance(event_type, str) or not event_type:
        raise InvalidPayload("webhook envelope has no 'type' string")
    data = body.get("data")
    if not isinstance(data, dict):
        raise InvalidPayload("webhook envelope has no 'data' object")
    document = None
    if event_type in CALL_EVENT_TYPES:
        # Its ``data`` is archived re-encoded: that encoding is the nesting check (one pass, not a
        # count of brackets and then two), and the archive reuses it.
        document = encode_data(data)
        check_nesting({key: value for key, value in body.items() if key != "data"})
    else:  # audio: a megabytes-long string at shallow depth, so counting brackets is the cheap bound
        check_nesting(body, raw.count(b"[") + raw.count(b"{"))
    event = WebhookEvent(event_type, _event_timestamp(body.get("event_timestamp")), data, document)
    check_storable(event)
    return event


def check_nesting(value: object, containers: int | None = None) -> None:
    """Refuse JSON nested deeper than ``MAX_JSON_DEPTH`` levels.

    ``containers`` (when known, e.g. from counting ``[`` and ``{`` in the raw bytes) is an upper bound
    of the depth, so the usual payload is passed without encoding anything.
    """
    if containers is not None and containers <= MAX_JSON_DEPTH:
        return
    try:
        orjson.dumps(value)  # C speed; for what orjson itself decoded, its only refusal is the depth
    except orjson.JSONEncodeError:
        raise InvalidPayload(_too_deep_message()) from None


def encode_data(data: dict[str, Any]) -> bytes:
    """``data`` as orjson writes it, refused unless its envelope (one level above) could be encoded too."""
    try:
        # Inside a list: one level more, as in the envelope, so the limit is the envelope's.
        return orjson.dumps([data])[1:-1]
    except orjson.JSONEncodeError:
        raise InvalidPayload(_too_deep_message()) from None


def _too_deep_message() -> str:
    return f"JSON nests deeper than {MAX_JSON_DEPTH} levels (objects and arrays); it cannot be archived"


def check_storable(event: WebhookEvent) -> None:
    """Refuse an event whose values the index, the analytics tables or memory cannot hold."""
    if event.type == "post_call_transcription":
        _check_transcription(event.data)
    elif event.type in KNOWN_EVENT_TYPES:  # the failure and the audio events index only their agent_id
        _check_id(event.data.get("agent_id"), "data.agent_id")


def _event_timestamp(value: object) -> int | None:
    # Real captures send an int; the vendor's docs say string. Accept both, refuse anything else.
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidPayload(f"event_timestamp must be {_TIME_RANGE}")
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        value = int(value)
    if isinstance(value, int) and MIN_UNIX_SECS <= value <= MAX_UNIX_SECS:
        return value
    raise InvalidPayload(f"event_timestamp must be {_TIME_RANGE}")


def _check_time(value: object, name: str) -> None:
    """A number in a time field is a plausible unix time; 0 reads as "not set" (older payloads)."""
    number = _numeric(value)
    if number is not None and number != 0 and not MIN_UNIX_SECS <= number <= MAX_UNIX_SECS:
        raise InvalidPayload(f"{name} must be {_TIME_RANGE}")


def _check_quantity(value: object, name: str) -> None:
    """A number in an integer field we index is 0..MAX_QUANTITY (a fraction still reads as unknown)."""
    number = _numeric(value)
    if number is not None and not 0 <= number <= MAX_QUANTITY:
        raise InvalidPayload(f"{name} must be a whole number from 0 to {MAX_QUANTITY}")


def _check_cost_usd(value: object, name: str) -> None:
    # Comparisons, not float(): a Python int beyond a float's range must be refused, not raise.
    number = _numeric(value)
    if number is not None and number != 0 and not MIN_COST_USD <= number <= MAX_COST_USD:
        raise InvalidPayload(f"{name} must be 0 or a number of USD from {MIN_COST_USD:g} to {MAX_COST_USD:g}")


def _check_id(value: object, name: str) -> None:
    if isinstance(value, str) and len(value) > MAX_ID_CHARS:
        raise InvalidPayload(f"{name} must be at most {MAX_ID_CHARS} characters")


def _numeric(value: object) -> int | float | None:
    """A JSON number (NaN and infinities included: they fail every range check); bools are not numbers."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _check_transcription(data: dict[str, Any]) -> None:
    """Every value ``call_from_transcription`` and the analytics rows read, checked before any write."""
    metadata = _obj(data.get("metadata"))
    analysis = _obj(data.get("analysis"))
    _check_id(data.get("agent_id"), "data.agent_id")
    _check_time(metadata.get("start_time_unix_secs"), "data.metadata.start_time_unix_secs")
    _check_quantity(metadata.get("call_duration_secs"), "data.metadata.call_duration_secs")
    _check_quantity(metadata.get("cost"), "data.metadata.cost")
    _check_cost_usd(metadata.get("cost_fiat"), "data.metadata.cost_fiat")
    _check_id(data.get("status"), "data.status")
    _check_id(analysis.get("call_successful"), "data.analysis.call_successful")
    _check_id(_obj(metadata.get("phone_call")).get("direction"), "data.metadata.phone_call.direction")
    _check_id(metadata.get("main_language"), "data.metadata.main_language")
    transcript = data.get("transcript")
    if isinstance(transcript, list):
        for turn in transcript:
            if isinstance(turn, dict):
                _check_quantity(turn.get("time_in_call_secs"), "data.transcript[].time_in_call_secs")


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
    _check_transcription(data)  # also here: imports and backfills read documents no envelope carried
    metadata = _obj(data.get("metadata"))
    analysis = _obj(data.get("analysis"))
    transcript = data.get("transcript")
    e164 = customer_phone(data, default_region)
    return CallRecord(
        conversation_id=conversation_id,
        phone=e164,
        archive_prefix=keys.phone_prefix(e164),
        agent_id=_str(data.get("agent_id")),
        agent_name=_clip(_str(data.get("agent_name"))),
        direction=_str(_obj(metadata.get("phone_call")).get("direction")),
        started_at=_int(metadata.get("start_time_unix_secs")) or event_at,
        duration_s=_int(metadata.get("call_duration_secs")),
        message_count=len(transcript) if isinstance(transcript, list) else 0,
        status=_str(data.get("status")),
        call_successful=_str(analysis.get("call_successful")),
        termination_reason=_clip(_str(metadata.get("termination_reason"))),
        cost=_int(metadata.get("cost")),
        cost_usd=_float(metadata.get("cost_fiat")),
        language=_str(metadata.get("main_language")),
        summary_title=indexed_title(analysis.get("call_summary_title")),
        summary=indexed_summary(analysis.get("transcript_summary")),
        event_at=event_at if event_at is not None else 0,
        expects_audio=data["has_audio"] if isinstance(data.get("has_audio"), bool) else None,
    )


def _clip(text: str | None) -> str | None:
    return text[:INDEX_TEXT_MAX_CHARS] if text else None


def indexed_summary(value: Any) -> str | None:
    """``analysis.transcript_summary`` as the index keeps it (sync compares listings with it)."""
    summary = _str(value)
    return summary[:SUMMARY_MAX_CHARS] if summary else None


def indexed_title(value: Any) -> str | None:
    """``analysis.call_summary_title`` as the index keeps it."""
    return _clip(_str(value))


def call_from_initiation_failure(
    data: dict[str, Any], event_at: int | None, default_region: str = phone.DEFAULT_REGION
) -> CallRecord:
    """A call that never connected: recorded as failed, with the provider's reason and dialled number."""
    conversation_id = keys.check_conversation_id(data.get("conversation_id"))
    _check_id(data.get("agent_id"), "data.agent_id")
    provider = _obj(_obj(data.get("metadata")).get("body"))
    twilio_direction = _str(provider.get("Direction")) or ""
    outbound = twilio_direction.startswith("outbound")
    # Twilio: the customer is the dialled "To" on outbound calls, the caller "From" on inbound ones.
    e164 = phone.to_e164(provider.get("To") if outbound else provider.get("From"), default_region)
    reason = _clip(_str(data.get("failure_reason"))) or "unknown"
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
    check_nesting(document)
    if isinstance(document.get("type"), str) and isinstance(document.get("data"), dict):
        event = WebhookEvent(document["type"], _event_timestamp(document.get("event_timestamp")), document["data"])
    elif "conversation_id" in document and "transcript" in document:
        event = WebhookEvent("post_call_transcription", None, document)
    else:
        raise InvalidPayload("not a webhook envelope nor a conversation document")
    check_storable(event)
    return event

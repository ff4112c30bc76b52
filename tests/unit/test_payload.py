"""Reading ElevenLabs payloads: the envelope strictly, the call's facts tolerantly, on every fixture."""

import copy
import json
from typing import Any

import pytest

from services.core.domain import payload
from services.core.domain.errors import InvalidPayload
from services.core.domain.models import STATUS_INITIATION_FAILED
from tests.support import (
    ALL_FIXTURES,
    AUDIO,
    INITIATION_FAILURE,
    TRANSCRIPTION,
    TRANSCRIPTION_OUTBOUND,
    TRANSCRIPTION_WEB,
    fixture_bytes,
    fixture_json,
)


def _envelope(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def _data(name: str) -> dict[str, Any]:
    data: dict[str, Any] = fixture_json(name)["data"]
    return data


# --- envelope -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_payload_parse_envelope_reads_every_fixture(name: str) -> None:
    expected = fixture_json(name)
    event = payload.parse_envelope(fixture_bytes(name))
    assert event.type == expected["type"]
    assert event.event_timestamp == expected["event_timestamp"]
    assert isinstance(event.event_timestamp, int)
    assert event.data == expected["data"]


def test_payload_parse_envelope_accepts_a_digit_string_timestamp() -> None:
    event = payload.parse_envelope(_envelope(type="post_call_audio", event_timestamp="1751802025", data={}))
    assert event.event_timestamp == 1751802025


def test_payload_parse_envelope_accepts_a_missing_or_null_timestamp() -> None:
    assert payload.parse_envelope(_envelope(type="x", data={})).event_timestamp is None
    assert payload.parse_envelope(_envelope(type="x", event_timestamp=None, data={})).event_timestamp is None


def test_payload_parse_envelope_keeps_unknown_types_and_fields() -> None:
    event = payload.parse_envelope(
        _envelope(type="answering_machine_detection", event_timestamp=1751802025, data={"a": [1]})
    )
    assert (event.type, event.data) == ("answering_machine_detection", {"a": [1]})


BAD_TIMESTAMPS: list[object] = [
    "abc",
    "",
    "-1",
    "+1751802025",
    "1751802025.0",
    " 1751802025",
    "".join(chr(0x0660 + int(d)) for d in "1751802025"),  # Arabic-Indic digits
    "".join(chr(0xFF10 + int(d)) for d in "1751802025"),  # fullwidth digits
    "1" * 13,
    1.5,
    1751802025.5,
    True,
    False,
    [],
    {},
    [1751802025],
]


@pytest.mark.parametrize("value", BAD_TIMESTAMPS, ids=[repr(v)[:24] for v in BAD_TIMESTAMPS])
def test_payload_parse_envelope_rejects_a_badly_typed_timestamp(value: object) -> None:
    with pytest.raises(InvalidPayload):
        payload.parse_envelope(_envelope(type="post_call_transcription", event_timestamp=value, data={}))


@pytest.mark.parametrize(
    "value",
    [2**63, 2**64 - 1, 10**20, -1, -(2**63) - 1],
    ids=["2^63", "2^64-1", "1e20", "negative", "below-int64"],
)
def test_payload_parse_envelope_rejects_a_timestamp_no_store_can_hold(value: int) -> None:
    # An unbounded int once reached SQLite and raised OverflowError: 500 forever, object orphaned.
    with pytest.raises(InvalidPayload):
        payload.parse_envelope(_envelope(type="post_call_transcription", event_timestamp=value, data={}))


BAD_BODIES: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("whitespace", b" \n\t"),
    ("not-json", b"hello"),
    ("truncated-json", b'{"type": "post_call_audio", "data": {'),
    ("invalid-utf8", b'{"type": "\xff\xfe", "data": {}}'),
    ("json-array", b"[]"),
    ("json-string", b'"post_call_audio"'),
    ("json-number", b"42"),
    ("json-null", b"null"),
    ("empty-object", b"{}"),
    ("missing-type", _envelope(event_timestamp=1, data={})),
    ("empty-type", _envelope(type="", data={})),
    ("type-not-string", _envelope(type=7, data={})),
    ("missing-data", _envelope(type="post_call_audio")),
    ("data-null", _envelope(type="post_call_audio", data=None)),
    ("data-list", _envelope(type="post_call_audio", data=[])),
    ("data-string", _envelope(type="post_call_audio", data="{}")),
]


@pytest.mark.parametrize("body", [b for _, b in BAD_BODIES], ids=[i for i, _ in BAD_BODIES])
def test_payload_parse_envelope_rejects_what_is_not_an_envelope(body: bytes) -> None:
    with pytest.raises(InvalidPayload):
        payload.parse_envelope(body)


# --- post_call_transcription --------------------------------------------------------------------


def test_payload_call_from_transcription_inbound_fixture() -> None:
    data = _data(TRANSCRIPTION)
    record = payload.call_from_transcription(data, 1751802025)
    assert record.conversation_id == "conv_01jzfrjvcce0vsea1fcbpp9p04"
    assert record.phone == "+16125550142"
    assert record.archive_prefix == "16125550142"
    assert record.direction == "inbound"
    assert record.agent_id == "agent_01jxbrc1trfxev5sdp5xk4ra67"
    assert record.started_at == 1751802015
    assert record.duration_s == 7  # metadata.call_duration_secs, not system__call_duration_secs (6)
    assert record.message_count == len(data["transcript"])
    assert record.cost == 45
    assert record.call_successful == "failure"
    assert record.status == "done"
    assert record.termination_reason == "Client disconnected: 1005"
    assert record.language == "en"
    assert record.summary == data["analysis"]["transcript_summary"]
    assert record.event_at == 1751802025
    # Audio fields belong to the audio event; the transcript never sets them.
    assert (record.has_audio, record.audio_key, record.audio_bytes) == (None, None, None)


def test_payload_call_from_transcription_outbound_uses_external_number_not_the_agents_caller_id() -> None:
    data = _data(TRANSCRIPTION_OUTBOUND)
    caller_id = data["conversation_initiation_client_data"]["dynamic_variables"]["system__caller_id"]
    assert data["metadata"]["phone_call"]["external_number"] == "+1612555 0177"
    record = payload.call_from_transcription(data, 1751888425)
    assert record.phone == "+16125550177"
    assert record.phone != caller_id  # on outbound calls the caller id is the agent's own number
    assert record.archive_prefix == "16125550177"
    assert record.direction == "outbound"
    assert record.started_at == 1751888415


def test_payload_call_from_transcription_web_call_has_no_phone() -> None:
    record = payload.call_from_transcription(_data(TRANSCRIPTION_WEB), 1751802025)
    assert record.conversation_id == "conv_01jzfrjvcce0vsea1fcbpp9p06"
    assert record.phone is None
    assert record.archive_prefix == "unknown"
    assert record.direction is None


@pytest.mark.parametrize("missing", ["absent", "null", "garbage"])
def test_payload_inbound_without_external_number_falls_back_to_caller_id(missing: str) -> None:
    data = copy.deepcopy(_data(TRANSCRIPTION))
    phone_call = data["metadata"]["phone_call"]
    if missing == "absent":
        del phone_call["external_number"]
    else:
        phone_call["external_number"] = None if missing == "null" else "anonymous"
    data["conversation_initiation_client_data"]["dynamic_variables"]["system__caller_id"] = "+1 612 555 0199"
    record = payload.call_from_transcription(data, 1)
    assert record.phone == "+16125550199"
    assert record.archive_prefix == "16125550199"


@pytest.mark.parametrize("missing", ["absent", "null"])
def test_payload_outbound_without_external_number_does_not_fall_back(missing: str) -> None:
    data = copy.deepcopy(_data(TRANSCRIPTION_OUTBOUND))
    phone_call = data["metadata"]["phone_call"]
    if missing == "absent":
        del phone_call["external_number"]
    else:
        phone_call["external_number"] = None
    assert data["conversation_initiation_client_data"]["dynamic_variables"]["system__caller_id"]
    record = payload.call_from_transcription(data, 1)
    assert record.phone is None
    assert record.archive_prefix == "unknown"


def test_payload_summary_is_truncated() -> None:
    data = copy.deepcopy(_data(TRANSCRIPTION))
    data["analysis"]["transcript_summary"] = "x" * 499 + "yz" + "w" * 1000
    record = payload.call_from_transcription(data, 1)
    assert record.summary == "x" * 499 + "y"
    assert len(record.summary) == payload.SUMMARY_MAX_CHARS == 500


def test_payload_reads_newer_fields_when_present() -> None:
    data = copy.deepcopy(_data(TRANSCRIPTION))
    data["agent_name"] = "Story agent"
    data["metadata"]["cost_fiat"] = 0.0123
    data["analysis"]["call_summary_title"] = "Greeting"
    record = payload.call_from_transcription(data, 1)
    assert (record.agent_name, record.cost_usd, record.summary_title) == ("Story agent", 0.0123, "Greeting")


def test_payload_event_at_defaults_to_zero_and_started_at_to_event_time() -> None:
    data = copy.deepcopy(_data(TRANSCRIPTION))
    del data["metadata"]["start_time_unix_secs"]
    assert payload.call_from_transcription(data, None).event_at == 0
    assert payload.call_from_transcription(data, 1751802099).started_at == 1751802099


TOLERATED: list[tuple[str, str, object]] = [
    ("metadata-string", "metadata", "not a dict"),
    ("metadata-list", "metadata", [1, 2]),
    ("metadata-null", "metadata", None),
    ("transcript-string", "transcript", "hello"),
    ("transcript-dict", "transcript", {"0": {}}),
    ("transcript-null", "transcript", None),
    ("analysis-list", "analysis", []),
    ("client-data-string", "conversation_initiation_client_data", "x"),
    ("agent-id-number", "agent_id", 12),
    ("status-dict", "status", {}),
]


@pytest.mark.parametrize(("field", "value"), [t[1:] for t in TOLERATED], ids=[t[0] for t in TOLERATED])
def test_payload_call_from_transcription_tolerates_reshaped_fields(field: str, value: object) -> None:
    data = copy.deepcopy(_data(TRANSCRIPTION))
    data[field] = value
    record = payload.call_from_transcription(data, 1751802025)
    assert record.conversation_id == "conv_01jzfrjvcce0vsea1fcbpp9p04"
    assert record.event_at == 1751802025
    if field == "transcript":
        assert record.message_count == 0
    if field == "metadata":
        assert (record.phone, record.direction, record.duration_s, record.cost) == (None, None, None, None)
        assert record.archive_prefix == "unknown"
    if field == "agent_id":
        assert record.agent_id is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("45", None), (True, None), (45.0, 45), (45.5, None), (None, None), ({"n": 45}, None)],
    ids=["string", "bool", "integral-float", "fraction", "null", "object"],
)
def test_payload_numbers_of_another_shape_are_read_as_unknown(value: object, expected: int | None) -> None:
    # Tolerant body: a value we do not understand is "unknown" in the index; the archive keeps it.
    data = copy.deepcopy(_data(TRANSCRIPTION))
    data["metadata"]["cost"] = value
    data["metadata"]["call_duration_secs"] = value
    record = payload.call_from_transcription(data, 1)
    assert (record.cost, record.duration_s) == (expected, expected)


@pytest.mark.parametrize(
    "value",
    [2**53, 2**63, 2**64 - 1, 1e30, -1, -0.5, -(10**20)],
    ids=["2^53", "2^63", "2^64-1", "1e30", "-1", "-0.5", "-1e20"],
)
@pytest.mark.parametrize("field", ["cost", "call_duration_secs"])
def test_payload_numbers_no_store_can_hold_are_refused_naming_the_field(field: str, value: object) -> None:
    # Once read as unknown; now refused before any write, so the archive never holds what the index cannot.
    data = copy.deepcopy(_data(TRANSCRIPTION))
    data["metadata"][field] = value
    with pytest.raises(InvalidPayload, match=f"data.metadata.{field} must be a whole number from 0 to"):
        payload.call_from_transcription(data, 1)


def test_payload_started_at_out_of_range_is_refused() -> None:
    data = copy.deepcopy(_data(TRANSCRIPTION))
    data["metadata"]["start_time_unix_secs"] = 2**63
    with pytest.raises(InvalidPayload, match="start_time_unix_secs must be unix seconds from 946684800"):
        payload.call_from_transcription(data, 1751802025)


@pytest.mark.parametrize("value", [None, "", "../../etc/passwd", "a/b", 5], ids=repr)
def test_payload_call_from_transcription_requires_a_safe_conversation_id(value: object) -> None:
    data = copy.deepcopy(_data(TRANSCRIPTION))
    data["conversation_id"] = value
    with pytest.raises(InvalidPayload):
        payload.call_from_transcription(data, 1)


def test_payload_customer_phone_matches_the_record() -> None:
    for name, expected in [
        (TRANSCRIPTION, "+16125550142"),
        (TRANSCRIPTION_OUTBOUND, "+16125550177"),
        (TRANSCRIPTION_WEB, None),
    ]:
        assert payload.customer_phone(_data(name)) == expected, name


# --- call_initiation_failure --------------------------------------------------------------------


def test_payload_call_from_initiation_failure_fixture() -> None:
    record = payload.call_from_initiation_failure(_data(INITIATION_FAILURE), 1751805625)
    assert record.conversation_id == "conv_01jzfrjvcce0vsea1fcbpp9p07"
    assert record.status == STATUS_INITIATION_FAILED == "initiation_failed"
    assert record.failure_reason == "no-answer"
    assert record.phone == "+16125550188"  # Twilio "To" on an outbound-api call
    assert record.archive_prefix == "16125550188"
    assert record.direction == "outbound"
    assert record.call_successful == "failure"
    assert record.started_at == record.event_at == 1751805625
    assert (record.duration_s, record.message_count) == (0, 0)
    assert record.termination_reason is not None and "no-answer" in record.termination_reason


def test_payload_initiation_failure_inbound_uses_the_caller() -> None:
    data = copy.deepcopy(_data(INITIATION_FAILURE))
    data["metadata"]["body"]["Direction"] = "inbound"
    data["metadata"]["body"]["From"] = "+16125550111"
    record = payload.call_from_initiation_failure(data, 1)
    assert (record.phone, record.direction) == ("+16125550111", "inbound")


@pytest.mark.parametrize(
    "metadata", [None, "x", {"type": "sip", "body": "raw sip"}, {"type": "sip", "body": {}}], ids=repr
)
def test_payload_initiation_failure_without_a_readable_provider_body(metadata: object) -> None:
    data = copy.deepcopy(_data(INITIATION_FAILURE))
    data["metadata"] = metadata
    del data["failure_reason"]
    record = payload.call_from_initiation_failure(data, 7)
    assert record.phone is None
    assert record.archive_prefix == "unknown"
    assert record.failure_reason == "unknown"
    assert record.status == "initiation_failed"


# --- the audio fixture --------------------------------------------------------------------------


def test_payload_audio_fixture_carries_no_phone() -> None:
    data = _data(AUDIO)
    assert set(data) == {"agent_id", "conversation_id", "full_audio"}
    assert payload.customer_phone(data) is None


# --- as_transcription_event ---------------------------------------------------------------------


def test_payload_as_transcription_event_accepts_an_envelope() -> None:
    envelope = fixture_json(TRANSCRIPTION)
    event = payload.as_transcription_event(envelope)
    assert (event.type, event.event_timestamp, event.data) == (
        "post_call_transcription",
        envelope["event_timestamp"],
        envelope["data"],
    )


def test_payload_as_transcription_event_accepts_a_string_timestamp_envelope() -> None:
    envelope = fixture_json(TRANSCRIPTION)
    envelope["event_timestamp"] = str(envelope["event_timestamp"])
    assert payload.as_transcription_event(envelope).event_timestamp == 1751802025


def test_payload_as_transcription_event_accepts_a_bare_conversation_document() -> None:
    document = fixture_json(TRANSCRIPTION)["data"]
    event = payload.as_transcription_event(document)
    assert (event.type, event.event_timestamp) == ("post_call_transcription", None)
    assert event.data == document
    assert payload.call_from_transcription(event.data, event.event_timestamp).phone == "+16125550142"


@pytest.mark.parametrize(
    "document",
    [{}, {"type": "post_call_transcription"}, {"conversation_id": "c"}, {"data": {}}, {"type": 1, "data": {}}],
    ids=["empty", "type-only", "id-without-transcript", "data-without-type", "type-not-string"],
)
def test_payload_as_transcription_event_rejects_other_documents(document: dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload):
        payload.as_transcription_event(document)

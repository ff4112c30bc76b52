"""Storable values: the parser refuses (400) every time, number, identifier and nesting no store or
reader can hold, naming the field and the allowed range, and still reads odd values it merely does
not understand as "unknown". The seeded property over the real stores: tests/integration/test_storable_fuzz.py.
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from services.core.domain import payload
from services.core.domain.errors import InvalidPayload
from tests.support import AUDIO, INITIATION_FAILURE, TRANSCRIPTION, fixture_json

YEAR_10000 = 253_402_300_800
T_2000 = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp())
T_2100 = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())


def _envelope(change: Callable[[dict[str, Any]], None], name: str = TRANSCRIPTION) -> bytes:
    envelope = fixture_json(name)
    change(envelope)
    return json.dumps(envelope).encode()


def _metadata(field: str, value: object) -> bytes:
    return _envelope(lambda env: env["data"]["metadata"].__setitem__(field, value))


def _event_timestamp(value: object) -> bytes:
    return _envelope(lambda env: env.__setitem__("event_timestamp", value))


def _nested(levels: int) -> bytes:
    """The transcription fixture with ``levels`` nested arrays as a data-collection value (bytes: json.dumps
    cannot write the deepest ones)."""
    marker = "__nested_value__"
    body = _envelope(
        lambda env: env["data"]["analysis"].__setitem__("data_collection_results", {"x": {"value": marker}})
    )
    return body.replace(json.dumps(marker).encode(), b"[" * levels + b"]" * levels)


# --- the reported values ------------------------------------------------------------------------


REFUSED: list[tuple[str, bytes, str]] = [
    ("start-year-10000", _metadata("start_time_unix_secs", YEAR_10000), "data.metadata.start_time_unix_secs"),
    ("start-1e15", _metadata("start_time_unix_secs", 1e15), "data.metadata.start_time_unix_secs"),
    ("start-minus-1e15", _metadata("start_time_unix_secs", -1e15), "data.metadata.start_time_unix_secs"),
    ("start-1999", _metadata("start_time_unix_secs", T_2000 - 1), "data.metadata.start_time_unix_secs"),
    ("start-2100", _metadata("start_time_unix_secs", T_2100), "data.metadata.start_time_unix_secs"),
    (
        "event-timestamp-year-10000",
        _envelope(lambda e: e.__setitem__("event_timestamp", YEAR_10000)),
        "event_timestamp",
    ),
    ("event-timestamp-zero", _envelope(lambda e: e.__setitem__("event_timestamp", 0)), "event_timestamp"),
    (
        "event-timestamp-string-1999",
        _envelope(lambda e: e.__setitem__("event_timestamp", "946684799")),
        "event_timestamp",
    ),
    ("duration-negative", _metadata("call_duration_secs", -1), "data.metadata.call_duration_secs"),
    ("duration-2^63", _metadata("call_duration_secs", 2**63), "data.metadata.call_duration_secs"),
    ("duration-1e300", _metadata("call_duration_secs", 1e300), "data.metadata.call_duration_secs"),
    ("cost-2^64-1", _metadata("cost", 2**64 - 1), "data.metadata.cost"),
    ("cost-negative", _metadata("cost", -45), "data.metadata.cost"),
    ("cost-fiat-1e300", _metadata("cost_fiat", 1e300), "data.metadata.cost_fiat"),
    ("cost-fiat-1e-300", _metadata("cost_fiat", 1e-300), "data.metadata.cost_fiat"),
    ("cost-fiat-negative", _metadata("cost_fiat", -0.01), "data.metadata.cost_fiat"),
    (
        "turn-time-negative",
        _envelope(lambda e: e["data"]["transcript"][0].__setitem__("time_in_call_secs", -3)),
        "data.transcript[].time_in_call_secs",
    ),
    ("agent-id-3000-chars", _envelope(lambda e: e["data"].__setitem__("agent_id", "a" * 3000)), "data.agent_id"),
    (
        "outcome-3000-chars",
        _envelope(lambda e: e["data"]["analysis"].__setitem__("call_successful", "s" * 3000)),
        "data.analysis.call_successful",
    ),
    (
        "failure-agent-id-3000-chars",
        _envelope(lambda e: e["data"].__setitem__("agent_id", "a" * 3000), INITIATION_FAILURE),
        "data.agent_id",
    ),
    (
        "audio-agent-id-3000-chars",
        _envelope(lambda e: e["data"].__setitem__("agent_id", "a" * 3000), AUDIO),
        "data.agent_id",
    ),
    ("nested-256", _nested(256), "nests deeper than 254 levels"),
    ("nested-1000", _nested(1000), "nests deeper than 254 levels"),
    ("nested-1024", _nested(1024), "nests deeper than 254 levels"),
    ("nested-100000", _nested(100_000), "nests deeper than 254 levels"),
]


@pytest.mark.parametrize(("body", "names"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_payload_storable_refuses_values_no_store_can_hold_naming_the_field(body: bytes, names: str) -> None:
    with pytest.raises(InvalidPayload) as refused:
        payload.parse_envelope(body)
    assert names in refused.value.message
    assert "must be" in refused.value.message or "deeper" in refused.value.message


def test_payload_storable_messages_give_the_allowed_range() -> None:
    with pytest.raises(InvalidPayload) as refused:
        payload.parse_envelope(_metadata("start_time_unix_secs", YEAR_10000))
    assert "946684800 (2000-01-01) to 4102444799 (2099-12-31)" in refused.value.message
    with pytest.raises(InvalidPayload) as refused:
        payload.parse_envelope(_metadata("cost", -1))
    assert f"from 0 to {2**53 - 1}" in refused.value.message


def test_payload_storable_nesting_up_to_the_limit_is_accepted() -> None:
    # envelope, data, analysis, data_collection_results and its entry: 5 levels above the arrays.
    deepest = _nested(payload.MAX_JSON_DEPTH - 5)
    assert payload.parse_envelope(deepest).type == "post_call_transcription"
    with pytest.raises(InvalidPayload):
        payload.parse_envelope(_nested(payload.MAX_JSON_DEPTH - 4))


def test_payload_storable_limits_match_the_documented_calendar_range() -> None:
    assert payload.MIN_UNIX_SECS == T_2000
    assert payload.MAX_UNIX_SECS == T_2100 - 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("start_time_unix_secs", 0),  # older payloads: "not set", the event time is used
        ("start_time_unix_secs", "1751802015"),
        ("start_time_unix_secs", 1751802015.5),
        ("call_duration_secs", "7"),
        ("call_duration_secs", None),
        ("cost", {"credits": 45}),
        ("cost", 45.5),
        ("cost_fiat", "0.01"),
        ("cost_fiat", 0),
        ("termination_reason", "x" * 100_000),  # free text: clipped in the index, kept in the archive
    ],
    ids=repr,
)
def test_payload_storable_odd_values_we_do_not_understand_are_still_accepted(field: str, value: object) -> None:
    event = payload.parse_envelope(_metadata(field, value))
    record = payload.call_from_transcription(event.data, event.event_timestamp)
    assert record.started_at is not None and T_2000 <= record.started_at < T_2100
    assert record.termination_reason is None or len(record.termination_reason) <= payload.INDEX_TEXT_MAX_CHARS


def test_payload_storable_import_path_refuses_the_same_values() -> None:
    envelope = fixture_json(TRANSCRIPTION)
    envelope["data"]["metadata"]["start_time_unix_secs"] = YEAR_10000
    with pytest.raises(InvalidPayload):
        payload.as_transcription_event(envelope)
    with pytest.raises(InvalidPayload):
        payload.as_transcription_event(envelope["data"])  # a bare conversation document

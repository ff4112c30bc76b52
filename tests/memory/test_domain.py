"""Building a call's memories from its transcription: what is kept, what is skipped, the metadata."""

import pytest

from services.core.domain.errors import InvalidPayload
from services.memory.domain import (
    AGENT_KEY,
    MemoryJob,
    build_conversation_memories,
    caller_name,
    factual_text,
)
from tests.memory.support import CALLER, CONV, call_envelope
from tests.support import TRANSCRIPTION, TRANSCRIPTION_OUTBOUND, TRANSCRIPTION_WEB, fixture_json

AGENT = "agent_01jxbrc1trfxev5sdp5xk4ra67"


def test_build_memories_from_the_real_fixture_one_factual_then_the_turns() -> None:
    memories = build_conversation_memories(fixture_json(TRANSCRIPTION)["data"])
    assert (memories.conversation_id, memories.phone, memories.agent_id) == (CONV, CALLER, AGENT)
    assert memories.started_at == 1751802015
    assert memories.caller_name == "Maria"
    assert [(m.type, m.role) for m in memories.items] == [("factual", "assistant"), ("semantic", "assistant")]
    factual, turn = memories.items
    assert factual.metadata == {
        "type": "factual",
        "conversation_id": CONV,
        AGENT_KEY: AGENT,
        "started_at": 1751802015,
        "caller_name": "Maria",
    }
    assert turn.metadata == {
        "type": "semantic",
        "conversation_id": CONV,
        AGENT_KEY: AGENT,
        "started_at": 1751802015,
        "turn": 0,
    }
    assert turn.text.startswith("Hello, Maria.")


def test_factual_text_has_summary_evaluations_and_collected_values_without_nulls() -> None:
    text = factual_text(fixture_json(TRANSCRIPTION)["data"]["analysis"])
    assert text is not None
    lines = text.split("\n")
    assert (
        lines[0]
        == "Call summary: The AI agent greeted Maria, offering to continue a previous story or start a new one."
    )
    assert lines[1].startswith("Evaluation results: session_closure: failure; empathy_displayed: success;")
    assert lines[2].startswith("Data collected: session_date: 1751802015; comfort_level: Whenever")
    assert "user_name: Maria" in lines[2]
    assert "key_life_event" not in text and "consent_given" not in text  # value null


def test_factual_text_skips_the_string_none_and_blank_values_and_keeps_non_strings() -> None:
    analysis = {
        "data_collection_results": {
            "a": {"value": "None"},
            "b": {"value": "  "},
            "c": {"value": 0},
            "d": {"value": False},
            "e": {"value": {"k": [1]}},
        },
        "evaluation_criteria_results": {"x": {"result": None}, "y": {"result": "success"}},
    }
    assert factual_text(analysis) == 'Evaluation results: y: success\nData collected: c: 0; d: false; e: {"k":[1]}'


def test_factual_text_is_none_when_the_analysis_is_empty() -> None:
    assert factual_text({}) is None
    assert factual_text({"transcript_summary": "  ", "data_collection_results": {"a": {"value": None}}}) is None


def test_turns_map_roles_and_skip_empty_null_and_ellipsis_turns() -> None:
    envelope = call_envelope(
        turns=[
            ("agent", "Hi there"),
            ("user", None),
            ("user", "..."),
            ("user", "   "),
            ("tool", "not a person"),
            ("user", "I  moved to\nLisbon"),
        ]
    )
    memories = build_conversation_memories(envelope["data"])
    semantic = [m for m in memories.items if m.type == "semantic"]
    assert [(m.role, m.text, m.metadata["turn"]) for m in semantic] == [
        ("assistant", "Hi there", 0),
        ("user", "I moved to Lisbon", 5),
    ]


def test_a_web_call_has_no_phone_and_the_index_phone_wins_when_given() -> None:
    assert build_conversation_memories(fixture_json(TRANSCRIPTION_WEB)["data"]).phone is None
    outbound = build_conversation_memories(fixture_json(TRANSCRIPTION_OUTBOUND)["data"])
    assert outbound.phone == "+16125550177"  # "+1612555 0177" normalised like ingest does
    assert (
        build_conversation_memories(fixture_json(TRANSCRIPTION)["data"], phone="+15550001111").phone == "+15550001111"
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("user_name", "Maria", "Maria"),
        ("caller_name", " Ana  Lopez ", "Ana Lopez"),
        ("name", "Bo", "Bo"),
        ("first_name", "Kim", "Kim"),
        ("username_hint", "x", None),
        ("user_name", "None", None),
        ("user_name", None, None),
        ("user_name", "x" * 81, None),
    ],
)
def test_caller_name_comes_from_a_name_like_data_collection_field(
    key: str, value: object, expected: str | None
) -> None:
    assert caller_name({"data_collection_results": {key: {"value": value}}}) == expected


def test_a_conversation_id_that_is_not_one_is_refused() -> None:
    with pytest.raises(InvalidPayload):
        build_conversation_memories({"conversation_id": "../etc"})


def test_memory_job_round_trips_as_json_and_refuses_garbage() -> None:
    job = MemoryJob(CONV, "16125550142/x.json", 1751802025)
    assert MemoryJob.from_json(job.to_json()) == job
    assert MemoryJob.from_json('{"conversation_id": "c1", "event_at": true}') == MemoryJob("c1")
    for bad in ("not json", "[]", '{"conversation_id": "a/b"}'):
        with pytest.raises(ValueError):
            MemoryJob.from_json(bad)

"""Building a call's memories from its transcription: what is kept, what is skipped, the metadata."""

import pytest

from services.core.domain.errors import InvalidPayload
from services.memory.domain import (
    AGENT_KEY,
    MemoryJob,
    build_conversation_memories,
    caller_name,
)
from services.memory.extract import (
    CHUNK_CHARS,
    Fact,
    Statement,
    call_facts,
    caller_statements,
    is_informative,
    near_duplicates,
)
from tests.memory.support import CALLER, CONV, call_envelope
from tests.support import TRANSCRIPTION, TRANSCRIPTION_OUTBOUND, TRANSCRIPTION_WEB, fixture_json

AGENT = "agent_01jxbrc1trfxev5sdp5xk4ra67"


BASE = {"conversation_id": CONV, AGENT_KEY: AGENT, "started_at": 1751802015}


def test_build_memories_from_the_real_fixture_facts_only_since_the_caller_never_spoke() -> None:
    memories = build_conversation_memories(fixture_json(TRANSCRIPTION)["data"])
    assert (memories.conversation_id, memories.phone, memories.agent_id) == (CONV, CALLER, AGENT)
    assert memories.started_at == 1751802015
    assert memories.caller_name == "Maria"
    # The one turn is the agent's greeting: no semantic memory. Facts are about the caller: role user.
    assert [(m.type, m.role, m.metadata["source"]) for m in memories.items] == [
        ("factual", "user", "summary"),
        ("factual", "user", "data_collection"),
        ("factual", "user", "data_collection"),
        ("factual", "user", "data_collection"),
        ("factual", "user", "evaluation"),
    ]
    summary, date, comfort, name, evaluation = memories.items
    assert summary.text == (
        "Call summary: The AI agent greeted Maria, offering to continue a previous story or start a new one."
    )
    assert summary.metadata == {**BASE, "type": "factual", "source": "summary", "seq": 0, "caller_name": "Maria"}
    assert (date.text, date.metadata["field"], date.metadata["seq"]) == ("session date: 1751802015", "session_date", 1)
    assert comfort.text.startswith("comfort level: Whenever you")
    assert name.text == "user name: Maria"
    assert name.metadata == {
        **BASE,
        "type": "factual",
        "source": "data_collection",
        "seq": 3,
        "field": "user_name",
        "caller_name": "Maria",
    }
    assert evaluation.text == (
        "Evaluation results: session_closure: failure; empathy_displayed: success; memory_utilized: unknown; "
        "name_captured: success; positive_interaction: unknown"
    )
    assert not any("key_life_event" in m.text or "consent_given" in m.text for m in memories.items)  # null


@pytest.mark.parametrize("fixture", [TRANSCRIPTION, TRANSCRIPTION_OUTBOUND, TRANSCRIPTION_WEB])
def test_every_transcription_fixture_gives_facts_and_no_agent_line(fixture: str) -> None:
    data = fixture_json(fixture)["data"]
    memories = build_conversation_memories(data)
    agent_lines = {t["message"] for t in data["transcript"] if t["role"] == "agent"}
    assert [m.metadata["source"] for m in memories.items] == [
        "summary",
        "data_collection",
        "data_collection",
        "data_collection",
        "evaluation",
    ]
    assert all(m.role == "user" and m.type == "factual" for m in memories.items)
    assert not agent_lines & {m.text for m in memories.items}
    assert [m.metadata["seq"] for m in memories.items] == list(range(5))
    assert build_conversation_memories(data) == memories  # deterministic: a re-run stores the same set


def test_call_facts_skip_the_string_none_and_blank_values_and_keep_non_strings() -> None:
    analysis = {
        "data_collection_results": {
            "a": {"value": "None"},
            "b": {"value": "  "},
            "c": {"value": 0},
            "d_e": {"value": False},
            "e": {"value": {"k": [1]}},
        },
        "evaluation_criteria_results": {"x": {"result": None}, "y": {"result": "success"}},
    }
    assert call_facts(analysis) == [
        Fact("c: 0", "data_collection", "c"),
        Fact("d e: false", "data_collection", "d_e"),
        Fact('e: {"k":[1]}', "data_collection", "e"),
        Fact("Evaluation results: y: success", "evaluation"),
    ]


def test_call_facts_are_empty_when_the_analysis_is_empty() -> None:
    assert call_facts({}) == []
    assert call_facts({"transcript_summary": "  ", "data_collection_results": {"a": {"value": None}}}) == []


def test_only_the_callers_turns_are_kept_and_empty_null_and_ellipsis_turns_skipped() -> None:
    envelope = call_envelope(
        turns=[
            ("agent", "Where did you grow up, Maria?"),
            ("user", None),
            ("user", "..."),
            ("user", "   "),
            ("tool", "not a person said this"),
            ("user", "I  grew up in\nWinona, on a farm"),
        ]
    )
    memories = build_conversation_memories(envelope["data"])
    semantic = [m for m in memories.items if m.type == "semantic"]
    assert [(m.role, m.text, m.metadata["turn"], m.metadata["source"]) for m in semantic] == [
        ("user", "I grew up in Winona, on a farm", 5, "turn"),
    ]
    assert semantic[0].metadata["seq"] == 5  # after the five facts


@pytest.mark.parametrize(
    "filler", ["Yes.", "OK?", "I...", "My God.", "Oh my goodness.", "Yeah, yeah.", "I don't know.", "Mm-hmm.", "Right!"]
)
def test_fillers_and_fragments_are_not_memories(filler: str) -> None:
    assert not is_informative(filler)
    assert caller_statements([{"role": "user", "message": filler}]) == []


@pytest.mark.parametrize(
    "statement",
    ["I have six children.", "I'm 84.", "We lived in Winona.", "My husband Daniel worked at the mill."],
)
def test_short_statements_with_a_fact_are_kept(statement: str) -> None:
    assert is_informative(statement)


def test_fillers_inside_a_turn_are_dropped_and_the_rest_is_chunked_by_turn() -> None:
    story = " ".join(f"Story sentence number {n} about the farm in Winona." for n in range(8))
    transcript = [
        {"role": "user", "message": "Yes. My God. I have six children, all grown up now. OK?"},
        {"role": "agent", "message": "Six children! Tell me about them."},
        {"role": "user", "message": story},
    ]
    statements = caller_statements(transcript)
    assert statements[0] == Statement("I have six children, all grown up now.", 0)
    rest = statements[1:]
    assert {s.turn for s in rest} == {2} and len(rest) >= 2
    assert all(len(s.text) <= CHUNK_CHARS for s in rest)
    assert " ".join(s.text for s in rest) == story  # nothing lost, in the order spoken


def test_near_duplicates_are_merged_keeping_the_fuller_wording_once() -> None:
    transcript = [
        {"role": "user", "message": "My daughter Clara lives in Porto."},
        {"role": "agent", "message": "Porto, lovely."},
        {"role": "user", "message": "Yes, my daughter Clara lives in Porto now, with her two boys."},
        {"role": "user", "message": "My daughter Clara lives in Porto!"},
        {"role": "user", "message": "My son Luis lives in Lyon."},
    ]
    assert caller_statements(transcript) == [
        Statement("Yes, my daughter Clara lives in Porto now, with her two boys.", 2),
        Statement("My son Luis lives in Lyon.", 4),
    ]
    assert near_duplicates("I grew up in Winona", "I grew up in Winona, Minnesota, on a farm")
    assert not near_duplicates("I grew up in Winona", "My sister grew up in Duluth")


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


def test_with_inference_the_facts_stay_and_the_whole_transcript_is_handed_over_for_extraction() -> None:
    from services.core.config import Settings
    from services.memory.wiring import memory_infer

    envelope = call_envelope(turns=[("agent", "Where did you grow up?"), ("user", "Yes."), ("user", "In Winona.")])
    memories = build_conversation_memories(envelope["data"], infer=True)
    facts = [m for m in memories.items if not m.infer]
    assert [m.metadata["source"] for m in facts] == ["summary", *["data_collection"] * 3, "evaluation"]
    assert [(m.role, m.text, m.type, m.metadata["source"]) for m in memories.items if m.infer] == [
        ("assistant", "Where did you grow up?", "semantic", "inferred"),
        ("user", "Yes.", "semantic", "inferred"),  # the LLM decides what is worth keeping, with context
        ("user", "In Winona.", "semantic", "inferred"),
    ]
    assert memory_infer(Settings(memory_backend="platform", memory_infer=True)) is True
    assert memory_infer(Settings(memory_backend="platform")) is False
    with pytest.raises(RuntimeError, match="CALLVAULT_MEMORY_LLM_BASE_URL"):
        memory_infer(Settings(memory_backend="oss", memory_infer=True))
    oss = Settings(memory_backend="oss", memory_infer=True, memory_llm_base_url="http://127.0.0.1:11434/v1")
    assert memory_infer(oss) is True

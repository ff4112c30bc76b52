"""A real-shaped long call, generated deterministically from the shipped fixture.

    from benchmarks.long_call import LongCall
    call = LongCall.build(seed=1)                         # ~115 turns, ~180 KB, one caller's life story
    body = call.render("conv_...", "+16125550142", started_at=..., event_at=...)

    .venv/bin/python benchmarks/long_call.py --seed 1 > call.json   # one envelope, to look at or curl

The shape is the fixture's (tests/fixtures/elevenlabs/post_call_transcription.json: a life-story
interview agent talking to "Maria"), grown to an 18-minute call: turns alternate agent/user, the
caller tells long stories (user turns of 2-9 sentences), the agent reflects and asks (1-3
sentences), ``time_in_call_secs`` increases, every agent turn carries its LLM usage and latency
metrics, some carry a tool call and its result, and ``analysis`` has its evaluation criteria,
data-collection results and a summary. Same seed, same bytes (Python's ``random.Random``).

``LongCall.render`` swaps the conversation id, caller number and times into a prebuilt template by
byte replacement (~0.1 ms for 180 KB), so a load generator can send a new call per request without
re-encoding JSON. Benchmarks and tests may reuse it; it imports nothing from ``services``.
"""

import argparse
import copy
import json
import random
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "elevenlabs" / "post_call_transcription.json"
AGENT_ID = "agent_01jxbrc1trfxev5sdp5xk4ra67"
DEFAULT_TURNS = 115
DEFAULT_BYTES = 180_000

# Placeholders in the template; each appears a known number of times and nowhere by accident.
_CID = "conv_PLACEHOLDERxCONVERSATIONxID"  # 31 chars, like conv_01jzfrjvcce0vsea1fcbpp9p04
_PHONE = "+19999999999"
_START = 1999999901  # start_time_unix_secs / accepted_time_unix_secs / session_date value
_EVENT = 1999999902  # event_timestamp
_TIME_UTC = "TIMEUTCxPLACEHOLDERxxxxxxxxxxxxx"

_PLACES = ["Porto", "Lyon", "Duluth", "Guadalajara", "Cork", "Tucson", "Bergen", "Savannah", "Krakow", "Halifax"]
_PEOPLE = [
    "my brother Tomas",
    "my aunt Rosa",
    "my husband Daniel",
    "my friend Ines",
    "my daughter Clara",
    "my father",
    "my grandmother Lucia",
    "our neighbour Mr. Abernathy",
    "my cousin Pedro",
    "my son Luis",
]
_YEARS = [str(y) for y in range(1958, 2016, 3)]
_JOBS = [
    "the bakery on Fifth Street",
    "the county hospital",
    "a shipping office by the harbour",
    "the elementary school",
    "a print shop",
    "the textile mill",
    "the public library",
    "a flower nursery",
]

_USER_SENTENCES = [
    "I was born in {place} in {year}, the youngest of five, and the house was always full of noise.",
    "{person} used to wake us up before dawn to go fishing, and I hated it then but I miss it now.",
    "When I was nineteen I took a job at {job}, mostly because it was the only place hiring that spring.",
    "The first winter after we moved was the hardest, we had no proper coats and the heating kept breaking.",
    "I remember the smell of fresh bread every morning, it came through the window before anyone was up.",
    "{person} taught me how to drive in an old pickup truck that only had two working gears.",
    "We got married in {year} in a tiny chapel, and it rained so hard the photographer's car got stuck.",
    "Honestly I don't think I realised how much my mother gave up for us until I had children of my own.",
    "There was a flood in {year} that took the whole ground floor, and we lived upstairs for almost a year.",
    "I kept every letter {person} sent me while he was away, they are still in a shoebox in the closet.",
    "At {job} I met the people who became my closest friends, we still write to each other at Christmas.",
    "My hands are not what they used to be, so I can't do the embroidery any more, which makes me sad.",
    "We drove across the country in {year} with two kids in the back seat and no air conditioning at all.",
    "The doctor said I should walk every day, so now I go around the park twice with my neighbour.",
    "I was scared of the water until I was thirty, and then {person} finally taught me to swim.",
    "The day my first grandchild was born I cried in the hospital car park for a good ten minutes.",
    "I always wanted to go back to {place} but somehow there was never the money or the time.",
    "We had a little garden with tomatoes and beans, and every summer there were far too many zucchini.",
    "Sometimes I forget names now, which frightens me a bit, so I write things down in a notebook.",
    "When the mill closed in {year} half the town was out of work, and we had to start over again.",
    "I sang in the church choir for twenty-two years, alto, and I still know most of the hymns by heart.",
    "{person} and I didn't speak for almost ten years after an argument that seems so silly now.",
    "My favourite thing was Sunday dinner, everyone around the table, the radio on, arguing about football.",
    "I went back to school at forty-five to finish my degree, and I was older than some of the teachers.",
    "The house on Maple Avenue had a crooked staircase that creaked on every single step at night.",
    "We lost our dog Biscuit the same year my father passed, and that was a very quiet house for a while.",
    "I think the proudest moment of my life was watching my son graduate, the first one in our family.",
    "It's funny, I can remember the song that was playing at my wedding but not what I had for breakfast.",
    "After the divorce I rented a small flat above {job}, and it was the first place that was only mine.",
    "My grandmother told stories about the old country every night, and I wish I had written them down.",
    "The neighbours helped us rebuild the fence after the storm, nobody asked, they just turned up.",
    "I worked nights for eleven years, so I missed a lot of school plays, which I still feel bad about.",
    "We used to have the whole family over for the holidays, sometimes thirty people in a small house.",
    "When I retired they gave me a clock, which I thought was a strange gift for someone with free time.",
    "I'm sorry, I'm rambling a bit, it's just that nobody really asks about these things any more.",
    "Yes, that's right, and I think that was the year everything started to change for us.",
    "Can we come back to that another time? It's still a bit hard for me to talk about.",
    "Oh, and I should say, {person} is coming to visit next month, so I'm very excited about that.",
]
_AGENT_REFLECT = [
    "That sounds like a house full of life, Maria.",
    "Thank you for sharing that with me, it clearly meant a great deal to you.",
    "I can hear how much you still care about {person}.",
    "That must have been a very difficult time for your family.",
    "What a wonderful memory to hold on to.",
    "It sounds like you were very brave to start over like that.",
    "I've added that to your story so far, so we won't lose it.",
    "Please don't apologise, this is exactly what these sessions are for.",
    "We can absolutely come back to that whenever you feel ready.",
    "That's a lovely detail, the kind that brings a story to life.",
]
_AGENT_ASK = [
    "What do you remember most about {place} from those years?",
    "How did {person} react when you told them?",
    "What was a typical day like for you at {job}?",
    "Would you like to tell me more about that, or shall we move to another chapter?",
    "Who was with you when that happened?",
    "How do you think that experience changed you?",
    "Is there a photograph or an object that reminds you of that time?",
    "What would you want your grandchildren to know about that part of your life?",
    "Shall we write that down as its own chapter in your story?",
    "How did you feel when you finally got there?",
]
_TOOLS = [
    ("save_story_chapter", {"title": "Early years in {place}", "year": "{year}"}, {"saved": True, "chapter": 4}),
    ("lookup_previous_sessions", {"caller": "Maria", "limit": 3}, {"sessions": 3, "last_topic": "the flood"}),
    ("schedule_followup", {"days_from_now": 7}, {"scheduled": True, "slot": "Tuesday 10:00"}),
]


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        place=rng.choice(_PLACES), person=rng.choice(_PEOPLE), year=rng.choice(_YEARS), job=rng.choice(_JOBS)
    )


def _fill_obj(value: Any, rng: random.Random) -> Any:
    if isinstance(value, str):
        return _fill(value, rng)
    if isinstance(value, dict):
        return {k: _fill_obj(v, rng) for k, v in value.items()}
    return value


def _metric(rng: random.Random, low: float, high: float) -> dict[str, float]:
    return {"elapsed_time": round(rng.uniform(low, high), 6)}


def _agent_turn(rng: random.Random, index: int, at: int, text: str) -> dict[str, Any]:
    turn: dict[str, Any] = {
        "role": "agent",
        "agent_metadata": {"agent_id": AGENT_ID, "workflow_node_id": None, "branch_id": None},
        "message": text,
        "multivoice_message": None,
        "tool_calls": [],
        "tool_results": [],
        "feedback": None,
        "llm_override": None,
        "time_in_call_secs": at,
        "conversation_turn_metrics": {
            "metrics": {
                "convai_llm_service_ttfb": _metric(rng, 0.2, 0.9),
                "convai_llm_service_ttf_sentence": _metric(rng, 0.4, 1.4),
                "convai_tts_service_ttfb": _metric(rng, 0.1, 0.4),
            }
        },
        "rag_retrieval_info": None,  # set by LongCall.build (sized to reach the target bytes)
        "llm_usage": {
            "model_usage": {
                "gemini-2.0-flash": {
                    "input": {
                        "tokens": 1800 + 95 * index + rng.randint(0, 400),
                        "price": round(rng.uniform(1e-4, 9e-4), 8),
                    },
                    "input_cache_read": {"tokens": rng.choice([0, 0, 1024, 2048]), "price": 0.0},
                    "input_cache_write": {"tokens": 0, "price": 0.0},
                    "output_total": {"tokens": rng.randint(20, 140), "price": round(rng.uniform(1e-5, 9e-5), 8)},
                }
            }
        },
        "interrupted": rng.random() < 0.08,
        "original_message": text,
        "source_medium": "audio",
    }
    if index > 2 and rng.random() < 0.12:  # a tool call now and then, with its result
        name, params, result = rng.choice(_TOOLS)
        request_id = f"toolu_{rng.getrandbits(96):024x}"
        turn["tool_calls"] = [
            {
                "type": "webhook",
                "request_id": request_id,
                "tool_name": name,
                "params_as_json": json.dumps(_fill_obj(params, rng)),
                "tool_has_been_called": True,
                "tool_details": {
                    "type": "webhook",
                    "method": "POST",
                    "url": f"https://stories.example.com/api/{name}",
                    "headers": {},
                    "path_params": {},
                    "query_params": {},
                    "body": "",
                },
            }
        ]
        turn["tool_results"] = [
            {
                "request_id": request_id,
                "tool_name": name,
                "result_value": json.dumps(result),
                "is_error": False,
                "tool_has_been_called": True,
                "tool_latency_secs": round(rng.uniform(0.08, 0.9), 6),
                "dynamic_variable_updates": [],
                "type": "webhook",
            }
        ]
    return turn


def _rag_chunk(rng: random.Random) -> dict[str, Any]:
    return {
        "document_id": f"doc_session_{rng.randint(1, 40):03d}",
        "chunk_id": f"chunk_{rng.getrandbits(64):016x}",
        "vector_distance": round(rng.uniform(0.18, 0.62), 6),
    }


def _rag(rng: random.Random, query: str) -> dict[str, Any]:
    return {
        "chunks": [_rag_chunk(rng) for _ in range(rng.randint(2, 4))],
        "embedding_model": "e5_mistral_7b_instruct",
        "retrieval_query": query,
        "rag_latency_secs": round(rng.uniform(0.05, 0.35), 6),
    }


def _user_turn(rng: random.Random, at: int, text: str) -> dict[str, Any]:
    return {
        "role": "user",
        "agent_metadata": None,
        "message": text,
        "multivoice_message": None,
        "tool_calls": [],
        "tool_results": [],
        "feedback": None,
        "llm_override": None,
        "time_in_call_secs": at,
        "conversation_turn_metrics": {"metrics": {"convai_asr_trailing_service_latency": _metric(rng, 0.05, 0.3)}},
        "rag_retrieval_info": None,
        "llm_usage": None,
        "interrupted": False,
        "original_message": None,
        "source_medium": "audio",
    }


def _analysis(rng: random.Random, template: dict[str, Any], duration: int) -> dict[str, Any]:
    analysis = copy.deepcopy(template)
    criteria = analysis["evaluation_criteria_results"]
    criteria["session_closure"].update(
        result="success",
        rationale="The agent summarised the chapters recorded today, thanked Maria for her time and agreed on "
        "a follow-up session before ending the call on a warm note.",
    )
    criteria["memory_utilized"].update(
        result="success",
        rationale="The agent referred back to the flood and the letters from a previous session and looked up "
        "earlier sessions before asking about the move, which shows that memory was used.",
    )
    criteria["positive_interaction"].update(
        result="success",
        rationale="Maria spoke at length, laughed several times and said she looked forward to the next call; "
        "she asked to pause one difficult topic and the agent respected that.",
    )
    collected = analysis["data_collection_results"]
    collected["key_life_event"].update(
        value=_fill("Moving to {place} in {year} and rebuilding after the mill closed", rng),
        rationale="The user described the move, the closure of the mill and starting over as the turning point of "
        "her life, returning to it several times during the session.",
    )
    collected["consent_given"].update(
        value="true",
        rationale="Early in the call the user said she was happy for her story to be recorded and shared with her "
        "family.",
    )
    collected["comfort_level"].update(
        value="Comfortable; asked to pause one topic",
        rationale="The user was relaxed and talkative throughout, and asked to come back later to one painful memory.",
    )
    analysis["call_successful"] = "success"
    analysis["call_summary_title"] = "Maria's life story: moving, work and family"
    analysis["transcript_summary"] = (
        "Maria continued her life-story interview. She talked about growing up as the youngest of five, her first "
        "job, her marriage, the flood that took the ground floor of the family house, the mill closing and "
        "starting over, and her children and grandchildren. The agent recorded several chapters, looked up "
        f"earlier sessions and scheduled a follow-up. The call lasted about {duration // 60} minutes and ended "
        "warmly.\n"
    )
    return analysis


@dataclass(frozen=True)
class LongCall:
    """One generated call as a template: ``render`` fills in the id, number and times."""

    template: bytes
    turns: int
    duration_secs: int

    @classmethod
    def build(cls, seed: int = 0, turns: int = DEFAULT_TURNS, target_bytes: int = DEFAULT_BYTES) -> "LongCall":
        if turns < 2:
            raise ValueError("a long call has at least 2 turns")
        rng = random.Random(seed)
        document = json.loads(FIXTURE.read_bytes())
        document["event_timestamp"] = _EVENT
        data = document["data"]
        data["conversation_id"] = _CID
        at = 0
        transcript: list[dict[str, Any]] = []
        last_user = "Maria's life story"
        for index in range(turns):
            if index % 2 == 0:  # the agent speaks first, as in the fixture
                if index == 0:
                    text = (
                        "Hello, Maria. Whenever you're ready, we can pick up where we left off or dive into a new "
                        "story together. Last time you were telling me about the house on Maple Avenue."
                    )
                elif index == turns - 1:
                    text = "Thank you so much, Maria. I've saved everything from today. Talk to you next week."
                else:
                    parts = [_fill(rng.choice(_AGENT_REFLECT), rng) for _ in range(rng.choice([0, 1, 1, 2]))]
                    parts.append(_fill(rng.choice(_AGENT_ASK), rng))
                    text = " ".join(parts)
                turn = _agent_turn(rng, index, at, text)
                if index > 0:  # the agent's knowledge base: notes from earlier sessions
                    turn["rag_retrieval_info"] = _rag(rng, last_user[:160])
                transcript.append(turn)
                at += 1 + len(text.split()) * 10 // 28  # ~2.8 words a second, and a pause
            else:  # Maria tells a story: 1-7 sentences, ~2.5 words a second
                text = " ".join(_fill(s, rng) for s in rng.sample(_USER_SENTENCES, rng.choice([1, 2, 3, 3, 4, 5, 7])))
                transcript.append(_user_turn(rng, at, text))
                last_user = text
                at += 1 + len(text.split()) * 2 // 5
        data["transcript"] = transcript
        # Reach the target size with more (or fewer) knowledge-base chunks per agent turn: the turns
        # and what is said stay as generated. Sizes are tracked, not re-encoded.
        encoded = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
        size = len(encoded)
        rag = [turn["rag_retrieval_info"] for turn in transcript if turn["rag_retrieval_info"]]
        step = 0
        while rag and size < target_bytes and step < 200 * len(rag):
            chunk = _rag_chunk(rng)
            rag[step % len(rag)]["chunks"].append(chunk)
            size += len(json.dumps(chunk, separators=(",", ":")).encode()) + 1
            step += 1
        while rag and size > target_bytes * 1.01 and any(len(r["chunks"]) > 1 for r in rag):
            fullest = max(rag, key=lambda r: len(r["chunks"]))
            size -= len(json.dumps(fullest["chunks"].pop(), separators=(",", ":")).encode()) + 1
        duration = at + rng.randint(2, 6)
        metadata = data["metadata"]
        metadata.update(
            start_time_unix_secs=_START,
            accepted_time_unix_secs=_START,
            call_duration_secs=duration,
            cost=duration * 10,
            termination_reason="Call ended by assistant",
        )
        metadata["charging"]["call_charge"] = duration * 10
        metadata["phone_call"]["external_number"] = _PHONE
        data["analysis"] = _analysis(rng, data["analysis"], duration)
        data["analysis"]["data_collection_results"]["session_date"]["value"] = str(_START)
        variables = data["conversation_initiation_client_data"]["dynamic_variables"]
        variables.update(
            system__conversation_id=_CID,
            system__caller_id=_PHONE,
            system__call_duration_secs=duration,
            system__time_utc=_TIME_UTC,
        )
        template = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
        for needle, count in ((_CID, 2), (_PHONE, 2), (str(_START), 3), (str(_EVENT), 1), (_TIME_UTC, 1)):
            found = template.count(needle.encode())
            assert found == count, f"placeholder {needle} appears {found} times, expected {count}"
        return cls(template, turns, duration)

    def render(self, conversation_id: str, phone: str, *, started_at: int, event_at: int | None = None) -> bytes:
        """The envelope for one call: ``phone`` in E.164, times in unix seconds (``event_at``: end of call)."""
        ended = started_at + self.duration_secs if event_at is None else event_at
        time_utc = datetime.fromtimestamp(started_at + self.duration_secs, tz=UTC).isoformat()
        return (
            self.template.replace(_CID.encode(), conversation_id.encode())
            .replace(_PHONE.encode(), phone.encode())
            .replace(str(_START).encode(), str(started_at).encode())
            .replace(str(_EVENT).encode(), str(ended).encode())
            .replace(_TIME_UTC.encode(), time_utc.encode())
        )


def caller_phone(n: int) -> str:
    """The n-th caller of a pool (E.164, valid for phonenumbers): +1612555xxxx."""
    return f"+1612555{n % 10000:04d}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print one generated long call (a webhook envelope).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--turns", type=int, default=DEFAULT_TURNS, help="2-1000")
    parser.add_argument("--bytes", type=int, default=DEFAULT_BYTES, help="target envelope size, 1k-5M")
    parser.add_argument("--conversation-id", default="conv_01longcallexample000000000")
    parser.add_argument("--phone", default="+16125550142")
    parser.add_argument("--started-at", type=int, default=1751802015)
    args = parser.parse_args(argv)
    if not 2 <= args.turns <= 1000 or not 1000 <= args.bytes <= 5_000_000:
        parser.error("--turns must be 2-1000 and --bytes 1000-5000000")
    call = LongCall.build(args.seed, args.turns, args.bytes)
    sys.stdout.buffer.write(call.render(args.conversation_id, args.phone, started_at=args.started_at) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

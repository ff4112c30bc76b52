"""Two long calls written for the memory recall benchmark, in the real payload shape, with their questions.

Each call is a caller talking about their life to a companion agent: facts spread over ~25 of the
caller's turns, fillers and fragments between them ("Yes.", "OK?", "I...", "My God."), a few facts said
twice, and an agent that repeats what it heard (as real agents do). Every question names the words
(``needle``) that a memory must contain to answer it: a sentence the caller said, or a collected value.

The envelope is the shipped fixture's, with turns in ``benchmarks/long_call.py``'s shape (agent turns
with LLM usage and metrics, user turns with ASR latency). Deterministic: no randomness but a seeded one.
"""

import copy
import json
import random
from dataclasses import dataclass
from typing import Any

from long_call import FIXTURE, _agent_turn, _user_turn

FILLERS = [
    "Yes.",
    "OK?",
    "I...",
    "My God.",
    "Mm-hmm.",
    "Oh, I don't know.",
    "Right, right.",
    "Well...",
    "Hmm.",
    "Sure.",
    "Yeah, yeah.",
    "Oh my.",
    "No, no.",
    "Sorry?",
    "What was I saying?",
    "That's right.",
    "Okay.",
    "Uh-huh.",
    "Oh, yes, yes.",
    "I suppose so.",
]
AGENT_NUDGES = [
    "Take your time.",
    "Go on, I'm listening.",
    "Is that right?",
    "Mm, tell me more.",
    "And how was that?",
    "I see.",
    "Would you like to continue?",
    "Can you hear me all right?",
]


@dataclass(frozen=True)
class Question:
    text: str
    needle: str  # a memory answering it contains these words (case-insensitive)


@dataclass(frozen=True)
class ScriptedCall:
    name: str
    conversation_id: str
    phone: str
    started_at: int
    caller: str
    pairs: list[tuple[str, str]]  # (agent asks, caller answers with a fact)
    collected: dict[str, str]
    summary: str
    questions: list[Question]

    def envelope(self) -> dict[str, Any]:
        """The call as ElevenLabs posts it: fact pairs with one or two filler exchanges after each."""
        rng = random.Random(self.conversation_id)
        document = json.loads(FIXTURE.read_bytes())
        data = document["data"]
        data["conversation_id"] = self.conversation_id
        data["metadata"]["start_time_unix_secs"] = self.started_at
        data["metadata"]["phone_call"]["external_number"] = self.phone
        data["conversation_initiation_client_data"]["dynamic_variables"]["system__caller_id"] = self.phone
        turns: list[dict[str, Any]] = []
        at = 0

        def say(role: str, text: str) -> None:
            nonlocal at
            turn = _agent_turn(rng, len(turns), at, text) if role == "agent" else _user_turn(rng, at, text)
            turns.append(turn)
            at += 2 + len(text.split()) // 2

        say("agent", f"Hello, {self.caller}. It's lovely to hear from you again. How are you today?")
        for n, (ask, answer) in enumerate(self.pairs):
            say("agent", ask)
            say("user", answer)
            for _ in range(1 + n % 2):
                say("agent", rng.choice(AGENT_NUDGES))
                say("user", rng.choice(FILLERS))
        say("agent", f"Thank you, {self.caller}. I've kept all of that. Talk to you next week.")
        say("user", "Bye now.")
        data["transcript"] = turns
        data["metadata"]["call_duration_secs"] = at
        analysis = data["analysis"]
        analysis["transcript_summary"] = self.summary
        analysis["call_summary_title"] = f"{self.caller}'s life story"
        collected = analysis["data_collection_results"]
        collected["user_name"]["value"] = self.caller
        for key, value in self.collected.items():
            entry = copy.deepcopy(collected["user_name"])
            entry.update(data_collection_id=key, value=value)
            collected[key] = entry
        document["event_timestamp"] = self.started_at + at
        envelope: dict[str, Any] = document
        return envelope


MARIA = ScriptedCall(
    name="long call A (Maria, 51 caller turns)",
    conversation_id="conv_recall_maria_0000000000001",
    phone="+16125550142",
    started_at=1752000000,
    caller="Maria",
    pairs=[
        ("Where did you grow up, Maria?", "I grew up in Winona, Minnesota, on a dairy farm by the river."),
        ("Did you have a big family?", "Oh, we were poor but happy. I have six children of my own now, imagine that."),
        (
            "Six children! What did your husband do?",
            "Daniel was a railroad engineer, he drove freight trains on the Milwaukee Road for forty years.",
        ),
        ("How did you two meet?", "We met at a dance in La Crosse in 1963, he stepped on my feet all night."),
        ("And what was your own work?", "I was a nurse at the county hospital for thirty years, mostly night shifts."),
        ("When did you stop working?", "I retired in 2004, the year my knees started to complain."),
        (
            "Where are your children now?",
            "My daughter Clara lives in Porto with her husband, she moved there for his job.",
        ),
        ("That's far away. And the others?", "My son Luis teaches music at a high school in Duluth."),
        ("Do you have company at home?", "I have a grey cat called Pepper who sleeps on my feet every night."),
        ("Where do you live these days?", "I live alone in a small apartment in St. Paul, on the third floor."),
        (
            "How is your health, Maria?",
            "I have diabetes, so I take insulin twice a day and check my sugar every morning.",
        ),
        ("Anything coming up with the doctors?", "They are replacing my left hip in March, I'm a bit scared of it."),
        ("What do you love to eat?", "My favourite food is the pierogi my mother made, with potato and cheese."),
        (
            "What do you do to relax?",
            "I grow roses on my balcony, twelve pots of them, and I talk to them when nobody listens.",
        ),
        ("Do you have brothers or sisters?", "My brother Tomas lives in Chicago, we call each other on Sundays."),
        ("What was your first car?", "My first car was a 1962 Ford Falcon, pale blue, and it never started in winter."),
        (
            "Tell me about your grandchildren.",
            "My granddaughter Ana studies medicine in Minneapolis, she wants to be a surgeon.",
        ),
        (
            "Is there somewhere you'd love to go?",
            "I want to visit Krakow one day, that's where my grandparents came from.",
        ),
        ("What do you like to read?", "I read mystery novels, Agatha Christie mostly, I've read them all twice."),
        ("Do you get out much?", "I volunteer at the public library every Tuesday, sorting the returned books."),
        ("Do you travel by plane?", "No, I'm terrified of flying, I've never been on a plane in my life."),
        ("What about music?", "I sang alto in the church choir at St. Stanislaus for twenty-two years."),
        ("Did you have pets as a child?", "We had a farm dog named Rex who followed my father everywhere."),
        (
            "You mentioned your children earlier.",
            "Did I tell you I have six children? Six! All grown up now, of course.",
        ),
        ("And the farm in Winona?", "I grew up in Winona on that dairy farm, we milked the cows before school."),
    ],
    collected={
        "key_life_event": "Moving from the farm in Winona to St. Paul after Daniel died in 2015",
        "comfort_level": "Comfortable and talkative",
    },
    summary=(
        "Maria talked about growing up on a dairy farm in Winona, her six children, her late husband Daniel, "
        "her thirty years as a nurse, her health and her hobbies. The agent recorded the details and "
        "scheduled a follow-up."
    ),
    questions=[
        Question("Where did she grow up?", "grew up in Winona"),
        Question("Does she have children?", "six children"),
        Question("What did her husband do for a living?", "railroad engineer"),
        Question("How did she meet her husband?", "dance in La Crosse"),
        Question("What was her job?", "nurse"),
        Question("When did she retire?", "retired in 2004"),
        Question("Where does her daughter live?", "Porto"),
        Question("What does her son do?", "teaches music"),
        Question("Does she have any pets?", "Pepper"),
        Question("Where does she live now?", "St. Paul, on the third floor"),
        Question("Does she have any health problems?", "insulin"),
        Question("Is she having surgery?", "hip"),
        Question("What is her favourite food?", "pierogi"),
        Question("What are her hobbies?", "roses"),
        Question("Does she have siblings?", "brother Tomas"),
        Question("What was her first car?", "Ford Falcon"),
        Question("What does her granddaughter study?", "studies medicine"),
        Question("Where would she like to travel?", "Krakow"),
        Question("What books does she like?", "Agatha Christie"),
        Question("Does she do any volunteering?", "library"),
        Question("Is she afraid of flying?", "flying"),
        Question("Did she sing in a choir?", "choir"),
        Question("What is her name?", "user name: Maria"),
        Question("What was the turning point of her life?", "key life event"),
    ],
)

WALTER = ScriptedCall(
    name="long call B (Walter, 51 caller turns)",
    conversation_id="conv_recall_walter_000000000001",
    phone="+16125550177",
    started_at=1752100000,
    caller="Walter",
    pairs=[
        ("Where are you from originally, Walter?", "I'm from Toledo, Ohio, born and raised on the east side."),
        (
            "And how did you end up in Arizona?",
            "We moved to Tucson in 2008 because the cold got into my joints.",
        ),
        ("What did you do for work?", "I was a car mechanic for forty-one years, I had my own garage on Front Street."),
        ("Are you married?", "My wife Helen and I have been married fifty years this June."),
        ("Do you have kids?", "We have two sons, Mark and Greg, both good boys."),
        ("What does Mark do?", "Mark is a firefighter in Phoenix, a captain now."),
        ("And Greg?", "Greg is an accountant in Denver, he does our taxes every year."),
        ("Did you serve in the military?", "I served in the Navy on a destroyer from 1966 to 1970."),
        (
            "Any projects at home?",
            "I'm restoring a 1957 Chevy Bel Air in the garage, turquoise and white.",
        ),
        ("Do you play any music?", "I play the harmonica, mostly blues, badly but loudly."),
        ("How's your health?", "I had a pacemaker put in in 2019 for my heart rhythm."),
        ("Is there anything you can't eat?", "I'm allergic to shellfish, one shrimp and my throat closes up."),
        ("Do you follow sports?", "I'm a Detroit Tigers fan since I was six, even when they're terrible."),
        ("Did you grow up with siblings?", "I grew up with four sisters, I was the only boy."),
        ("What did your father do?", "My father was a steelworker at the mill in Toledo."),
        ("Do you speak other languages?", "I speak some German, my grandmother taught me when I was small."),
        ("What do you do for fun?", "I go fishing at Patagonia Lake with my neighbour twice a month."),
        ("Any pets?", "We have a beagle named Duke who howls at the mailman."),
        ("What do you do on weekends?", "Every Saturday I have breakfast at the diner with the other veterans."),
        (
            "Tell me about your grandchildren.",
            "My grandson Tyler plays baseball for his college team, he's a pitcher.",
        ),
        ("Anything on your mind lately?", "I'm worried about my memory, I lost my keys three times last week."),
        (
            "What would you like to pass on?",
            "I want to teach Tyler how to fix an engine before I get too old.",
        ),
        ("What was your first car?", "My first car was a 1949 Hudson that I bought for forty dollars."),
        ("You mentioned Helen.", "Helen and I have been married fifty years, can you believe it? Fifty!"),
        ("And the Navy?", "The Navy was on a destroyer, 1966 to 1970, I saw half the world."),
    ],
    collected={
        "key_life_event": "Leaving Toledo for Tucson in 2008 after closing his garage",
        "comfort_level": "Relaxed",
    },
    summary=(
        "Walter talked about Toledo, his work as a mechanic, his wife Helen, his sons Mark and Greg, his "
        "Navy service and his health. The agent took notes and agreed to call again next week."
    ),
    questions=[
        Question("Where is he from?", "Toledo, Ohio"),
        Question("Why did he move to Tucson?", "cold got into my joints"),
        Question("What was his job?", "car mechanic"),
        Question("What is his wife's name?", "Helen"),
        Question("How many children does he have?", "two sons"),
        Question("What does his son Mark do?", "firefighter"),
        Question("Where does Greg live?", "Denver"),
        Question("Did he serve in the military?", "Navy"),
        Question("What car is he restoring?", "Bel Air"),
        Question("Does he play an instrument?", "harmonica"),
        Question("Does he have heart problems?", "pacemaker"),
        Question("Does he have any allergies?", "shellfish"),
        Question("What team does he support?", "Tigers"),
        Question("Does he have sisters?", "four sisters"),
        Question("What did his father do?", "steelworker"),
        Question("Does he speak another language?", "German"),
        Question("Where does he go fishing?", "Patagonia"),
        Question("Does he have a dog?", "Duke"),
        Question("What does he do on Saturdays?", "diner"),
        Question("What does his grandson play?", "baseball"),
        Question("Is he worried about anything?", "worried about my memory"),
        Question("What was his first car?", "Hudson"),
        Question("What is his name?", "user name: Walter"),
        Question("What was the turning point of his life?", "key life event"),
    ],
)

FIXTURE_QUESTIONS = [  # the shipped fixture: one agent greeting; what we know comes from its analysis
    Question("What is the caller's name?", "user name: Maria"),
    Question("How comfortable was she to continue?", "comfort level"),
    Question("What was the last call about?", "Call summary: The AI agent greeted Maria"),
]

CALLS = [MARIA, WALTER]

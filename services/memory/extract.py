"""The offline extractor: what is worth remembering in one call, without an LLM. Pure functions.

- **Statements** come from the caller's own turns only (role ``user``): the agent's lines are its
  prompt talking, and they crowded the caller's words out of search. A turn is split into
  sentences; fillers and fragments ("Yes.", "OK?", "I...", "My God.") are dropped (a sentence needs
  two content words, or one that is a number or a name); what is left is packed into chunks of up
  to ``CHUNK_CHARS`` (a short text embeds sharper than a long story); near-duplicates within the
  call (the caller repeating themself) are merged, the longer wording kept.
- **Facts** come from the analysis: the summary, each data-collection value on its own, and the
  evaluation results.

Deterministic: the same call always gives the same memories, so a re-run replaces them exactly.
"""

import re
from dataclasses import dataclass
from typing import Any

import orjson

CHUNK_CHARS = 240
FACT_MAX_CHARS = 1000  # one data-collection value or the evaluation line; a summary is ~500 chars
SUMMARY_MAX_CHARS = 4000
MAX_FACTS = 50  # data-collection values kept per call (an agent with hundreds of fields is a bug)
NEAR_DUPLICATE = 0.8  # Jaccard similarity of content words at which two statements are one

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\u2019]*")  # with the typographic apostrophe

# Function words and the small talk of a phone call: they carry no fact about the caller.
_STOP = frozenset(
    """
    a about above after again against all am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
    during each few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here
    here's hers herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself
    let's me more most mustn't my myself no nor not of off on once only or other ought our ours ourselves
    out over own same shan't she she'd she'll she's should shouldn't so some such than that that's the
    their theirs them themselves then there there's these they they'd they'll they're they've this those
    through to too under until up very was wasn't we we'd we'll we're we've were weren't what what's when
    when's where where's which while who who's whom why why's with won't would wouldn't you you'd you'll
    you're you've your yours yourself yourselves
    yes yeah yep yup nope ok okay oh ah aha uh uhm um umm hmm hm mm mhm huh eh well so like right sure
    really actually just gosh god goodness lord wow alright thanks thank please hello hi hey bye goodbye
    sorry pardon excuse anyway anyways maybe perhaps exactly indeed course true fine great good nice
    know mean guess think see say said tell told go going gonna wanna got get thing things
    something stuff kind sort bit lot lots also even still
    """.split()  # noqa: SIM905 - a word list reads better as words
)


@dataclass(frozen=True)
class Statement:
    """Something the caller said that is worth keeping, and the turn it came from."""

    text: str
    turn: int


@dataclass(frozen=True)
class Fact:
    """One fact from the call's analysis: ``source`` is summary, data_collection or evaluation."""

    text: str
    source: str
    field: str | None = None


def caller_statements(transcript: object) -> list[Statement]:
    """The caller's worthwhile sentences, near-duplicates merged, packed into chunks per turn."""
    sentences: list[Statement] = []
    for turn_no, turn in enumerate(transcript if isinstance(transcript, list) else []):
        if not isinstance(turn, dict) or turn.get("role") != "user":
            continue
        message = turn.get("message")
        if isinstance(message, str):
            text = " ".join(message.split())
            sentences.extend(Statement(s, turn_no) for s in _SENTENCE_END.split(text) if is_informative(s))
    return _pack(_merge_near_duplicates(sentences))


def is_informative(sentence: str) -> bool:
    """False for fillers and fragments: fewer than two content words, unless one is a number or a name."""
    words = _WORD.findall(sentence)
    content = [w for w in words if _fold(w) not in _STOP]
    if len(content) >= 2:
        return True
    if len(content) == 1:
        word = content[0]
        return any(ch.isdigit() for ch in word) or (word[0].isupper() and word != words[0] and len(word) > 1)
    return False


def content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in (_fold(w) for w in _WORD.findall(text)) if w not in _STOP)


def near_duplicates(a: str, b: str, threshold: float = NEAR_DUPLICATE) -> bool:
    """Same content words (Jaccard >= ``threshold``), or one's content words all within the other's."""
    return _similar(content_words(a), content_words(b), threshold)


def call_facts(analysis: dict[str, Any]) -> list[Fact]:
    """Summary, each collected value (nulls, blanks and the string ``"None"`` skipped), evaluations."""
    facts: list[Fact] = []
    summary = analysis.get("transcript_summary")
    if isinstance(summary, str) and summary.strip():
        facts.append(Fact(("Call summary: " + " ".join(summary.split()))[:SUMMARY_MAX_CHARS], "summary"))
    collected = analysis.get("data_collection_results")
    for name, entry in collected.items() if isinstance(collected, dict) else []:
        if len(facts) > MAX_FACTS:
            break
        if isinstance(entry, dict) and present(entry.get("value")):
            label = " ".join(str(name).replace("_", " ").split())
            facts.append(Fact(f"{label}: {scalar(entry['value'])}"[:FACT_MAX_CHARS], "data_collection", str(name)))
    evaluations = analysis.get("evaluation_criteria_results")
    results = [
        f"{name}: {scalar(entry.get('result'))}"
        for name, entry in (evaluations.items() if isinstance(evaluations, dict) else [])
        if isinstance(entry, dict) and present(entry.get("result"))
    ]
    if results:
        facts.append(Fact(("Evaluation results: " + "; ".join(results))[:FACT_MAX_CHARS], "evaluation"))
    return facts


def present(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        text = value.strip()
        return bool(text) and text != "None"
    return True


def scalar(value: object) -> str:
    if isinstance(value, str):
        return " ".join(value.split())
    return orjson.dumps(value).decode()


def _fold(word: str) -> str:
    return word.lower().replace("\u2019", "'")


def _pack(sentences: list[Statement]) -> list[Statement]:
    """Consecutive sentences of one turn joined up to ``CHUNK_CHARS``; a longer sentence (speech to
    text often writes a whole turn without a stop) cut at words into pieces of at most that."""
    chunks: list[Statement] = []
    for sentence in (piece for whole in sentences for piece in _split_long(whole)):
        last = chunks[-1] if chunks else None
        if last and last.turn == sentence.turn and len(last.text) + 1 + len(sentence.text) <= CHUNK_CHARS:
            chunks[-1] = Statement(f"{last.text} {sentence.text}", last.turn)
        else:
            chunks.append(sentence)
    return chunks


def _split_long(sentence: Statement) -> list[Statement]:
    if len(sentence.text) <= CHUNK_CHARS:
        return [sentence]
    pieces: list[str] = []
    current = ""
    for word in sentence.text.split():
        while len(word) > CHUNK_CHARS:  # one "word" longer than a chunk: cut it
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:CHUNK_CHARS])
            word = word[CHUNK_CHARS:]
        if current and len(current) + 1 + len(word) > CHUNK_CHARS:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        pieces.append(current)
    return [Statement(piece, sentence.turn) for piece in pieces]


def _merge_near_duplicates(sentences: list[Statement]) -> list[Statement]:
    """The caller said it twice: keep it once, where first said, in the fuller wording."""
    kept: list[tuple[Statement, frozenset[str]]] = []
    for sentence in sentences:
        words = content_words(sentence.text)
        for i, (earlier, earlier_words) in enumerate(kept):
            if _similar(words, earlier_words):
                if len(sentence.text) > len(earlier.text):
                    kept[i] = (sentence, words)
                break
        else:
            kept.append((sentence, words))
    return [sentence for sentence, _ in kept]


def _similar(wa: frozenset[str], wb: frozenset[str], threshold: float = NEAR_DUPLICATE) -> bool:
    if not wa or not wb:
        return wa == wb
    shared = len(wa & wb)
    return shared / len(wa | wb) >= threshold or (shared == min(len(wa), len(wb)) and shared >= 2)

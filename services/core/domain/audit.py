"""The audit trail's entries and their hash chain (pure: no storage).

Each entry's ``hash`` is SHA-256 over the previous entry's hash and the entry's own fields, so
changing, removing or reordering any entry breaks every hash after it (``check_chain``). Entries name
conversations only by their keyed hash (``core.erased``), the one tombstones use, so erasing a call
never has to rewrite the chain; ``detail`` holds counts, roles, key ids and masked phone numbers, never
transcript text or a whole number.
"""

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

GENESIS = "0" * 64  # the "previous hash" of the first entry

# What is recorded. Accesses: a transcript or audio link issued, a console page showing a call.
ACTIONS = frozenset(
    {
        "erase",
        "memory_erase",
        "hold",
        "release",
        "retention_run",
        "key_create",
        "key_revoke",
        "link_issued",
        "audio_link_issued",
        "file_download",
        "console_view",
        "console_audio",
        "console_transcript",
        "console_caller_view",
        "transcript_search",
        "memory_read",
    }
)
Detail = Mapping[str, str | int | bool | None]


@dataclass(frozen=True)
class AuditEntry:
    seq: int  # 1, 2, 3, ... without gaps
    at: int  # unix seconds
    action: str
    actor: str  # an API key's id (never the key), "cli:<user>", or the component
    subjects: tuple[str, ...] = ()  # conversations, by keyed hash
    detail: Mapping[str, Any] = field(default_factory=dict)
    prev: str = GENESIS
    hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "action": self.action,
            "actor": self.actor,
            "subjects": list(self.subjects),
            "detail": dict(self.detail),
            "prev": self.prev,
            "hash": self.hash,
        }


def entry_hash(prev: str, seq: int, at: int, action: str, actor: str, subjects: Iterable[str], detail: Detail) -> str:
    body = orjson.dumps([prev, seq, at, action, actor, list(subjects), dict(detail)], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()


def chained(
    last: AuditEntry | None, at: int, action: str, actor: str, subjects: Iterable[str], detail: Detail
) -> AuditEntry:
    """The entry that follows ``last`` (None: the first)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    seq, prev = (last.seq + 1, last.hash) if last is not None else (1, GENESIS)
    subjects = tuple(subjects)
    digest = entry_hash(prev, seq, at, action, actor, subjects, detail)
    return AuditEntry(seq, at, action, actor, subjects, dict(detail), prev, digest)


@dataclass(frozen=True)
class ChainCheck:
    entries: int
    head: str  # the last entry's hash: keep it elsewhere to detect a truncated tail later
    problem: str | None = None  # None: the chain verifies
    seq: int | None = None  # where it first breaks

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_chain(entries: Iterable[AuditEntry]) -> ChainCheck:
    """Every entry in order, from the first: each links to the one before and hashes to its ``hash``."""
    count, prev, expected_seq = 0, GENESIS, 1
    for entry in entries:
        if entry.seq != expected_seq:
            return ChainCheck(count, prev, f"entry {expected_seq} is missing", expected_seq)
        if entry.prev != prev:
            return ChainCheck(count, prev, f"entry {entry.seq} does not follow the one before", entry.seq)
        digest = entry_hash(entry.prev, entry.seq, entry.at, entry.action, entry.actor, entry.subjects, entry.detail)
        if digest != entry.hash:
            return ChainCheck(count, prev, f"entry {entry.seq} was changed", entry.seq)
        count, prev, expected_seq = count + 1, entry.hash, expected_seq + 1
    return ChainCheck(count, prev)

"""Retention rules (#13): how long to keep calls and caller memories, globally and per agent.

One settings file, ``<data-dir>/retention.toml`` (or ``CALLVAULT_RETENTION_FILE``)::

    [default]
    transcripts_days = 365   # then the whole call goes: transcript, audio, row, analytics rows, memories
    audio_days = 30          # then the call's audio goes (the row says so; no audio is fetched again)
    memories_days = 90       # then the call's memories go (the call stays)
    analytics_days = 180     # then the call's analytics rows go (the call stays; the row says so)

    [agents."agent_7201k..."]
    transcripts_days = 30    # this agent's calls; unset keys fall back to [default]

A key left out keeps that data for ever. A run lists the calls started before the earliest cutoff
(one index range read, newest first), applies each call's agent rule, skips calls under a legal hold
(they are looked at again by every run, so a released hold is honoured the next day), and erases
through the same ``Eraser`` as ``callvault forget`` (tombstones: an expired call is not synced back).
Memories that went are marked on the row (``memory_status = "expired"``) so later runs skip them;
analytics rows that went too (``analytics_expired_at``), which also tells verify, backfill and later
events of the call not to write them again.
"""

import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from services.core.domain import keys
from services.core.domain.models import MAX_PAGE_SIZE, MEMORY_EXPIRED, CallQuery, CallRecord
from services.core.domain.versions import AUDIO_EXPIRED
from services.core.ports import BlobStore, CallerData, CallIndex

from .audit import Auditor
from .holds import HoldBook
from .service import Eraser, Progress

DAY = 86_400
KINDS = ("transcripts_days", "audio_days", "memories_days", "analytics_days")
# About 274 years: keeps every cutoff a time each index can compare (a TOML integer can reach 2^63 days,
# whose cutoff in seconds no SQLite integer holds: the run crashed instead of refusing the file).
MAX_DAYS = 100_000


class RetentionConfigError(ValueError):
    pass


class AudioFlags(Protocol):
    """``services.analytics.writer.AnalyticsWriter``: the analytics row's ``has_audio``."""

    def mark_audio(self, conversation_id: str, start: int | None, *, has_audio: bool = True) -> bool: ...


@dataclass(frozen=True)
class Rule:
    transcripts_days: int | None = None
    memories_days: int | None = None
    audio_days: int | None = None
    analytics_days: int | None = None

    def merged_over(self, base: "Rule") -> "Rule":
        return Rule(
            self.transcripts_days if self.transcripts_days is not None else base.transcripts_days,
            self.memories_days if self.memories_days is not None else base.memories_days,
            self.audio_days if self.audio_days is not None else base.audio_days,
            self.analytics_days if self.analytics_days is not None else base.analytics_days,
        )


@dataclass(frozen=True)
class RetentionRules:
    default: Rule = field(default_factory=Rule)
    agents: dict[str, Rule] = field(default_factory=dict)

    def for_agent(self, agent_id: str | None) -> Rule:
        own = self.agents.get(agent_id or "")
        return own.merged_over(self.default) if own is not None else self.default

    def shortest_days(self) -> int | None:
        days = [
            d
            for rule in (self.default, *self.agents.values())
            for d in (rule.transcripts_days, rule.memories_days, rule.audio_days, rule.analytics_days)
            if d is not None
        ]
        return min(days) if days else None

    @classmethod
    def load(cls, path: Path) -> "RetentionRules":
        """The rules in ``path``; none (keep everything) when the file does not exist."""
        if not path.exists():
            return cls()
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise RetentionConfigError(f"{path.name}: not valid TOML ({exc})") from None
        return cls.parse(text, path.name)

    @classmethod
    def parse(cls, text: str, source: str) -> "RetentionRules":
        """The rules in ``text`` (a file's, or on AWS an SSM parameter's); ``source`` names it in errors."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RetentionConfigError(f"{source}: not valid TOML ({exc})") from None
        unknown = set(data) - {"default", "agents"}
        if unknown:
            raise RetentionConfigError(f"{source}: unknown section(s) {sorted(unknown)}; use [default] and [agents.ID]")
        agents = data.get("agents", {})
        if not isinstance(agents, dict):
            raise RetentionConfigError(f"{source}: [agents] holds one table per agent id")
        return cls(_rule("default", data.get("default", {})), {a: _rule(f"agents.{a}", r) for a, r in agents.items()})


def _rule(where: str, table: Any) -> Rule:
    if not isinstance(table, dict):
        raise RetentionConfigError(f"[{where}] must be a table")
    for key, value in table.items():
        if key not in KINDS:
            raise RetentionConfigError(f"[{where}] unknown key {key!r}; known: {', '.join(KINDS)}")
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_DAYS:
            raise RetentionConfigError(f"[{where}] {key} must be a whole number of days, 1 to {MAX_DAYS}")
    return Rule(
        table.get("transcripts_days"), table.get("memories_days"), table.get("audio_days"), table.get("analytics_days")
    )


@dataclass
class RetentionSummary:
    dry_run: bool
    calls_expired: list[str] = field(default_factory=list)  # conversation ids (never printed by the CLI)
    memories_expired: list[str] = field(default_factory=list)
    audio_expired: list[str] = field(default_factory=list)
    analytics_expired: list[str] = field(default_factory=list)
    held: int = 0  # calls a rule would have touched, skipped under a legal hold
    erased_items: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "calls": len(self.calls_expired),
            "memories": len(self.memories_expired),
            "audio": len(self.audio_expired),
            "analytics": len(self.analytics_expired),
            "held": self.held,
            # Per store, what erasing the expired calls removed. Nested: spread at the top, the stores'
            # names ("memories", "analytics") overwrote the counts of calls above.
            "erased": dict(self.erased_items),
        }


@dataclass
class RetentionRunner:
    index: CallIndex
    eraser: Eraser
    rules: RetentionRules
    memories: CallerData | None = None
    blobs: BlobStore | None = None  # the archive, for audio_days
    audio_flags: AudioFlags | None = None  # the analytics rows' has_audio, for audio_days
    analytics: CallerData | None = None  # the analytics rows, for analytics_days
    analytics_cache: CallerData | None = None  # copies of those rows (the local DuckDB cache), dropped with them
    holds: HoldBook | None = None
    audit: Auditor | None = None
    clock: Callable[[], float] = field(default=time.time)

    def run(
        self, *, dry_run: bool = False, progress: Progress | None = None, actor: str = "retention"
    ) -> RetentionSummary:
        summary = RetentionSummary(dry_run)
        shortest = self.rules.shortest_days()
        if shortest is None:
            return summary
        now = int(self.clock())
        expired_calls: list[CallRecord] = []
        expired_memories: list[CallRecord] = []
        expired_audio: list[CallRecord] = []
        expired_analytics: list[CallRecord] = []
        candidates = self._older_than(now - shortest * DAY) + self._parked_before(now - shortest * DAY)
        # Read after the listing (a long walk on DynamoDB), and again before each step below: a hold
        # placed while the run works covers what the run has not touched yet.
        active = self.holds.active() if self.holds is not None else []
        for call in candidates:
            rule = self.rules.for_agent(call.agent_id)
            age = now - (call.started_at or call.ingested_at or now)  # parked audio: since it was stored
            whole = rule.transcripts_days is not None and age >= rule.transcripts_days * DAY
            memory = (
                self.memories is not None
                and rule.memories_days is not None
                and age >= rule.memories_days * DAY
                and call.memory_status != MEMORY_EXPIRED
            )
            audio = (
                self.blobs is not None
                and rule.audio_days is not None
                and age >= rule.audio_days * DAY
                and call.audio_version != AUDIO_EXPIRED
                and (call.audio_key is not None or bool(call.expects_audio))
            )
            analytics = (
                self.analytics is not None
                and rule.analytics_days is not None
                and age >= rule.analytics_days * DAY
                and call.analytics_expired_at is None
            )
            if not (whole or memory or audio or analytics):
                continue
            if self.holds is not None and self.holds.holding(call, active) is not None:
                summary.held += 1
                continue
            if whole:
                expired_calls.append(call)
                continue
            if memory:
                expired_memories.append(call)
            if audio:
                expired_audio.append(call)
            if analytics:
                expired_analytics.append(call)
        summary.calls_expired = [c.conversation_id for c in expired_calls]
        summary.memories_expired = [c.conversation_id for c in expired_memories]
        summary.audio_expired = [c.conversation_id for c in expired_audio]
        summary.analytics_expired = [c.conversation_id for c in expired_analytics]
        if dry_run:
            return summary
        since: set[str] = set()  # calls a hold placed after the selection covers
        expired_calls = self._unheld(expired_calls, summary, summary.calls_expired, since)
        expired_memories = self._unheld(expired_memories, summary, summary.memories_expired, since)
        expired_audio = self._unheld(expired_audio, summary, summary.audio_expired, since)
        expired_analytics = self._unheld(expired_analytics, summary, summary.analytics_expired, since)
        if self.audit is not None:  # before the work, as erasure does
            detail = {
                "calls": len(expired_calls),
                "memories": len(expired_memories),
                "audio": len(expired_audio),
                "analytics": len(expired_analytics),
                "held": summary.held,
            }
            # The calls losing a part, by keyed hash, so `audit --conversation` says what happened to
            # one (the calls erased whole are named by the eraser's own `erase` entry).
            partly = {c.conversation_id for c in (*expired_memories, *expired_audio, *expired_analytics)}
            self.audit.record("retention_run", actor, sorted(partly), detail)
        if expired_calls:
            erased = self.eraser.erase(self.eraser.plan_conversations(summary.calls_expired), progress, actor=actor)
            summary.erased_items = {k: v for k, v in erased.to_dict().items() if k not in ("phone", "dry_run")}
        expired_memories = self._unheld(expired_memories, summary, summary.memories_expired, since)
        if expired_memories and self.memories is not None:
            self._expire_memories(expired_memories, now)
        expired_audio = self._unheld(expired_audio, summary, summary.audio_expired, since)
        if expired_audio:
            self._expire_audio(expired_audio, now)
        expired_analytics = self._unheld(expired_analytics, summary, summary.analytics_expired, since)
        if expired_analytics:
            self._expire_analytics(expired_analytics, now)
        return summary

    def _unheld(
        self, calls: list[CallRecord], summary: RetentionSummary, listed: list[str], since: set[str]
    ) -> list[CallRecord]:
        """``calls`` without those a hold placed since the selection covers; they leave ``listed`` (the
        summary's ids of that kind) and count as held once per call (``since``), whatever kinds were due."""
        if self.holds is None or not calls:
            return calls
        active = self.holds.active()
        held = {c.conversation_id for c in calls if self.holds.holding(c, active) is not None}
        if not held:
            return calls
        summary.held += len(held - since)
        since |= held
        listed[:] = [cid for cid in listed if cid not in held]
        return [c for c in calls if c.conversation_id not in held]

    def _expire_analytics(self, calls: Sequence[CallRecord], now: int) -> None:
        """The rows first (per-call objects purged, merged days rewritten without the calls), then the
        marks: a crash in between leaves calls unmarked, so verify would rebuild their rows, and the
        next run, which still selects them, removes them again and marks them. All calls in one erase:
        a day's calls expire together, and each day object is then rewritten twice (before and after the
        marks), not once per call."""
        assert self.analytics is not None
        self.analytics.erase(None, calls)
        for call in calls:
            self.index.expire_analytics(call.conversation_id, now)
        # Once more after the marks: a delivery that read the row before them and wrote its rows after
        # the first erase finds no mark when it reads the row again (a later one does, and takes its
        # rows back itself).
        self.analytics.erase(None, calls)
        if self.analytics_cache is not None:  # it is rebuilt from the tables, without these calls
            self.analytics_cache.erase(None, calls)

    def _expire_audio(self, calls: Sequence[CallRecord], now: int) -> None:
        """Object first, then the row, then the analytics flag: a crash leaves the row naming the
        audio (verify reports it), and the next run, which still selects the call, finishes."""
        assert self.blobs is not None
        for call in calls:
            # The folder's audio key too: audio that arrived after this run listed the call is in
            # place before the row names it (the row then refuses it, and ingest purges its copy).
            placed = keys.audio_key(call.archive_prefix, call.conversation_id) if call.archive_prefix else None
            doomed = sorted(
                str(key) for key in {call.audio_key, placed, keys.pending_audio_key(call.conversation_id)} - {None}
            )
            for key in doomed:
                self.blobs.purge(key)
            self.index.drop_audio(call.conversation_id, now)
            # Again, now that the row refuses audio: a copy written between the purge and the mark
            # (before the row refused its record) goes too. Only a delivery that writes after this
            # must purge its own copy, which the webhook's role on AWS may not (verify finds it).
            for key in doomed:
                self.blobs.purge(key)
            if self.audio_flags is not None:
                wrote = self.audio_flags.mark_audio(call.conversation_id, call.started_at, has_audio=False)
                # An erasure of the call that landed while the row was rewritten would find its rows
                # gone and leave our copy (a merge folds it back in): tombstones come before the tables
                # in an erasure, so asking now either sees it, or that erasure's tables step comes later.
                if wrote and self.analytics is not None and self._erased(call.conversation_id):
                    self.analytics.erase(None, [call])

    def _erased(self, conversation_id: str) -> bool:
        return self.eraser.erased is not None and self.eraser.erased.is_erased(conversation_id)

    def _expire_memories(self, calls: Sequence[CallRecord], now: int) -> None:
        assert self.memories is not None
        for call in calls:
            self.memories.erase(None, [call])
            self.index.set_memory_status(call.conversation_id, MEMORY_EXPIRED, now)
            # Once more after the mark: a memory job that read the row before the mark and wrote after
            # the first erase loses its memories here, or, writing later, sees the mark when it checks.
            self.memories.erase(None, [call])

    def _parked_before(self, cutoff: int) -> list[CallRecord]:
        """Calls whose audio came but whose transcript never did: no start time, so no time range lists
        them, and their parked audio would be kept for ever. Aged from when the audio was first stored
        (the call started before that). Few: audio waits for its transcript seconds, as a rule."""
        found: list[CallRecord] = []
        for key in self.eraser.blobs.list_keys(f"{keys.PENDING_AUDIO_PREFIX}/"):
            stem = key.rsplit("/", 1)[-1].removesuffix(".mp3")
            if not keys.CONVERSATION_ID.fullmatch(stem):
                continue
            row = self.index.get(stem)
            if row is not None and row.started_at is None and row.ingested_at is not None and row.ingested_at < cutoff:
                found.append(row)
        return found

    def _older_than(self, cutoff: int) -> list[CallRecord]:
        found: list[CallRecord] = []
        query = CallQuery(until=cutoff, limit=MAX_PAGE_SIZE)
        while True:
            page = self.index.list_calls(query)
            found.extend(page.items)
            if page.next is None:
                return found
            query = CallQuery(until=cutoff, limit=MAX_PAGE_SIZE, after=page.next)

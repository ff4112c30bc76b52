"""Erase a caller (or one conversation) from every store, each told through its port.

First the tombstones (``core.erased``): from then on any webhook retry, import or sync of these
conversations stores nothing. The rest of the order makes an erasure resumable: what a feature
derived from the calls first (analytics rows, memories and their jobs, caches: ``CallerData``),
then each call's archive objects with their whole version history, then its index row last. The
row is how an erasure finds a call, so a crash at any step leaves the row in place and a rerun
finds and finishes the call; every step is idempotent. Objects under the caller's folder that no
row names (a crash between object and row at ingest) are found by listing that folder, which holds
only the caller's calls.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.core.domain import keys
from services.core.domain.models import MAX_PAGE_SIZE, CallQuery, CallRecord
from services.core.domain.phone import mask
from services.core.erased import ErasedConversations
from services.core.ports import BlobStore, CallerData, CallIndex

from .audit import Auditor
from .holds import HoldBook

Progress = Callable[[int, int], None]  # (done, total)
_SUFFIXES = (".json", ".mp3")


@dataclass
class ErasurePlan:
    """What an erasure will remove: the calls found, by row or by object."""

    phone: str | None  # E.164: the whole caller; None: the named conversations only
    calls: list[CallRecord]

    def object_keys(self, call: CallRecord) -> list[str]:
        found = {keys.pending_audio_key(call.conversation_id)}
        if call.archive_prefix:
            found |= {
                keys.transcript_key(call.archive_prefix, call.conversation_id),
                keys.audio_key(call.archive_prefix, call.conversation_id),
            }
        found |= {key for key in (call.transcript_key, call.audio_key) if key}
        return sorted(found)


@dataclass
class ErasureSummary:
    phone: str | None  # masked to the last four digits
    dry_run: bool
    conversations: int = 0
    archive_objects: int = 0  # objects (dry run) or object versions and delete markers removed
    index_rows: int = 0
    derived: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "phone": self.phone,
            "dry_run": self.dry_run,
            "conversations": self.conversations,
            "archive_objects": self.archive_objects,
            "index_rows": self.index_rows,
            **self.derived,
        }


@dataclass
class Eraser:
    blobs: BlobStore
    index: CallIndex
    derived: Sequence[CallerData] = ()
    erased: ErasedConversations | None = None  # the tombstones; None only in tests of the stores alone
    clock: Callable[[], float] = time.time
    audit: Auditor | None = None
    holds: HoldBook | None = None  # held data is refused (``Held``), never erased

    def plan_caller(self, phone: str) -> ErasurePlan:
        """Every call of the caller: the rows of that number, and objects in its folder no row names."""
        calls: dict[str, CallRecord] = {}
        query = CallQuery(phone=phone, limit=MAX_PAGE_SIZE)
        while True:
            page = self.index.list_calls(query)
            calls.update((call.conversation_id, call) for call in page.items)
            if page.next is None:
                break
            query = CallQuery(phone=phone, limit=MAX_PAGE_SIZE, after=page.next)
        prefix = keys.phone_prefix(phone)
        if prefix != keys.UNKNOWN_PHONE_PREFIX:  # "unknown" holds every caller without a number
            for key in self.blobs.list_keys(f"{prefix}/"):
                name = key.removeprefix(f"{prefix}/")
                stem = next((name.removesuffix(s) for s in _SUFFIXES if name.endswith(s)), None)
                if stem and keys.CONVERSATION_ID.fullmatch(stem) and stem not in calls:
                    calls[stem] = self.index.get(stem) or CallRecord(stem, phone=phone, archive_prefix=prefix)
        return ErasurePlan(phone, sorted(calls.values(), key=lambda c: c.conversation_id))

    def plan_conversations(self, conversation_ids: Sequence[str]) -> ErasurePlan:
        calls = []
        for conversation_id in conversation_ids:
            checked = keys.check_conversation_id(conversation_id)
            calls.append(self.index.get(checked) or CallRecord(checked))
        return ErasurePlan(None, calls)

    def dry_run(self, plan: ErasurePlan) -> ErasureSummary:
        if self.holds is not None:
            self.holds.refuse_held(plan.calls, plan.phone)
        summary = ErasureSummary(mask(plan.phone), True, conversations=len(plan.calls))
        for call in plan.calls:
            summary.archive_objects += sum(1 for key in plan.object_keys(call) if self.blobs.head(key) is not None)
            summary.index_rows += int(self.index.get(call.conversation_id) is not None)
        summary.derived = {target.name: target.find(plan.phone, plan.calls) for target in self.derived}
        return summary

    def erase(self, plan: ErasurePlan, progress: Progress | None = None, *, actor: str = "unknown") -> ErasureSummary:
        """``actor``: who asked (an API key's id, ``cli:<user>``), for the audit trail."""
        if self.holds is not None:
            self.holds.refuse_held(plan.calls, plan.phone)
        summary = ErasureSummary(mask(plan.phone), False, conversations=len(plan.calls))
        ids = [call.conversation_id for call in plan.calls]
        if self.erased is not None:
            self.erased.mark(ids, int(self.clock()))
        if self.audit is not None:  # recorded before the work: an erasure asked for is never unrecorded
            scope = "caller" if plan.phone else "conversations"
            detail = {"scope": scope, "phone": summary.phone, "conversations": len(ids)}
            self.audit.record("erase", actor, ids, detail)
        summary.derived = {target.name: target.erase(plan.phone, plan.calls) for target in self.derived}
        for done, call in enumerate(plan.calls, start=1):
            for key in plan.object_keys(call):
                summary.archive_objects += self.blobs.purge(key)
            if self.index.get(call.conversation_id) is not None:
                self.index.delete(call.conversation_id)
                summary.index_rows += 1
            if progress is not None:
                progress(done, len(plan.calls))
        return summary


def find_reappeared(erased: ErasedConversations, blobs: BlobStore, index: CallIndex) -> list[str]:
    """Conversation ids erased once that the archive or index holds again (a restored backup, or a
    delivery that raced its erasure). Reads every row and key: it runs with ``callvault verify``."""
    tombstones = set(erased.store.digests())
    if not tombstones:
        return []
    seen = {row.conversation_id for row in index.scan()}
    for key in blobs.list_keys():
        stem = key.rsplit("/", 1)[-1]
        stem = next((stem.removesuffix(s) for s in _SUFFIXES if stem.endswith(s)), "")
        if keys.CONVERSATION_ID.fullmatch(stem):
            seen.add(stem)
    return sorted(cid for cid in seen if erased.digest(cid) in tombstones)

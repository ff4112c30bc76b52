"""Erasure of caller memories and memory jobs (``core.ports.CallerData``, told by ``services/privacy``).

Jobs first, then memories: a job left waiting would write the erased call's memories again. A job
the worker is running at that moment reads a transcript that erasure removes next, so it fails; on
AWS the SQS message of such a job meets the tombstone or the missing transcript the same way.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from services.core.domain.models import CallRecord

from .outbox import SqliteOutbox
from .ports import MemoryStore

_COUNT_LIMIT = 1000  # a dry run counts up to this many memories of a caller


@dataclass
class MemoryErasure:
    store: MemoryStore
    outbox: SqliteOutbox | None = None  # local jobs; SQS messages cannot be picked out (see above)
    name: str = "memories"

    def find(self, phone: str | None, calls: Sequence[CallRecord]) -> int:
        jobs = self.outbox.forget_jobs([c.conversation_id for c in calls], dry_run=True) if self.outbox else 0
        if phone is not None:
            return jobs + len(self.store.list(phone, limit=_COUNT_LIMIT))
        ids = {c.conversation_id for c in calls}
        phones = {c.phone for c in calls if c.phone}
        memories = sum(1 for p in phones for m in self.store.list(p, limit=_COUNT_LIMIT) if m.conversation_id in ids)
        return jobs + memories

    def erase(self, phone: str | None, calls: Sequence[CallRecord]) -> int:
        erased = self.outbox.forget_jobs([c.conversation_id for c in calls]) if self.outbox else 0
        if phone is not None:
            return erased + self.store.delete_caller(phone)
        for call in calls:
            if call.phone:
                before = self.find(None, [call])
                self.store.add_conversation(call.phone, call.conversation_id, [])  # replaces with nothing
                erased += before
        return erased

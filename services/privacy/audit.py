"""The audit trail's use cases: record an event, list entries, check the chain.

Conversations are named by their keyed hash (the tombstones' ``core.erased``), so the same
``--conversation ID`` lookup finds an erased call's entries and the chain never needs rewriting.
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from services.core.domain.audit import AuditEntry, ChainCheck, Detail, check_chain
from services.core.erased import ErasedConversations
from services.core.ports import AuditLog

# Conversations one entry names at most: 1,000 hashes are about 67 KB, well inside a DynamoDB item.
MAX_SUBJECTS = 1000


@dataclass
class Auditor:
    log: AuditLog
    erased: ErasedConversations  # its key names conversations
    clock: Callable[[], float] = field(default=time.time)

    def record(
        self, action: str, actor: str, conversation_ids: Iterable[str] = (), detail: Detail | None = None
    ) -> AuditEntry:
        """One entry; an event naming more than ``MAX_SUBJECTS`` conversations (a caller with thousands
        of calls, a first retention run) becomes consecutive entries of ``MAX_SUBJECTS`` each, the same
        detail plus ``part``/``parts``: one entry of 7,000 hashes is more than a DynamoDB item holds
        (400 KB), and the erasure, audited before it starts, could never run. Returns the last."""
        subjects = sorted({self.erased.digest(cid) for cid in conversation_ids})
        now, detail = int(self.clock()), dict(detail or {})
        if len(subjects) <= MAX_SUBJECTS:
            return self.log.append(action, actor, subjects, detail, now)
        chunks = [subjects[start : start + MAX_SUBJECTS] for start in range(0, len(subjects), MAX_SUBJECTS)]
        for part, chunk in enumerate(chunks, start=1):
            entry = self.log.append(action, actor, chunk, {**detail, "part": part, "parts": len(chunks)}, now)
        return entry

    def entries(self, since: int | None = None, conversation_id: str | None = None) -> list[AuditEntry]:
        subject = self.erased.digest(conversation_id) if conversation_id is not None else None
        return list(self.log.entries(since=since, subject=subject))

    def erased_subjects(self) -> set[str]:
        """Every conversation an ``erase`` entry names, by keyed hash: the tombstones again, kept apart
        from them (a restore of the calls table takes its tombstones back to that day)."""
        return {subject for entry in self.log.entries() if entry.action == "erase" for subject in entry.subjects}

    def check(self) -> ChainCheck:
        return check_chain(self.log.entries())

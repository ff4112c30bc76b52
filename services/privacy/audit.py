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


@dataclass
class Auditor:
    log: AuditLog
    erased: ErasedConversations  # its key names conversations
    clock: Callable[[], float] = field(default=time.time)

    def record(
        self, action: str, actor: str, conversation_ids: Iterable[str] = (), detail: Detail | None = None
    ) -> AuditEntry:
        subjects = sorted({self.erased.digest(cid) for cid in conversation_ids})
        return self.log.append(action, actor, subjects, detail or {}, int(self.clock()))

    def entries(self, since: int | None = None, conversation_id: str | None = None) -> list[AuditEntry]:
        subject = self.erased.digest(conversation_id) if conversation_id is not None else None
        return list(self.log.entries(since=since, subject=subject))

    def check(self) -> ChainCheck:
        return check_chain(self.log.entries())

"""Legal holds: place one on a caller or a conversation, release it; erasure (and retention) ask
``holding`` and refuse held data, naming the hold."""

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from services.core.domain.errors import Held, NotFound
from services.core.domain.holds import Hold, HoldKind
from services.core.domain.models import CallRecord
from services.core.domain.phone import mask
from services.core.erased import ErasedConversations
from services.core.ports import Holds

from .audit import Auditor


@dataclass
class HoldBook:
    holds: Holds
    erased: ErasedConversations  # its key names callers and conversations
    audit: Auditor | None = None
    clock: Callable[[], float] = field(default=time.time)

    def place(self, *, reason: str, actor: str, phone: str | None = None, conversation_id: str | None = None) -> Hold:
        reason = reason.strip()
        if not reason:
            raise ValueError("a hold needs a reason (a case or ticket reference)")
        kind: HoldKind
        if phone is not None:
            kind, subject, label = "caller", self.erased.caller_digest(phone), mask(phone) or "-"
        elif conversation_id is not None:
            digest = self.erased.digest(conversation_id)
            kind, subject, label = "conversation", digest, f"conversation {digest[:12]}"
        else:
            raise ValueError("a hold names a caller or a conversation")
        hold = Hold(f"hold_{secrets.token_hex(6)}", kind, subject, label, reason[:500], int(self.clock()), actor)
        self.holds.place(hold)
        if self.audit is not None:
            subjects = [conversation_id] if conversation_id else []
            self.audit.record("hold", actor, subjects, {"hold_id": hold.id, "kind": kind, "label": label})
        return hold

    def release(self, hold_id: str, *, actor: str) -> Hold:
        """Released; a hold released already is returned as it is, and the trail gets no second entry."""
        earlier = next((hold for hold in self.holds.all() if hold.id == hold_id and not hold.active), None)
        if earlier is not None:
            return earlier
        hold = self.holds.release(hold_id, int(self.clock()), actor)
        if hold is None:
            raise NotFound(f"no hold with id {hold_id}")
        if self.audit is not None:
            self.audit.record("release", actor, [], {"hold_id": hold.id, "kind": hold.kind, "label": hold.label})
        return hold

    def active(self) -> list[Hold]:
        return [hold for hold in self.holds.all() if hold.active]

    def holding(self, call: CallRecord, active: list[Hold] | None = None) -> Hold | None:
        """The active hold that covers this call, if any."""
        subjects = self._subjects(call)
        return next(
            (hold for hold in (active if active is not None else self.active()) if hold.subject in subjects), None
        )

    def covering(self, call: CallRecord) -> list[Hold]:
        """Every hold, active or released, that covers this call, oldest first: placed on the call, or on
        its caller (under either number the call was reported with). The answer to "is this call held,
        and by what?" (``callvault hold --list --conversation ID``)."""
        subjects = self._subjects(call)
        return [hold for hold in self.holds.all() if hold.subject in subjects]

    def _subjects(self, call: CallRecord) -> set[str]:
        subjects = {self.erased.digest(call.conversation_id)}
        for phone in (call.phone, call.reported_phone):
            if phone:
                subjects.add(self.erased.caller_digest(phone))
        return subjects

    def refuse_held(self, calls: Iterable[CallRecord], phone: str | None = None) -> None:
        """Raise ``Held`` naming the first hold that covers the caller or any of the calls."""
        active = self.active()
        if not active:
            return
        if phone is not None:
            caller = self.erased.caller_digest(phone)
            hold = next((h for h in active if h.subject == caller), None)
            if hold is not None:
                raise Held(_refusal(hold))
        for call in calls:
            hold = self.holding(call, active)
            if hold is not None:
                raise Held(_refusal(hold))


def _refusal(hold: Hold) -> str:
    return (
        f"under legal hold {hold.id} ({hold.label}) since {time.strftime('%Y-%m-%d', time.gmtime(hold.placed_at))}: "
        f"{hold.reason!r}; release it first (`callvault release {hold.id}`)"
    )

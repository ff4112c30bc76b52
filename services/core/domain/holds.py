"""Legal holds (#13): a caller or one conversation that erasure and retention must leave alone."""

from dataclasses import dataclass
from typing import Any, Literal

HoldKind = Literal["caller", "conversation"]


@dataclass(frozen=True)
class Hold:
    id: str  # "hold_..." : what `callvault release` takes
    kind: HoldKind
    subject: str  # the caller's or conversation's keyed hash (core.erased): nothing in clear
    label: str  # for people: the masked phone, or the start of the conversation's hash
    reason: str  # the operator's words (a case or ticket reference); shown in refusals
    placed_at: int
    placed_by: str
    released_at: int | None = None
    released_by: str | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "label": self.label,
            "reason": self.reason,
            "placed_at": self.placed_at,
            "placed_by": self.placed_by,
            "released_at": self.released_at,
            "released_by": self.released_by,
        }

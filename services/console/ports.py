"""What the console needs from the rest of CallVault, named by role. Search's ``SearchFinder`` and
memory's stores satisfy these structurally; the console imports neither."""

from collections.abc import Mapping, Sequence
from typing import Protocol

from services.analytics.reports import ReportArgs
from services.analytics.result import QueryResult
from services.core.domain.models import CallRecord


class Link(Protocol):
    @property
    def url(self) -> str: ...


class FoundPage(Protocol):
    @property
    def items(self) -> Sequence[CallRecord]: ...

    @property
    def next_cursor(self) -> str | None: ...


class FoundCall(Protocol):
    @property
    def record(self) -> CallRecord: ...

    @property
    def transcript(self) -> Link | None: ...

    @property
    def audio(self) -> Link | None: ...


class CallFinder(Protocol):
    def find(self, filters: Mapping[str, str], cursor: str | None, limit: int) -> FoundPage:
        """Filters as typed; raises ``InvalidRequest`` / ``InvalidCursor`` for wrong ones."""
        ...

    def details(self, conversation_id: str, *, may_listen: bool) -> FoundCall: ...


class Memory(Protocol):
    @property
    def text(self) -> str: ...

    @property
    def type(self) -> str | None: ...

    @property
    def conversation_id(self) -> str | None: ...

    @property
    def started_at(self) -> int | None: ...


class MemoryReader(Protocol):
    def list(self, phone: str, type: None, limit: int) -> Sequence[Memory]: ...


class Reports(Protocol):
    engine_name: str

    def run(self, name: str, args: ReportArgs) -> QueryResult: ...

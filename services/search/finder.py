"""The search use cases as one object with the console's ``CallFinder`` shape (``find``, ``details``),
so the console gets them from the composition root without importing this package."""

from collections.abc import Mapping
from dataclasses import dataclass

from services.core.ports import CallIndex

from .cursor import CursorCodec
from .links import LinkSigner
from .params import parse_filters
from .service import CallDetails, CallsPage, get_call, search_calls

FILTER_NAMES = ("phone", "agent_id", "since", "until", "status", "call_successful")


@dataclass
class SearchFinder:
    index: CallIndex
    cursors: CursorCodec
    links: LinkSigner
    link_ttl_secs: int
    default_region: str

    def find(self, filters: Mapping[str, str], cursor: str | None, limit: int) -> CallsPage:
        """``filters`` as typed (names of ``GET /calls``); ``InvalidRequest``/``InvalidCursor`` when wrong."""
        parsed = parse_filters(
            **{name: filters[name] for name in FILTER_NAMES if filters.get(name)},
            default_region=self.default_region,
        )
        return search_calls(parsed, limit=limit, cursor=cursor, index=self.index, cursors=self.cursors)

    def details(self, conversation_id: str, *, may_listen: bool) -> CallDetails:
        return get_call(
            conversation_id,
            index=self.index,
            links=self.links,
            expires_in=self.link_ttl_secs,
            may_listen=may_listen,
        )

"""``GET /search?q=``: keyword search over what was said, with the matching turns (the CLI's
``callvault report keyword``, through the same report code: DuckDB locally, Athena on AWS)."""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from services.analytics.reader import AnalyticsReader
from services.analytics.reports import ReportArgs, TurnPosition, keyword_page
from services.core.domain.errors import InvalidCursor, InvalidRequest, StorageUnavailable
from services.web.edge import add_log_fields
from services.web.params import parse_day
from services.web.query import UNKNOWN_PARAMETER, reject_unknown_query_params

from ..dependencies import Context, require_api_key
from ..schemas import error_example
from .calls import UNAUTHORIZED

# As `callvault report keyword --since` reads them (and `GET /calls` its instants): a time is its UTC day.
_DAY = "`2025-07-06`, `20250706`, or an ISO 8601 time or unix seconds, which count as their UTC day."

router = APIRouter(
    tags=["calls"],
    dependencies=[Depends(require_api_key), Depends(reject_unknown_query_params)],
    responses={400: UNKNOWN_PARAMETER, 401: UNAUTHORIZED},
)
MAX_RESULTS = 200


class TurnMatch(BaseModel):
    conversation_id: str
    day: str = Field(description="the call's UTC day")
    phone: str | None = None
    agent_id: str | None = None
    turn_index: int
    role: str | None = None
    time_in_call_secs: float | None = None
    text: str


class TurnMatches(BaseModel):
    items: list[TurnMatch]
    engine: str = Field(description="duckdb (local) or athena (AWS)")
    next_cursor: str | None = Field(
        None, description="more turns match: pass it back as `cursor`, with the same q, since and until"
    )


def keyword_matches(
    analytics: AnalyticsReader | None,
    q: str,
    since: date | None,
    until: date | None,
    limit: int,
    cursor: str | None = None,
) -> TurnMatches:
    """The use case behind the route: one page of matching turns, and the cursor of the next."""
    keyword = q.strip()
    if len(keyword) < 2:
        raise InvalidRequest("q must have at least 2 characters")
    if since is not None and until is not None and until < since:
        raise InvalidRequest("until must not be before since (both are UTC days, both inclusive)")
    try:
        after = TurnPosition.parse(cursor) if cursor is not None else None
    except ValueError as exc:
        raise InvalidCursor(str(exc)) from None
    if analytics is None:
        raise StorageUnavailable("the analytics engine is not configured here")
    page = keyword_page(analytics.run, ReportArgs(since=since, until=until, keyword=keyword, after=after), limit)
    items = [
        TurnMatch(
            conversation_id=str(row["conversation_id"]),
            day=str(row["day"]),
            phone=row.get("phone"),
            agent_id=row.get("agent_id"),
            turn_index=int(row["turn_index"]),
            role=row.get("role"),
            time_in_call_secs=row.get("time_in_call_secs"),
            text=str(row["text"]),
        )
        for row in page.rows
    ]
    next_cursor = page.next.token() if page.next is not None else None
    return TurnMatches(items=items, engine=analytics.engine_name, next_cursor=next_cursor)


@router.get(
    "/search",
    response_model=TurnMatches,
    summary="Keyword search over transcripts, with the matching turns",
    description=(
        "Transcript turns containing `q` (case-insensitive), newest day first, each with its call. Runs on "
        "the analytics tables (DuckDB locally; Athena on AWS, where it takes seconds). When more turns match "
        "than `limit`, `next_cursor` is set: the same request with `cursor=<next_cursor>` gives the next "
        "(older) turns. Each page is a new query; on Athena it reads the days from `since` up to the day of "
        "the last turn shown, so a `since` keeps every page cheap."
    ),
    responses={
        400: error_example(
            "a cursor no page wrote, or a query parameter the route does not take",
            "invalid_cursor",
            "cursor is not valid: pass back next_cursor unchanged",
        ),
        503: error_example("no analytics engine", "storage_unavailable", "storage is unavailable; retry"),
    },
)
def search_transcripts(
    request: Request,
    context: Context,
    q: Annotated[str, Query(min_length=2, max_length=100, description="the words to find")],
    since: Annotated[str | None, Query(max_length=64, description=f"first UTC day (inclusive). {_DAY}")] = None,
    until: Annotated[str | None, Query(max_length=64, description=f"last UTC day (inclusive). {_DAY}")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page, unchanged")
    ] = None,
) -> TurnMatches:
    first = parse_day("since", since) if since is not None else None
    last = parse_day("until", until) if until is not None else None
    found = keyword_matches(context.analytics, q, first, last, limit, cursor)
    # never the keyword (it may be personal), nor the cursor (it names a call)
    add_log_fields(request, items=len(found.items), paged=cursor is not None)
    return found

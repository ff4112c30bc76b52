"""``GET /search?q=``: keyword search over what was said, with the matching turns (the CLI's
``callvault report keyword``, through the same report code: DuckDB locally, Athena on AWS)."""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from services.analytics.reader import AnalyticsReader
from services.analytics.reports import ReportArgs
from services.core.domain.errors import InvalidRequest, StorageUnavailable
from services.web.edge import add_log_fields
from services.web.query import reject_unknown_query_params

from ..dependencies import Context, require_api_key
from ..schemas import error_example

router = APIRouter(tags=["calls"], dependencies=[Depends(require_api_key), Depends(reject_unknown_query_params)])
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


def keyword_matches(
    analytics: AnalyticsReader | None, q: str, since: date | None, until: date | None, limit: int
) -> TurnMatches:
    """The use case behind the route and the console's search page."""
    keyword = q.strip()
    if len(keyword) < 2:
        raise InvalidRequest("q must have at least 2 characters")
    if since is not None and until is not None and until < since:
        raise InvalidRequest("until must not be before since (both are UTC days, both inclusive)")
    if analytics is None:
        raise StorageUnavailable("the analytics engine is not configured here")
    result = analytics.run("keyword", ReportArgs(since=since, until=until, keyword=keyword, limit=limit))
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
        for row in result.dicts()
    ]
    return TurnMatches(items=items, engine=analytics.engine_name)


@router.get(
    "/search",
    response_model=TurnMatches,
    summary="Keyword search over transcripts, with the matching turns",
    description=(
        "Transcript turns containing `q` (case-insensitive), newest day first, each with its call. Runs on "
        "the analytics tables (DuckDB locally; Athena on AWS, where it takes seconds)."
    ),
    responses={503: error_example("no analytics engine", "storage_unavailable", "storage is unavailable; retry")},
)
def search_transcripts(
    request: Request,
    context: Context,
    q: Annotated[str, Query(min_length=2, max_length=100, description="the words to find")],
    since: Annotated[date | None, Query(description="first UTC day, YYYY-MM-DD")] = None,
    until: Annotated[date | None, Query(description="last UTC day, YYYY-MM-DD (inclusive)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = 50,
) -> TurnMatches:
    found = keyword_matches(context.analytics, q, since, until, limit)
    add_log_fields(request, items=len(found.items))  # never the keyword: it may be personal
    return found

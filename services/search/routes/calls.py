"""``GET /calls`` and ``GET /calls/{conversation_id}``: translate HTTP to the use cases and back."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse

from services.core.domain import phone as phone_domain
from services.core.domain.models import CALL_OUTCOMES, CALL_STATUSES
from services.web.auth import require_role
from services.web.edge import add_log_fields
from services.web.query import UNKNOWN_PARAMETER, reject_unknown_query_params

from ..dependencies import BaseUrl, Caller, Context, Cursors, Index, Links, require_api_key
from ..links import absolute_url
from ..params import parse_filters
from ..schemas import EXAMPLE_ID, CallDetail, CallList, error_example
from ..service import DEFAULT_LIMIT, MAX_LIMIT, audio_link, get_call, search_calls

UNAUTHORIZED = error_example("missing or wrong API key", "unauthorized", "API key is not valid")
UNAVAILABLE = error_example(
    "the index or archive did not answer; retry", "storage_unavailable", "storage is unavailable; retry"
)

router = APIRouter(
    tags=["calls"],
    dependencies=[Depends(require_api_key), Depends(reject_unknown_query_params)],
    responses={400: UNKNOWN_PARAMETER, 401: UNAUTHORIZED, 503: UNAVAILABLE},
)


def _examples(**values: tuple[str, str]) -> dict[str, Any]:
    return {name: {"summary": summary, "value": value} for name, (summary, value) in values.items()}


PhoneParam = Annotated[
    str | None,
    Query(
        max_length=64,
        description=(
            "The customer's number as people type it: `+16125550142`, `+1 612-555-0142`, `(612) 555-0142`, "
            "`16125550142`. Numbers without `+` are read in the server's default region (US unless "
            "CALLVAULT_DEFAULT_REGION says otherwise). A `+` sent unencoded arrives as a space and is "
            "understood; encode it as `%2B` to be safe."
        ),
        openapi_examples=_examples(
            e164=("E.164", "+16125550142"),
            typed=("as typed, with punctuation", "(612) 555-0142"),
            international=("another country", "+44 20 7946 0958"),
        ),
    ),
]
AgentParam = Annotated[
    str | None,
    Query(
        max_length=128,
        description="Only calls handled by this ElevenLabs agent.",
        openapi_examples=_examples(agent=("an agent id", "agent_01jxbrc1trfxev5sdp5xk4ra67")),
    ),
]
_INSTANT = (
    "ISO 8601 (`2025-07-06`, `2025-07-06T11:40:15Z`, `2025-07-06T13:40:15+02:00`) or unix seconds; no offset means UTC."
)
SinceParam = Annotated[
    str | None,
    Query(
        max_length=64,
        description=f"Calls that started at or after this instant. {_INSTANT}",
        openapi_examples=_examples(iso=("ISO 8601 date", "2025-07-01"), unix=("unix seconds", "1751328000")),
    ),
]
UntilParam = Annotated[
    str | None,
    Query(
        max_length=64,
        description=f"Calls that started before this instant (exclusive). {_INSTANT}",
        openapi_examples=_examples(iso=("ISO 8601 with offset", "2025-07-08T00:00:00+02:00")),
    ),
]
StatusParam = Annotated[
    str | None,
    Query(
        max_length=128,
        description=(
            "The call's status: ElevenLabs' `done`, `failed`, `in-progress`, `processing` or `initiated`, or "
            "`initiation_failed` (a call that never connected). Anything else is refused."
        ),
        json_schema_extra={"enum": list(CALL_STATUSES)},
        openapi_examples=_examples(done=("completed calls", "done"), failed=("never connected", "initiation_failed")),
    ),
]
OutcomeParam = Annotated[
    str | None,
    Query(
        max_length=128,
        description="ElevenLabs' evaluation of the call: `success`, `failure` or `unknown` (anything else is refused).",
        json_schema_extra={"enum": list(CALL_OUTCOMES)},
        openapi_examples=_examples(failure=("calls that failed their goal", "failure")),
    ),
]
LimitParam = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size, 1-100.")]
CursorParam = Annotated[
    str | None,
    Query(
        max_length=2048,
        description="`next_cursor` of the previous page, with the same filters. Opaque; an altered cursor is a 400.",
    ),
]


@router.get(
    "/calls",
    response_model=CallList,
    summary="Search calls, newest first",
    description=(
        "Calls matching every given filter, newest first, one page at a time. With no filter, the most "
        "recent calls. Each page is read from one index range (by phone, by agent, or by time), so it "
        "costs the same however large the archive is."
    ),
    responses={
        400: error_example(
            "altered cursor, a cursor from other filters, or a query parameter the route does not take",
            "invalid_cursor",
            "cursor is not valid",
        ),
        422: error_example(
            "a parameter is wrong",
            "invalid_request",
            "phone has too few digits for numbers in US (e.g. +16125550142, +1 612-555-0142 or (612) 555-0142)",
        ),
    },
)
def list_calls(
    request: Request,
    context: Context,
    index: Index,
    cursors: Cursors,
    phone: PhoneParam = None,
    agent_id: AgentParam = None,
    since: SinceParam = None,
    until: UntilParam = None,
    status: StatusParam = None,
    call_successful: OutcomeParam = None,
    limit: LimitParam = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> CallList:
    filters = parse_filters(
        phone=phone,
        agent_id=agent_id,
        since=since,
        until=until,
        status=status,
        call_successful=call_successful,
        default_region=context.default_region,
    )
    add_log_fields(request, filters=filters.names(), phone=phone_domain.mask(filters.phone), paged=cursor is not None)
    page = search_calls(filters, limit=limit, cursor=cursor, index=index, cursors=cursors)
    add_log_fields(request, items=len(page.items))
    return CallList.of(page)


@router.get(
    "/calls/{conversation_id}",
    response_model=CallDetail,
    summary="One call, with links to its transcript and audio",
    description=(
        "The call's full index record and time-limited download links (presigned S3 GET URLs on AWS, "
        "signed `/files/...` URLs locally). The links need no API key and are named "
        "`<conversation_id>.json` (downloaded) / `.mp3` (played inline by a browser)."
    ),
    responses={
        404: error_example("no call with this id", "not_found", "no call with this conversation_id"),
        422: error_example(
            "the id is not a conversation id",
            "invalid_request",
            "invalid parameters: conversation_id: String should match pattern '^[A-Za-z0-9_-]{1,128}$'",
        ),
    },
)
def show_call(
    caller: Caller,
    context: Context,
    index: Index,
    links: Links,
    base_url: BaseUrl,
    conversation_id: Annotated[
        str,
        Path(
            pattern=r"^[A-Za-z0-9_-]{1,128}$",
            description="The ElevenLabs conversation id.",
            openapi_examples=_examples(conversation=("a conversation id", EXAMPLE_ID)),
        ),
    ],
) -> CallDetail:
    details = get_call(
        conversation_id,
        index=index,
        links=links,
        expires_in=context.link_ttl_secs,
        may_listen=caller.may("listen"),
    )
    return CallDetail.of_details(details, base_url)


@router.get(
    "/calls/{conversation_id}/audio",
    status_code=307,
    response_class=RedirectResponse,
    summary="Play a call's audio (keys with the listen or admin role)",
    description=(
        "Redirects (307) to a fresh time-limited link to the call's MP3, which answers `Range` requests, "
        "so a player can stream and seek. A `read` key gets 403; a call without audio 404."
    ),
    responses={
        403: error_example("a read-only key", "forbidden", "audio needs a key with the 'listen' role"),
        404: error_example("no call, or no audio", "not_found", "this call has no audio"),
    },
)
def play_audio(
    caller: Caller,
    context: Context,
    index: Index,
    links: Links,
    base_url: BaseUrl,
    conversation_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,128}$", description="The conversation id.")],
) -> RedirectResponse:
    require_role(caller, "listen", "audio")
    link = audio_link(conversation_id, index=index, links=links, expires_in=context.link_ttl_secs)
    return RedirectResponse(absolute_url(link.url, base_url), status_code=307)

"""The console's routes. Pages are GET and read-only; the two forms that change something (sign-in,
sign-out) are POST with a CSRF token. Each page needs a session; the audio needs the listen role."""

import hashlib
import re
import traceback
from collections.abc import Callable, Coroutine
from datetime import date
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from services.analytics.reports import ReportArgs, TurnPosition, keyword_page
from services.core.domain import phone as phone_domain
from services.core.domain.errors import (
    CallVaultError,
    InvalidCursor,
    InvalidRequest,
    NotFound,
    StorageUnavailable,
)
from services.core.domain.models import CALL_OUTCOMES, CALL_STATUSES, CallRecord
from services.core.domain.versions import AUDIO_EXPIRED
from services.web.auth import ROLES, Principal
from services.web.body import read_bounded
from services.web.edge import add_log_fields, request_id
from services.web.params import parse_phone

from . import views
from .app import STATIC, TEMPLATES, ConsoleContext, SignInRequired
from .session import SESSION_COOKIE, SIGNIN_COOKIE, Session, safe_next


class PageRoute(APIRoute):
    """A console route: a failure no handler foresaw (a bug, a broken store) is a page saying what to
    do, not the API's JSON 500. Logged as the edge logs one: where it failed, never its message."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_on_failure(request: Request) -> Response:
            try:
                return await handler(request)
            except (CallVaultError, HTTPException, RequestValidationError, SignInRequired):
                raise  # the console's error pages and the sign-in redirect
            except Exception as exc:
                rid = request_id(request)
                request.app.state.logger.error(
                    "request failed",
                    extra={
                        "request_id": rid,
                        "error_type": type(exc).__name__,
                        "trace": [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_tb(exc.__traceback__)],
                    },
                )
                message = (
                    "This page could not be shown. Reload to try again; if it keeps failing, tell whoever runs "
                    f"CallVault and quote request id {rid}: their log says what went wrong."
                )
                return page(
                    "error.html",
                    500,
                    visitor=error_page_visitor(request),
                    title="Something went wrong",
                    message=message,
                )

        return page_on_failure


def error_page_visitor(request: Request) -> "Visitor | None":
    """Whose header an error page shows (sign-out, the pages): none rather than a second failure."""
    try:
        return visitor_of(request)
    except Exception:
        return None


router = APIRouter(include_in_schema=False, route_class=PageRoute)
PAGE_SIZE = 50
HITS_PER_PAGE = 100  # search: what one screen reads; on Athena each page is one query
MAX_FORM_BYTES = 8 * 1024
FILTERS = ("phone", "agent_id", "since", "until", "status", "call_successful")
CONVERSATION_ID = r"^[A-Za-z0-9_-]{1,128}$"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' https: blob:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'"
)


def _asset_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


templates = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["when"] = views.when
templates.filters["clock"] = views.clock
templates.filters["mask"] = phone_domain.mask
templates.globals["asset_version"] = _asset_version()


def get_context(request: Request) -> ConsoleContext:
    context: ConsoleContext = request.app.state.console
    return context


Context = Annotated[ConsoleContext, Depends(get_context)]


class Visitor:
    """The signed-in person: their key's principal and their session (for the CSRF token)."""

    def __init__(self, principal: Principal, session: Session, csrf: str) -> None:
        self.principal, self.session, self.csrf = principal, session, csrf

    @property
    def may_listen(self) -> bool:
        return self.principal.may("listen")


def visitor_of(request: Request) -> Visitor | None:
    """The signed-in person, or None: a session we issued, unexpired, whose key still exists."""
    context = get_context(request)
    session = context.sessions.read(request.cookies.get(SESSION_COOKIE))
    principal = context.api_keys.by_id(session.key_id) if session else None
    if session is None or principal is None:
        return None
    return Visitor(principal, session, context.sessions.csrf_token(session))


def signed_in(request: Request) -> Visitor:
    visitor = visitor_of(request)
    if visitor is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    add_log_fields(request, key_id=visitor.principal.key_id, role=visitor.principal.role)
    return visitor


SignedIn = Annotated[Visitor, Depends(signed_in)]


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = templates.get_template(name).render(**values)
    return HTMLResponse(html, status_code=status, headers=_headers())


def _headers() -> dict[str, str]:
    return {
        "content-security-policy": CSP,
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        "referrer-policy": "same-origin",
        "cross-origin-opener-policy": "same-origin",  # a page elsewhere keeps no handle on a console window
        "cache-control": "no-store",
    }


async def _form(request: Request) -> dict[str, str]:
    raw = await read_bounded(request, MAX_FORM_BYTES)
    try:
        parsed = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=10)
    except ValueError:  # more fields than any of our forms has: no token read, so the post is refused
        return {}
    return {name: values[0] for name, values in parsed.items()}


# -- sign-in and sign-out ----------------------------------------------------------------------------


@router.get("/")
@router.get("/console")  # typed by hand: every console address starts with it
def root() -> RedirectResponse:
    return RedirectResponse("/console/calls", status_code=303)


def _signin_page(
    request: Request, context: ConsoleContext, next_path: str, error: str | None, status: int
) -> HTMLResponse:
    cookie, token = context.sessions.signin_token(request.cookies.get(SIGNIN_COOKIE))
    response = page("signin.html", status, csrf=token, next=safe_next(next_path), error=error, visitor=None)
    response.set_cookie(
        SIGNIN_COOKIE,
        cookie,
        max_age=3600,
        path="/console/signin",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.get("/console/signin")
def signin_form(request: Request, context: Context, next: str | None = None) -> HTMLResponse:
    return _signin_page(request, context, next or "", None, 200)


@router.post("/console/signin")
async def signin(request: Request, context: Context) -> Response:
    form = await _form(request)
    next_path = safe_next(form.get("next"))
    if not context.sessions.check_signin(request.cookies.get(SIGNIN_COOKIE), form.get("csrf")):
        add_log_fields(request, error_code="csrf")
        return _signin_page(request, context, next_path, "The form expired. Please sign in again.", 403)
    principal = context.api_keys.lookup(form.get("key", "").strip()) if len(form.get("key", "")) <= 512 else None
    if principal is None:
        add_log_fields(request, error_code="unauthorized")
        return _signin_page(request, context, next_path, "That API key is not valid.", 401)
    cookie, _ = context.sessions.issue(principal.key_id)  # always a new session id: no fixation
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=context.sessions.ttl_secs,
        path="/",
        httponly=True,
        samesite="lax",  # a link from a chat or a ticket opens the page; a post from elsewhere carries none
        secure=_secure(request),
    )
    response.delete_cookie(
        SIGNIN_COOKIE, path="/console/signin", httponly=True, samesite="strict", secure=_secure(request)
    )
    add_log_fields(request, key_id=principal.key_id, role=principal.role)
    return response


@router.post("/console/signout")
async def signout(request: Request, context: Context, visitor: SignedIn) -> Response:
    form = await _form(request)
    if not context.sessions.check_csrf(visitor.session, form.get("csrf")):
        add_log_fields(request, error_code="csrf")
        return page(
            "error.html", 403, visitor=visitor, title="Forbidden", message="The form expired; reload and try again."
        )
    context.sessions.end(visitor.session)  # a copy of the cookie is refused from now on
    response = RedirectResponse("/console/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(request))
    return response


# -- calls -------------------------------------------------------------------------------------------


@router.get("/console/calls")
async def calls_page(request: Request, context: Context, visitor: SignedIn) -> HTMLResponse:
    params = request.query_params
    filters = {name: params.get(name, "").strip() for name in FILTERS}
    cursor = params.get("cursor") or None
    error = None
    items: list[Any] = []
    next_url = None
    try:
        since, until = filters["since"], filters["until"]
        if _DAY.fullmatch(since) and _DAY.fullmatch(until) and until <= since:
            # the API's own message names since/until; the form's fields are From and Before
            raise InvalidRequest("Before must be a later day than From (From is included, Before is not).")
        found = await run_in_threadpool(context.finder.find, {k: v for k, v in filters.items() if v}, cursor, PAGE_SIZE)
        items = list(found.items)
        if found.next_cursor:
            next_url = "/console/calls?" + urlencode(
                {**{k: v for k, v in filters.items() if v}, "cursor": found.next_cursor}
            )
    except InvalidCursor:  # edited, or kept across a change of the signing key; the API's words name next_cursor
        error = "This page link is not valid: start again from the newest calls (the Newest link below)."
    except CallVaultError as exc:  # a wrong filter: say so above an empty list
        error = exc.message
    add_log_fields(request, filters=[k for k, v in filters.items() if v], paged=cursor is not None, items=len(items))
    first_url = "/console/calls?" + urlencode({k: v for k, v in filters.items() if v}) if cursor else None
    return page(
        "calls.html",
        400 if error else 200,
        visitor=visitor,
        nav="calls",
        filters=filters,
        unshown=_unshown_filters(filters),
        statuses=CALL_STATUSES,
        outcomes=CALL_OUTCOMES,
        calls=items,
        next_url=next_url,
        first_url=first_url,
        error=error,
    )


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _unshown_filters(filters: dict[str, str]) -> list[tuple[str, str]]:
    """Filters from the URL (a link, an API user's habit) that the form's fields cannot show: a time or
    unix seconds in a date field. Listed, so none acts unseen. (The status list offers every status the
    filter accepts; any other is refused, above an empty list.)"""
    return [
        (label, filters[name])
        for name, label in (("since", "From"), ("until", "Before"))
        if filters[name] and not _DAY.fullmatch(filters[name])
    ]


@router.get("/console/calls/{conversation_id}")
async def call_page(
    request: Request,
    context: Context,
    visitor: SignedIn,
    conversation_id: str,
) -> HTMLResponse:
    if not re.fullmatch(CONVERSATION_ID, conversation_id):  # a link with a stray character: no regex on the page
        message = "No call with this id. A conversation id is 1-128 letters, digits, _ or - (conv_...)."
        return page("error.html", 404, visitor=visitor, title="Not found", message=message)
    try:
        found = await run_in_threadpool(context.finder.details, conversation_id, may_listen=visitor.may_listen)
    except NotFound:
        return page("error.html", 404, visitor=visitor, title="Not found", message="No call with this id.")
    record = found.record
    conversation = views.Conversation([], [], [])
    if record.transcript_key:
        try:
            raw = await run_in_threadpool(context.blobs.get_bytes, record.transcript_key)
        except NotFound:
            message = "The call is indexed but its transcript file is missing: `callvault verify` reports it."
            return page("error.html", 404, visitor=visitor, title="Transcript missing", message=message)
        conversation = views.read_conversation(raw)
    memories: list[Any] = []
    if context.memories is not None and record.phone:
        memories = list(await run_in_threadpool(_memories, context, record.phone))
    return page(
        "call.html",
        visitor=visitor,
        nav="calls",
        call=record,
        conversation=conversation,
        transcript=found.transcript is not None,
        audio=found.audio is not None,
        audio_missing=_audio_missing(record) if visitor.may_listen and found.audio is None else None,
        memories=memories,
    )


def _audio_missing(record: CallRecord) -> str | None:
    """Why a call a key may listen to has no player: its audio is on its way, or retention deleted it."""
    if record.audio_version == AUDIO_EXPIRED:
        return "expired"
    return "waiting" if record.expects_audio else None


def _memories(context: ConsoleContext, phone: str) -> list[Any]:
    assert context.memories is not None
    try:
        return list(context.memories.list(phone, None, 50))
    except Exception:  # memory is an add-on: a Mem0 outage must not take the call page down
        return []


@router.get("/console/calls/{conversation_id}/audio")
async def call_audio(
    context: Context, visitor: SignedIn, conversation_id: Annotated[str, Path(pattern=CONVERSATION_ID)]
) -> Response:
    """The player's source: a fresh signed link (Range works there) for listen and admin; 403 for read."""
    if not visitor.may_listen:
        return page("error.html", 403, visitor=visitor, title="Forbidden", message="Your key may not play audio.")
    found = await run_in_threadpool(context.finder.details, conversation_id, may_listen=True)
    if found.audio is None:
        return page("error.html", 404, visitor=visitor, title="Not found", message="This call has no audio.")
    return RedirectResponse(found.audio.url, status_code=307, headers={"cache-control": "no-store"})


@router.get("/console/calls/{conversation_id}/transcript")
async def call_transcript(
    context: Context, visitor: SignedIn, conversation_id: Annotated[str, Path(pattern=CONVERSATION_ID)]
) -> Response:
    """The transcript download: a fresh signed link on every click, so a page open for longer than a
    link lives still downloads (the page's own link would have expired)."""
    try:
        found = await run_in_threadpool(context.finder.details, conversation_id, may_listen=False)
    except NotFound:
        return page("error.html", 404, visitor=visitor, title="Not found", message="No call with this id.")
    if found.transcript is None:
        return page("error.html", 404, visitor=visitor, title="Not found", message="This call has no transcript.")
    return RedirectResponse(found.transcript.url, status_code=307, headers={"cache-control": "no-store"})


@router.get("/console/callers/{phone}")
async def caller_page(request: Request, context: Context, visitor: SignedIn, phone: str) -> HTMLResponse:
    try:
        e164 = parse_phone(phone, context.default_region)
    except InvalidRequest as exc:
        return page("error.html", 400, visitor=visitor, title="Not a phone number", message=exc.message)
    found = await run_in_threadpool(context.finder.find, {"phone": e164}, None, 100)
    memories = await run_in_threadpool(_memories, context, e164) if context.memories is not None else []
    add_log_fields(request, phone=phone_domain.mask(e164), items=len(found.items))
    return page(
        "caller.html",
        visitor=visitor,
        nav="calls",
        phone=e164,
        calls=list(found.items),
        more=found.next_cursor is not None,
        memories=memories,
        memory_enabled=context.memories is not None,
    )


# -- dashboard and search ----------------------------------------------------------------------------


class _NotADay(ValueError):
    pass


def _day(label: str, value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        raise _NotADay(f"{label} is not a day: pick one in the field, or write it as 2025-07-06.") from None


def _period(request: Request) -> tuple[date | None, date | None]:
    """The From/To days of the dashboard's and the search's period forms (``since``/``until``), both
    included; ``_NotADay`` names the field that cannot be used, so no page answers for another period."""
    since = _day("From", request.query_params.get("since"))
    until = _day("To", request.query_params.get("until"))
    if since is not None and until is not None and until < since:
        raise _NotADay("To is before From: the period runs from the first day to the second, both included.")
    return since, until


@router.get("/console/dashboard")
async def dashboard_page(request: Request, context: Context, visitor: SignedIn) -> HTMLResponse:
    try:
        since, until = _period(request)
    except _NotADay as exc:  # never figures for a period other than the one asked for
        return page("dashboard.html", 400, visitor=visitor, nav="dashboard", unavailable=False, invalid=str(exc))
    if context.reports is None:
        return page("dashboard.html", visitor=visitor, nav="dashboard", unavailable=True, since=since, until=until)
    args = ReportArgs(since=since, until=until)
    try:
        per_day = await run_in_threadpool(context.reports.run, "calls-per-day", args)
        agents = await run_in_threadpool(context.reports.run, "success-rate", args)
        criteria = await run_in_threadpool(context.reports.run, "criteria", args)
    except StorageUnavailable as exc:  # Athena failed or took too long: say so, keep the page
        add_log_fields(request, error_code=exc.code)
        return page(
            "dashboard.html",
            503,
            visitor=visitor,
            nav="dashboard",
            unavailable=False,
            failed=exc.message,
            engine=context.reports.engine_name,
            since=since,
            until=until,
        )
    return page(
        "dashboard.html",
        visitor=visitor,
        nav="dashboard",
        unavailable=False,
        engine=context.reports.engine_name,
        since=since,
        until=until,
        chart=views.per_day_chart(per_day.dicts()),
        agents=views.rate_rows(
            agents.dicts(),
            label_keys=("agent_name", "agent_id"),
            rate_key="success_rate",
            count_keys=("successful", "failed"),
        ),
        criteria=views.rate_rows(
            criteria.dicts(), label_keys=("criteria_id",), rate_key="pass_rate", count_keys=("passed", "failed")
        ),
    )


@router.get("/console/search")
async def search_page(request: Request, context: Context, visitor: SignedIn) -> HTMLResponse:
    asked = (request.query_params.get("q") or "").strip()
    q = asked[:100]  # shown back in the field; searched only when it is all of what was asked
    cursor = request.query_params.get("cursor") or None
    matches: list[dict[str, Any]] = []
    error, status = None, 200
    since = until = after = None
    next_url = first_url = None
    try:
        since, until = _period(request)
        after = TurnPosition.parse(cursor) if cursor else None
    except _NotADay as exc:  # never hits from a period other than the one asked for
        error, status = str(exc), 400
    except ValueError:  # a page link edited by hand
        error, status = "This page link is not valid: search again to start from the newest hits.", 400
    if q and error is None:
        if context.reports is None:
            error, status = "Search over transcripts needs the analytics engine, which is not configured here.", 400
        elif len(q) < 2:
            error, status = "Type at least 2 characters.", 400
        elif len(asked) > len(q):
            error, status = "Type at most 100 characters: a few distinctive words find the turns.", 400
        else:
            args = ReportArgs(since=since, until=until, keyword=q, after=after)
            try:
                found = await run_in_threadpool(keyword_page, context.reports.run, args, HITS_PER_PAGE)
            except StorageUnavailable as exc:  # Athena failed or took too long
                error = f"The search did not finish ({exc.message}). Try again, or search for rarer words."
                status = 503
            else:
                matches = [{**row, "parts": _highlight(str(row["text"]), q)} for row in found.rows]
                searched = "/console/search?" + urlencode(
                    {"q": q, **{name: day.isoformat() for name, day in (("since", since), ("until", until)) if day}}
                )
                next_url = f"{searched}&cursor={found.next.token()}" if found.next else None
                first_url = searched if after else None
    add_log_fields(request, searched=bool(q), paged=cursor is not None, items=len(matches))
    return page(
        "search.html",
        status,
        visitor=visitor,
        nav="search",
        q=q,
        since=since,
        until=until,
        matches=matches,
        next_url=next_url,
        first_url=first_url,
        error=error,
        engine=context.reports.engine_name if context.reports else None,
    )


def _highlight(text: str, keyword: str) -> list[tuple[str, bool]]:
    """``text`` cut into (part, is_match) pieces; the template escapes each part."""
    # Matched in the text itself: lowering first would shift positions ("İ".lower() is two characters).
    parts: list[tuple[str, bool]] = []
    at = 0
    for found in re.finditer(re.escape(keyword), text, re.IGNORECASE) if keyword else ():
        parts.append((text[at : found.start()], False))
        parts.append((found.group(), True))
        at = found.end()
    parts.append((text[at:], False))
    return [p for p in parts if p[0]]


templates.globals["ROLES"] = ROLES

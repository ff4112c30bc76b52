"""Records every transcript or audio access in the audit trail: a link issued (``GET /calls/{id}``,
``/calls/{id}/audio``), a signed file downloaded, a call shown in the console, a transcript search.

An ASGI middleware over the composed app, so the search and console routes need not know about the
audit: when a response to one of these routes starts with a success status, the entry is written
first, with the key id the route's auth put in the request's log fields. If it cannot be written,
the exception ends the request before the response is sent: no access goes unrecorded.

Only real accesses are recorded: a request whose auth named no key or IAM caller (a console page
answering with the sign-in redirect) and a signed link that did not serve its file are not, so nobody can fill the
trail with entries by requesting audited routes without a key.
"""

from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.domain.phone import mask
from services.web.edge import LOG_FIELDS

from .audit import Auditor

LINKS_REMEMBERED = 10_000  # links whose later uses are not recorded again (one serve process's)

# route template -> action
AUDITED_ROUTES = {
    "/calls/{conversation_id}": "link_issued",
    "/calls/{conversation_id}/audio": "audio_link_issued",
    "/files/{key:path}": "file_download",
    "/console/calls/{conversation_id}": "console_view",
    "/console/calls/{conversation_id}/audio": "console_audio",
    "/console/calls/{conversation_id}/transcript": "console_transcript",
    "/console/callers/{phone}": "console_caller_view",  # a caller's calls, summaries and memories
    # Keyword search answers with transcript turns of many calls: recorded without naming them (the
    # query is not kept either: it may be a name or a number).
    "/search": "transcript_search",
    "/console/search": "transcript_search",
    "/callers/{phone}/memories": "memory_read",  # what was learnt from a caller's transcripts
}


class AccessAuditMiddleware:
    def __init__(self, app: ASGIApp, auditor: Auditor) -> None:
        self.app = app
        self.auditor = auditor
        # Signatures of links that served a file already, newest last. Bounded: a link forgotten
        # here is recorded again on its next use (an extra entry, never a missing one).
        self._links_used: OrderedDict[str, None] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._record(scope, message["status"])
            await send(message)

        await self.app(scope, receive, audited_send)

    def _record(self, scope: Scope, status: int) -> None:
        route = getattr(scope.get("route"), "path", None)
        action = AUDITED_ROUTES.get(route or "")
        if action is None or status >= 400:
            return
        if action == "transcript_search" and not _query_value(scope, "q"):
            return  # the console's search page opened empty: nothing was searched
        fields = scope.get("state", {}).get(LOG_FIELDS, {})
        # A signed link's signature is its credential: only a file served counts (a HEAD sends no bytes).
        served = status in (200, 206) and scope.get("method") == "GET"
        # A key's id, or on an IAM-authenticated stack the caller's ARN that API Gateway verified.
        credential = fields.get("key_id") or fields.get("caller")
        actor = ("signed-link" if served else None) if action == "file_download" else credential
        if not actor:
            return
        signature = _query_value(scope, "signature") if action == "file_download" else ""
        if signature in self._links_used:
            self._links_used.move_to_end(signature)
            return  # the same link again: a player's seeks and resumed downloads are one access
        params: dict[str, Any] = scope.get("path_params", {})
        conversation_id = params.get("conversation_id")
        if conversation_id is None and isinstance(params.get("key"), str):  # {phone}/{id}.json|.mp3
            conversation_id = params["key"].rsplit("/", 1)[-1].split(".", 1)[0]
        detail = {"phone": mask(params["phone"])} if isinstance(params.get("phone"), str) else {}
        self.auditor.record(action, str(actor), [conversation_id] if conversation_id else [], detail)
        if signature:  # only once recorded: a failed write leaves the next use to record it
            self._links_used[signature] = None
            if len(self._links_used) > LINKS_REMEMBERED:
                self._links_used.popitem(last=False)


def _query_value(scope: Scope, name: str) -> str:
    """The value the route reads: of a repeated parameter the last, as Starlette and FastAPI take it (the
    first let ``?q=+&q=Maria`` search for Maria unrecorded, as if the search form had been opened empty)."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True).get(name, [])
    return values[-1].strip() if values else ""

"""Records every transcript or audio access in the audit trail: a link issued (``GET /calls/{id}``,
``/calls/{id}/audio``), a signed file downloaded, a call shown in the console, a transcript search.

An ASGI middleware over the composed app, so the search and console routes need not know about the
audit: when a response to one of these routes starts with a success status, the entry is written
first, with the key id the route's auth put in the request's log fields. If it cannot be written,
the exception ends the request before the response is sent: no access goes unrecorded.
"""

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.domain.phone import mask
from services.web.edge import LOG_FIELDS

from .audit import Auditor

# route template -> action
AUDITED_ROUTES = {
    "/calls/{conversation_id}": "link_issued",
    "/calls/{conversation_id}/audio": "audio_link_issued",
    "/files/{key:path}": "file_download",
    "/console/calls/{conversation_id}": "console_view",
    "/console/calls/{conversation_id}/audio": "console_audio",
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                self._record(scope)
            await send(message)

        await self.app(scope, receive, audited_send)

    def _record(self, scope: Scope) -> None:
        route = getattr(scope.get("route"), "path", None)
        action = AUDITED_ROUTES.get(route or "")
        if action is None:
            return
        params: dict[str, Any] = scope.get("path_params", {})
        conversation_id = params.get("conversation_id")
        if conversation_id is None and isinstance(params.get("key"), str):  # {phone}/{id}.json|.mp3
            conversation_id = params["key"].rsplit("/", 1)[-1].split(".", 1)[0]
        detail = {"phone": mask(params["phone"])} if isinstance(params.get("phone"), str) else {}
        fields = scope.get("state", {}).get(LOG_FIELDS, {})
        actor = str(fields.get("key_id") or ("signed-link" if action == "file_download" else "unknown"))
        self.auditor.record(action, actor, [conversation_id] if conversation_id else [], detail)

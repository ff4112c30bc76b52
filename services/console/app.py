"""``mount_console``: the console's pages, its static files and its sign-in flow on an existing app."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from services.core.ports import BlobStore
from services.web.auth import ApiKeys

from .ports import CallFinder, MemoryReader, Reports
from .session import SessionCodec

STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class ConsoleContext:
    finder: CallFinder
    blobs: BlobStore
    api_keys: ApiKeys
    sessions: SessionCodec
    default_region: str = "US"
    reports: Reports | None = None
    memories: MemoryReader | None = None
    clock: Callable[[], float] = field(default=time.time)


class ConsoleStaticFiles(StaticFiles):
    """The console's scripts and styles: kept by the browser and revalidated on each page (a 304 by
    ETag), so an upgrade is seen at once without downloading them on every page. The edge's default
    for everything else is ``no-store``."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["cache-control"] = "no-cache"
        return response


class SignInRequired(Exception):
    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def mount_console(app: FastAPI, context: ConsoleContext) -> None:
    from urllib.parse import quote

    from . import router

    app.state.console = context
    app.include_router(router.router)
    app.mount("/console/static", ConsoleStaticFiles(directory=STATIC), name="console-static")

    @app.exception_handler(SignInRequired)
    async def to_sign_in(request: Request, exc: SignInRequired) -> RedirectResponse:
        return RedirectResponse(f"/console/signin?next={quote(exc.next_path, safe='/')}", status_code=303)

    _errors_as_pages(app)


# Titles of the console's error pages, by status; the message is the error's own.
_TITLES = {400: "Not understood", 403: "Forbidden", 404: "Not found", 405: "Not here", 422: "Not understood"}
# The router's own refusals carry only the status's name ("Not Found"): say what to do instead.
_ROUTING_MESSAGES = {
    404: "There is no console page at this address. Check the link, or start again from the calls.",
    405: "This address is for a form to send, not a page to open: go back and use the form's button.",
}


def _errors_as_pages(app: FastAPI) -> None:
    """Under ``/console/`` an error is a page with a way back, not the API's JSON envelope: the
    app's handlers stay for every other path and give the status and the message."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    from services.core.domain.errors import CallVaultError

    from .router import error_page_visitor, page

    for kind in (CallVaultError, HTTPException, RequestValidationError):
        api_handler = app.exception_handlers[kind]

        async def console_or_api(request: Request, exc: Exception, api_handler: Any = api_handler) -> Response:
            answer: Response = await api_handler(request, exc)
            path = request.url.path
            if not path.startswith("/console/") or path.startswith("/console/static/") or answer.status_code < 400:
                return answer
            message = _message(answer.body if isinstance(answer.body, bytes) else b"")
            if isinstance(exc, HTTPException) and exc.detail == HTTPStatus(exc.status_code).phrase:
                message = _ROUTING_MESSAGES.get(exc.status_code, message)
            title = _TITLES.get(answer.status_code, "Something went wrong")
            # With the header of whoever is signed in: the way to sign out or to another page stays.
            return page(
                "error.html", answer.status_code, visitor=error_page_visitor(request), title=title, message=message
            )

        app.add_exception_handler(kind, console_or_api)


def _message(body: bytes) -> str:
    import orjson

    try:
        message = orjson.loads(body)["error"]["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "This page cannot be shown."
    return str(message)

"""``mount_console``: the console's pages, its static files and its sign-in flow on an existing app."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
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

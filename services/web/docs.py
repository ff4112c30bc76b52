"""Swagger UI served by CallVault itself, so ``/docs`` works on a machine without the internet.

FastAPI's own ``/docs`` page loads Swagger UI from a CDN; offline it is a blank page
(``SwaggerUIBundle is not defined``). The assets come from the ``fastapi-offline`` wheel, pinned in
pyproject.toml (Swagger UI 5, which reads OpenAPI 3.1): only its three static files are used, served
by the routes below; its ``FastAPIOffline`` factory is not.
"""

import importlib.resources
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from services.core.domain.errors import NotFound

ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}


def install_offline_docs(app: FastAPI, docs_url: str = "/docs") -> None:
    """``GET docs_url`` (the Swagger UI page) and ``GET docs_url/assets/{name}``; the app must be made
    with ``docs_url=None`` so FastAPI does not add its CDN page."""
    folder = importlib.resources.files("fastapi_offline") / "static"
    assets = f"{docs_url}/assets"
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(docs_url, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(assets + "/{name}", include_in_schema=False)
    def swagger_asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise NotFound("no such documentation asset")
        return Response(
            (folder / name).read_bytes(),
            media_type=media_type,
            headers={"cache-control": "public, max-age=86400"},
        )

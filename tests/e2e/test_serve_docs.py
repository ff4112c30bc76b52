"""`/docs` of the real `callvault serve` works without the internet (issue #14): Swagger UI's files come
from the server itself, and a browser that may reach nothing but the server renders the operations."""

from pathlib import Path
from typing import Any

import httpx
import pytest

from services.web.docs import ASSETS
from tests.e2e.browser import browser  # noqa: F401  (a fixture)
from tests.support import serve_archive

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_docs_page_and_its_assets_come_from_the_server(tmp_path: Path) -> None:
    with serve_archive(tmp_path / "data") as served:
        page = httpx.get(served.url + "/docs")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "/docs/assets/swagger-ui-bundle.js" in page.text and "/docs/assets/swagger-ui.css" in page.text
        assert "cdn." not in page.text and "https://" not in page.text.split("<body>")[0]
        for name, media_type in ASSETS.items():
            asset = httpx.get(served.url + f"/docs/assets/{name}")
            assert asset.status_code == 200 and asset.headers["content-type"] == media_type, name
        assert "SwaggerUIBundle" in httpx.get(served.url + "/docs/assets/swagger-ui-bundle.js").text
        missing = httpx.get(served.url + "/docs/assets/..%2Fapi-key")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


@pytest.mark.browser
def test_docs_render_offline_in_a_browser(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    with serve_archive(tmp_path / "data") as served:
        context = browser.new_context()
        outside: list[str] = []

        def only_the_server(route: Any) -> None:
            if route.request.url.startswith(served.url):
                route.continue_()
            else:  # offline: every other host is unreachable
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", only_the_server)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(served.url + "/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=15_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert any(p.strip() == "/calls" for p in paths), paths
        assert errors == [] and outside == []
        context.close()

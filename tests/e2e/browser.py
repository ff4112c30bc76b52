"""Headless Chromium for the console's browser tests: Debian's ``chromium-headless-shell`` driven by
Playwright (whose own browser download cannot be used offline), plus axe-core for accessibility.

A missing browser skips the browser tests on a developer's machine, with how to install it, and
fails them in CI (``CI`` set): ``make test`` installs the browser first where it can.
"""

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

AXE = Path(__file__).parent.parent / "vendor" / "axe-core" / "axe.min.js"
AXE_SHA256 = "e9e5863c33a874f09bc01acd9234b7e3c871479f5eef8802fa582544465e6d01"
INSTALL = "apt-get install -y chromium-headless-shell (as root), or set CALLVAULT_CHROMIUM to a Chromium binary"


def chromium_path() -> str:
    found = os.environ.get("CALLVAULT_CHROMIUM") or shutil.which("chromium-headless-shell")
    if found:
        return found
    message = f"no headless Chromium for the browser tests: {INSTALL} (`make test` does this where it can)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message + "; in CI the browser must be installed")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, args=["--autoplay-policy=no-user-gesture-required"]
        )
        try:
            yield launched
        finally:
            launched.close()


def axe_violations(page: Any) -> list[str]:
    """Serious and critical axe-core violations on the page, one readable line each."""
    assert hashlib.sha256(AXE.read_bytes()).hexdigest() == AXE_SHA256, "tests/vendor/axe-core/axe.min.js changed"
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v.get("impact") in {"serious", "critical"}
    ]


LAYOUT_SHIFT = """() => new Promise(resolve => {
  let total = 0;
  new PerformanceObserver(list => { for (const e of list.getEntries()) if (!e.hadRecentInput) total += e.value; })
    .observe({type: 'layout-shift', buffered: true});
  setTimeout(() => resolve(total), 0);
})"""


def layout_shift(page: Any) -> float:
    """The page's cumulative layout shift since it loaded (0: nothing moved)."""
    return float(page.evaluate(LAYOUT_SHIFT))

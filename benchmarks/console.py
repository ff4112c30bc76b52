"""The review console's speed goals (issue #12), against the real `callvault serve` over loopback.

    .venv/bin/python benchmarks/console.py                      # 100,000 calls, 300 requests per page
    .venv/bin/python benchmarks/console.py --requests 1000 --save --check

Setup: the 100,000-call archive of ``search_latency.py`` (index rows written straight into the SQLite
index the adapter created, one small transcript object per call; kept under --data-root and reused),
then one generated 161-turn call (``long_call.py``, ~250 KB) sent through the signed webhook of the
running server. A session is opened through the sign-in form, as a browser does.

Measured:
- **server time** of ``GET /console/calls`` (the newest 50), of filtered pages (a phone as typed, an
  agent, status + outcome, a two-week range, the second page through the cursor) and of the call page
  of the 161-turn call: sequential keep-alive requests from this process, p50/p95/p99 after a warm-up.
  Loopback round trips, so an upper bound of the time spent in the server;
- **first contentful paint** of the calls page and of the call page in headless Chromium
  (``chromium-headless-shell`` through Playwright, as in tests/e2e), each a fresh load in a signed-in
  context, from the browser's ``paint`` entries;
- **JavaScript + CSS shipped**: every file under services/console/static, and what each page loads
  (the browser's resource entries, decoded bytes).

Goals: calls pages p95 < 50 ms, call page (161 turns) < 100 ms, FCP < 500 ms, JS + CSS < 150 KB.
"""

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from long_call import LongCall  # noqa: E402
from search_latency import AGENTS, API_KEY, generate, start_server, typed  # noqa: E402

from services.core.domain import signing  # noqa: E402

ROOT = BENCH_DIR.parent
STATIC = ROOT / "services" / "console" / "static"
WEBHOOK_SECRET = "wsec_benchmark"  # noqa: S105 - not a secret: what search_latency.start_server configures
LONG_ID = "conv_console_bench_long161"
LONG_PHONE = "+16125550161"
LONG_TURNS = 161
GOAL_PAGE_P95_MS = 50.0
GOAL_CALL_MS = 100.0
GOAL_FCP_MS = 500.0
GOAL_ASSET_BYTES = 150 * 1024
SEED = 20261205


def git_commit() -> str:
    """HEAD (and whether services/ differs from it); in an exported tree (``git archive``), its BENCH_COMMIT file."""
    if (ROOT / "BENCH_COMMIT").is_file():
        return (ROOT / "BENCH_COMMIT").read_text().strip() + " (exported tree)"
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "services"], capture_output=True, text=True, cwd=ROOT)
    return head.stdout.strip() + (" (services/ dirty)" if dirty.stdout.strip() else "")


def summary(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 2)

    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": pick(0.95),
        "p99_ms": pick(0.99),
        "max_ms": round(ordered[-1], 2),
    }


def send_long_call(url: str) -> None:
    body = LongCall.build(seed=7, turns=LONG_TURNS, target_bytes=252_000).render(
        LONG_ID, LONG_PHONE, started_at=int(time.time()) - 3600
    )
    headers = {signing.HEADER: signing.sign(body, WEBHOOK_SECRET, int(time.time())), "content-type": "application/json"}
    response = httpx.post(url + "/webhooks/elevenlabs", content=body, headers=headers, timeout=30)
    response.raise_for_status()
    # Let serve's caller-memory worker finish with this call first: its CPU is not the console's.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        call = httpx.get(url + f"/calls/{LONG_ID}", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
        if call.json().get("memory_status") not in (None, "pending"):
            return
        time.sleep(0.5)
    raise RuntimeError("the long call's memory job did not finish in 300 s")


def sign_in(client: httpx.Client) -> None:
    form = client.get("/console/signin")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token, "no CSRF token on the sign-in page"
    done = client.post("/console/signin", data={"csrf": token.group(1), "key": API_KEY, "next": "/console/calls"})
    assert done.status_code == 303 and "cv_session" in client.cookies, done.text[:300]


def second_page(client: httpx.Client) -> str:
    first = client.get("/console/calls")
    found = re.search(r'href="(/console/calls\?cursor=[^"]+)" rel="next"', first.text)
    assert found, "no next page link"
    return found.group(1).replace("&amp;", "&")


def page_targets(phones: list[str], cursor_url: str) -> dict[str, list[str]]:
    rng = random.Random(SEED)
    return {
        "calls (newest 50)": ["/console/calls"],
        "filtered: phone as typed": [
            "/console/calls?" + httpx.QueryParams({"phone": typed(phones[rng.randrange(len(phones))])}).__str__()
            for _ in range(200)
        ],
        "filtered: agent": [f"/console/calls?agent_id={a}" for a in AGENTS],
        "filtered: status + outcome": ["/console/calls?status=failed&call_successful=failure"],
        "filtered: two weeks": ["/console/calls?since=2025-06-01&until=2025-06-15"],
        "page 2 (cursor)": [cursor_url],
        f"call page, {LONG_TURNS} turns": [f"/console/calls/{LONG_ID}"],
    }


def time_pages(client: httpx.Client, targets: dict[str, list[str]], requests: int, warmup: int) -> dict[str, Any]:
    rng = random.Random(SEED + 1)
    results = {}
    for name, urls in targets.items():
        for i in range(warmup):
            assert client.get(urls[i % len(urls)]).status_code == 200
        samples = []
        for _ in range(requests):
            target = urls[rng.randrange(len(urls))]
            t0 = time.perf_counter()
            response = client.get(target)
            samples.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, (target, response.status_code)
        results[name] = summary(samples) | {"bytes": len(response.content)}
    return results


def chromium() -> str:
    found = os.environ.get("CALLVAULT_CHROMIUM") or shutil.which("chromium-headless-shell")
    if not found:
        raise SystemExit("no headless Chromium: apt-get install -y chromium-headless-shell, or set CALLVAULT_CHROMIUM")
    return found


FCP = """() => new Promise(resolve => {
  new PerformanceObserver(list => {
    for (const e of list.getEntries()) if (e.name === 'first-contentful-paint') resolve(e.startTime);
  }).observe({type: 'paint', buffered: true});
  setTimeout(() => resolve(null), 5000);
})"""


def browser_figures(url: str, loads: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium())
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(url + "/console/signin")
            page.get_by_label("API key").fill(API_KEY)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/console/calls")
            for name, path in (("calls", "/console/calls"), ("call", f"/console/calls/{LONG_ID}")):
                fcps, assets = [], {}
                for _ in range(loads):
                    fresh = context.new_page()  # a new page each time: nothing painted yet
                    fresh.goto(url + path, wait_until="load")
                    fcp = fresh.evaluate(FCP)
                    assert fcp is not None, f"no first-contentful-paint entry for {path}"
                    fcps.append(float(fcp))
                    assets = {
                        e["name"].split("/console/static/")[-1].split("?")[0]: e["decodedBodySize"]
                        for e in fresh.evaluate(
                            "() => performance.getEntriesByType('resource').map(e => "
                            "({name: e.name, decodedBodySize: e.decodedBodySize}))"
                        )
                        if "/console/static/" in e["name"]
                    }
                    fresh.close()
                out[name] = {"fcp": summary(fcps), "assets": assets, "asset_bytes": sum(assets.values())}
        finally:
            browser.close()
    return out


def static_bytes() -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(STATIC.iterdir()) if p.suffix in {".js", ".css"}}


def report(result: dict[str, Any]) -> list[str]:
    lines = [
        "| page | p50 ms | p95 ms | p99 ms | max ms | HTML bytes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in result["pages"].items():
        lines.append(
            f"| {name} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} "
            f"| {r['bytes']:,} |"
        )
    lines += ["", "| browser (headless Chromium, loopback) | FCP p50 ms | FCP p95 ms | max ms | JS + CSS loaded |"]
    lines += ["|---|---:|---:|---:|---|"]
    for name, r in result["browser"].items():
        assets = ", ".join(f"{k} {v:,} B" for k, v in sorted(r["assets"].items()))
        lines.append(
            f"| {name} | {r['fcp']['p50_ms']:.0f} | {r['fcp']['p95_ms']:.0f} | {r['fcp']['max_ms']:.0f} | {assets} |"
        )
    total = sum(result["static"].values())
    files = ", ".join(f"{k} {v:,} B" for k, v in result["static"].items())
    lines += ["", f"JavaScript + CSS under services/console/static: {total:,} bytes ({files})"]
    return lines


def check(result: dict[str, Any]) -> list[str]:
    missed = []
    for name, r in result["pages"].items():
        goal = GOAL_CALL_MS if name.startswith("call page") else GOAL_PAGE_P95_MS
        if r["p95_ms"] >= goal:
            missed.append(f"{name}: p95 {r['p95_ms']} ms >= {goal}")
    for name, r in result["browser"].items():
        if r["fcp"]["p95_ms"] >= GOAL_FCP_MS:
            missed.append(f"FCP {name}: p95 {r['fcp']['p95_ms']} ms >= {GOAL_FCP_MS}")
    if sum(result["static"].values()) >= GOAL_ASSET_BYTES:
        missed.append(f"JS + CSS {sum(result['static'].values())} bytes >= {GOAL_ASSET_BYTES}")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000, help="calls in the index [100000]")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per page (50-20000) [300]")
    parser.add_argument("--warmup", type=int, default=30, help="untimed requests per page first (0-5000) [30]")
    parser.add_argument("--loads", type=int, default=20, help="browser loads per page for FCP (1-200) [20]")
    parser.add_argument("--data-root", type=Path, default=ROOT / "benchmarks" / "results", help="generated data")
    parser.add_argument("--save", action="store_true", help="also write JSON to benchmarks/results/")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()
    if not 50 <= args.requests <= 20_000 or not 0 <= args.warmup <= 5000 or not 1 <= args.loads <= 200:
        parser.error("--requests, --warmup or --loads out of bounds")
    if not 1000 <= args.calls <= 1_000_000:
        parser.error("--calls must be between 1,000 and 1,000,000")
    data_dir = args.data_root / f"search-{args.calls}"  # shared with search_latency.py
    t0 = time.perf_counter()
    phones, _ids = generate(data_dir, args.calls)
    setup_s = time.perf_counter() - t0
    load_before = os.getloadavg()[0]
    process, url = start_server(data_dir)
    try:
        send_long_call(url)
        with httpx.Client(base_url=url, timeout=30) as client:
            sign_in(client)
            pages = time_pages(client, page_targets(phones, second_page(client)), args.requests, args.warmup)
        browser = browser_figures(url, args.loads)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    result = {
        "commit": git_commit(),
        "calls": args.calls,
        "setup_s": round(setup_s, 1),
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "pages": pages,
        "browser": browser,
        "static": static_bytes(),
    }
    table = report(result)
    print("\n".join(table))
    print(
        f"\ncommit {result['commit']}, {args.calls:,} calls, Python {platform.python_version()}"
        f" on {os.cpu_count()} CPUs,"
        f" load average (1 min) {result['load_1min'][0]} -> {result['load_1min'][1]}"
    )
    missed = check(result)
    for line in missed:
        print("goal missed:", line)
    if args.save:
        out = ROOT / "benchmarks" / "results" / f"console-{int(time.time())}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"result": result, "table": table, "missed": missed}, indent=2))
        print(f"saved {out}")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())

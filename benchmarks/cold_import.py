"""Cold import time of a Lambda entry module, in fresh interpreters (what a cold start pays to import it).

    .venv/bin/python benchmarks/cold_import.py                          # services.ingest.handler, goal 300 ms
    .venv/bin/python benchmarks/cold_import.py services.search.handler  # goal 500 ms
    .venv/bin/python benchmarks/cold_import.py some.module --goal-ms 200 --runs 9 --save
    # what an AWS cold start has imported by the end of its first invocation (adapters load lazily):
    .venv/bin/python benchmarks/cold_import.py services.ingest.handler \
        services.core.adapters.s3_blob_store services.core.adapters.dynamo_call_index

Two measurements, each the median of --runs fresh subprocesses (one untimed run first, so bytecode
caches are warm, as in a deployed package that ships .pyc files):
- ``python -X importtime -c "import MODULE[, MODULE...]"``: the cumulative time of the top-level imports that the
  statement triggers (the module, its parent packages, and everything they import), excluding what
  the interpreter had already imported at start-up; plus the ten heaviest imports by self time and
  by cumulative time;
- wall time of ``python -c "import MODULE"`` minus wall time of ``python -c "pass"``.
"""

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOALS_MS = {"services.ingest.handler": 300.0, "services.search.handler": 500.0}
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S.*)$")


@dataclass(frozen=True)
class ImportLine:
    module: str
    depth: int
    self_us: int
    cumulative_us: int


def child_env() -> dict[str, str]:
    # No CALLVAULT_* settings and no PYTHON* tweaks from the caller's shell: a clean, repeatable child.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLVAULT_", "PYTHON"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


def importtime(code: str) -> list[ImportLine]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"`{code}` failed:\n{done.stderr[-4000:]}")
    lines = []
    for raw in done.stderr.splitlines():
        match = _LINE.match(raw)
        if match:
            self_us, cumulative_us, indent, module = match.groups()
            lines.append(ImportLine(module.strip(), len(indent) // 2, int(self_us), int(cumulative_us)))
    return lines


def wall_s(code: str) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=child_env(), check=True, timeout=60, capture_output=True)
    return time.perf_counter() - began


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cold import time of a module, in fresh interpreters.")
    parser.add_argument(
        "modules",
        nargs="*",
        default=["services.ingest.handler"],
        metavar="MODULE",
        help="imported together in one statement; the goal is the first one's [services.ingest.handler]",
    )
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per measurement (3-25) [7]")
    parser.add_argument("--goal-ms", type=float, default=None, help="goal [300 for ingest, 500 for search]")
    parser.add_argument("--top", type=int, default=10, help="heaviest imports to list (1-50) [10]")
    parser.add_argument("--save", action="store_true", help="also write JSON to benchmarks/results/")
    parser.add_argument("--check", action="store_true", help="exit 1 when the goal is missed")
    args = parser.parse_args(argv)
    if not 3 <= args.runs <= 25 or not 1 <= args.top <= 50:
        parser.error("--runs must be 3-25 and --top 1-50")
    if not args.modules or not all(re.fullmatch(r"[A-Za-z_][\w.]*", m) for m in args.modules):
        parser.error("modules must be dotted module names")
    goal = args.goal_ms if args.goal_ms is not None else GOALS_MS.get(args.modules[0])
    if len(args.modules) > 1 and args.goal_ms is None:
        goal = None  # the goals are for the entry module alone
    statement = "import " + ", ".join(args.modules)
    label = " + ".join(args.modules)
    load_before = os.getloadavg()

    baseline = {line.module for line in importtime("pass")}  # what start-up (site, encodings...) imports
    importtime(statement)  # untimed: compiles and caches bytecode
    totals: list[float] = []
    self_ms: dict[str, list[float]] = defaultdict(list)
    cumulative_ms: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.runs):
        lines = importtime(statement)
        fresh = [line for line in lines if line.module not in baseline]
        totals.append(sum(line.cumulative_us for line in fresh if line.depth == 0) / 1000)
        for line in fresh:
            self_ms[line.module].append(line.self_us / 1000)
            cumulative_ms[line.module].append(line.cumulative_us / 1000)
    walls_import, walls_pass = [], []
    for _ in range(args.runs):  # interleaved, so drifting machine load hits both alike
        walls_import.append(wall_s(statement))
        walls_pass.append(wall_s("pass"))
    load_after = os.getloadavg()

    median_total = statistics.median(totals)
    wall_delta_ms = (statistics.median(walls_import) - statistics.median(walls_pass)) * 1000
    by_self = sorted(self_ms, key=lambda m: statistics.median(self_ms[m]), reverse=True)[: args.top]
    itself_and_parents = {".".join(m.split(".")[:i]) for m in args.modules for i in range(1, len(m.split(".")) + 1)}
    by_cumulative = sorted(
        (m for m in cumulative_ms if m not in itself_and_parents),
        key=lambda m: statistics.median(cumulative_ms[m]),
        reverse=True,
    )[: args.top]

    date = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(f"\n## cold import of `{label}` ({date})\n")
    print(f"{os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}; ", end="")
    print(f"{args.runs} runs each; load avg before {load_before[0]:.2f}, after {load_after[0]:.2f}\n")
    print("| measurement | median | min | max |")
    print("|---|---:|---:|---:|")
    print(f"| -X importtime cumulative (ms) | {median_total:.1f} | {min(totals):.1f} | {max(totals):.1f} |")
    deltas = [(a - b) * 1000 for a, b in zip(walls_import, walls_pass, strict=True)]
    print(f"| wall: import minus `pass` (ms) | {wall_delta_ms:.1f} | {min(deltas):.1f} | {max(deltas):.1f} |")
    print(f"| wall: `python -c pass` (ms) | {statistics.median(walls_pass) * 1000:.1f} | | |")
    if goal is not None:
        met = median_total < goal
        print(f"\ngoal < {goal:.0f} ms: {'met' if met else '**MISSED**'} ({median_total:.1f} ms)")
    print(f"\nheaviest {args.top} imports by self time (median ms; cumulative includes what each imports):\n")
    print("| module | self ms | cumulative ms |")
    print("|---|---:|---:|")
    for module in by_self:
        print(
            f"| {module} | {statistics.median(self_ms[module]):.1f} | {statistics.median(cumulative_ms[module]):.1f} |"
        )
    print(f"\nheaviest {args.top} imports by cumulative time (the module and its own parents left out):\n")
    print("| module | cumulative ms | self ms |")
    print("|---|---:|---:|")
    for module in by_cumulative:
        median_cumulative = statistics.median(cumulative_ms[module])
        print(f"| {module} | {median_cumulative:.1f} | {statistics.median(self_ms[module]):.1f} |")

    if args.save:
        results = ROOT / "benchmarks" / "results"
        results.mkdir(parents=True, exist_ok=True)
        name = args.modules[0] + (f"+{len(args.modules) - 1}" if len(args.modules) > 1 else "")
        out = results / f"cold_import-{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
        report = {
            "date": date,
            "modules": args.modules,
            "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()},
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "runs": args.runs,
            "importtime_cumulative_ms": {"median": median_total, "all": totals},
            "wall_delta_ms": wall_delta_ms,
            "goal_ms": goal,
            "top_self_ms": {m: statistics.median(self_ms[m]) for m in by_self},
            "top_cumulative_ms": {m: statistics.median(cumulative_ms[m]) for m in by_cumulative},
        }
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {out.relative_to(ROOT)}")
    return 1 if args.check and goal is not None and median_total >= goal else 0


if __name__ == "__main__":
    sys.exit(main())

"""The Lambda packaging of memory: which packages each function may import.

Run in a fresh interpreter whose imports are limited to the distributions a function gets on Lambda
(the runtime layer, plus the memory layer for the memory functions), so a missing package fails here
rather than at the first cold start.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "infra" / "layers" / "runtime" / "requirements.txt"
MEMORY = ROOT / "infra" / "layers" / "memory" / "requirements.txt"

PROBE = r"""
import importlib.abc, importlib.metadata, re, sys
allowed_dists = set(sys.argv[1].split(","))
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
tops = {top for top, dists in importlib.metadata.packages_distributions().items()
        if any(norm(d) in allowed_dists for d in dists)}
tops |= {"services", "tests"} | set(sys.stdlib_module_names) | set(sys.builtin_module_names)

class LambdaOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.split(".")[0]
        if top not in tops and not top.startswith("_"):
            raise ModuleNotFoundError(f"{name} is not in this function's layers", name=name)
        return None

sys.meta_path.insert(0, LambdaOnly())
for module in sys.argv[2:]:
    __import__(module)
print("ok")
"""


def _dists(*files: Path) -> list[str]:
    names = []
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            line = line.split("#")[0].strip()
            if line:
                names.append(line.split("==")[0].strip().lower().replace("_", "-"))
    return names


def _probe(dists: list[str], *modules: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEM0_", "CALLVAULT_"))}
    env["MEM0_TELEMETRY"] = "False"
    return subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(dists), *modules],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(not RUNTIME.exists(), reason="the runtime layer's requirements are not in this checkout")
def test_the_memory_functions_import_with_the_runtime_and_memory_layers_only() -> None:
    done = _probe(
        _dists(RUNTIME, MEMORY),
        "services.memory.handler",
        "services.memory.api_handler",
        "mem0",
        "services.memory.mem0_platform",
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.skipif(not RUNTIME.exists(), reason="the runtime layer's requirements are not in this checkout")
def test_what_ingest_needs_to_enqueue_imports_with_the_runtime_layer_alone() -> None:
    done = _probe(_dists(RUNTIME), "services.memory.jobs", "services.memory.sqs_queue", "services.memory.wiring")
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.skipif(not RUNTIME.exists(), reason="the runtime layer's requirements are not in this checkout")
def test_the_probe_itself_refuses_what_a_layer_lacks() -> None:
    done = _probe(_dists(RUNTIME), "mem0")
    assert done.returncode != 0 and "not in this function's layers" in done.stderr

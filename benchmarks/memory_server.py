"""The server the memory benchmarks measure, plus the synthetic calls they send.

``serve(data_dir, memory)`` starts the real ``callvault serve`` (the integrated product: its ingest
processes, fast path, guards and background work), configured by environment only: the webhook
secret, one admin API key, the agent's webhook secret, and ``CALLVAULT_MEMORY_BACKEND`` ``oss``
(offline Mem0 under DATA_DIR/memory, its worker running, the memory routes mounted) or ``none``.

For diagnosis only, this file is also a server of its own: the local app composed by hand under plain
uvicorn, with no ingest processes (what these benchmarks ran before 2026-12-06):

    .venv/bin/python benchmarks/memory_server.py DATA_DIR PORT on|off|queue

Mode ``queue`` records jobs but starts no worker; ``CV_LIGHT_STORE=1`` uses the null store (Mem0 never
loaded); ``CV_NO_TRIGGER=1`` drops the outbox triggers (no jobs recorded). ``serve(..., composed=True)``
runs it instead of ``callvault serve``.
"""

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from services.core.domain import signing  # noqa: E402
from tests.memory.support import call_envelope  # noqa: E402
from tests.support import SECRET, free_port  # noqa: E402

API_KEY = "cvk_benchmark-api-key"
AGENT_SECRET = "asec_benchmark-agent-secret"  # noqa: S105 - a benchmark value

_USER = [
    "I'm calling about my prescription refill, it should have been ready yesterday.",
    "My daughter usually picks it up for me but she is travelling this week.",
    "Could you check whether the pharmacy on Elm Street has it in stock?",
    "I also wanted to ask about moving my appointment with doctor Reyes.",
    "Tuesday mornings are better for me, I have physiotherapy on Thursdays.",
    "Yes, the same address as last time, nothing has changed.",
    "My knee is better since the surgery, thank you for asking.",
    "Please send the reminder by text message rather than email.",
]
_AGENT = [
    "Of course, let me look that up for you right away.",
    "I can see the refill was approved this morning and is ready for pickup.",
    "I have moved your appointment to Tuesday at nine thirty.",
    "I've added a note that your daughter may pick it up on your behalf.",
    "Is there anything else I can help you with today?",
    "I'll send a text message reminder the day before.",
]


def synthetic_call(conversation_id: str, phone: str, turns: int, seed: int, unique: str | None = None) -> bytes:
    """A transcription webhook: the real fixture with ``turns`` plausible turns (and one ``unique`` phrase)."""
    rng = random.Random(seed)
    lines = [("agent" if i % 2 == 0 else "user", rng.choice(_AGENT if i % 2 == 0 else _USER)) for i in range(turns)]
    if unique:
        lines[min(1, turns - 1)] = ("user", unique)
    envelope = call_envelope(
        conversation_id,
        phone,
        lines,
        summary=f"The caller asked about a refill and an appointment ({conversation_id}).",
        started_at=1751802015 + seed,
        event_at=int(time.time()),
    )
    return orjson.dumps(envelope)


def signed(body: bytes) -> dict[str, str]:
    return {signing.HEADER: signing.sign(body, SECRET, int(time.time())), "content-type": "application/json"}


def phone_of(n: int) -> str:
    return f"+1612555{n % 10000:04d}"


def build_app(data_dir: Path, memory: bool) -> tuple[Any, Any]:
    from services.core.config import Settings
    from services.core.wiring import build_storage
    from services.local.app import create_local_app
    from services.memory.app import mount_memory
    from services.memory.local import build_local_memory
    from services.search.dependencies import require_api_key
    from services.web.auth import hash_key

    settings = Settings(data_dir=data_dir, memory_backend="oss" if memory else "none", log_level="WARNING")
    storage = build_storage(settings)
    app = create_local_app(settings, [SECRET], storage, api_key_hashes=[hash_key(API_KEY)])
    light = None
    if os.environ.get("CV_LIGHT_STORE"):  # diagnosis: the outbox and hook without Mem0 loaded
        from services.memory.stores import NullMemoryStore

        light = NullMemoryStore()
    local = build_local_memory(settings, storage, agent_secrets=[AGENT_SECRET], store=light) if memory else None
    if local is not None and os.environ.get("CV_NO_TRIGGER"):  # diagnosis: what the triggers cost
        local.outbox.remove_call_triggers()
    if local is not None:
        app.state.receiver.archiver.memory_jobs = local.jobs
        mount_memory(app, local.context, require_api_key)
    return app, local


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def serve(data_dir: Path, memory: bool, log: Path | None = None, *, composed: bool = False) -> Iterator[Server]:
    """``callvault serve`` (or, ``composed``, this module's own app) on 127.0.0.1; SIGTERM on exit."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLVAULT_", "MEM0_"))}
    out = log.open("wb") if log else subprocess.DEVNULL
    if composed:
        command = [sys.executable, __file__, str(data_dir), str(port), "on" if memory else "off"]
    else:
        command = [sys.executable, "-m", "services.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)]
        env |= {
            "CALLVAULT_WEBHOOK_SECRET": SECRET,
            "CALLVAULT_API_KEYS": f"admin:{API_KEY}",
            "CALLVAULT_AGENT_WEBHOOK_SECRET": AGENT_SECRET,
            "CALLVAULT_MEMORY_BACKEND": "oss" if memory else "none",
            "CALLVAULT_LOG_LEVEL": "WARNING",
        }
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # serve opens the memory store before it listens
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the benchmark server exited early (see {log})")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark server did not become ready")
            time.sleep(0.1)
        yield Server(url, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log:
            out.close()  # type: ignore[union-attr]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    import uvicorn

    data_dir, port, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    app, local = build_app(data_dir, mode in {"on", "queue"})
    if local is not None and mode == "on":  # "queue": jobs are recorded but no worker runs (diagnosis)
        local.start()
    if mode != "on":  # what LocalMemory.start() does with memory on, so every mode runs alike
        import gc

        gc.collect()
        gc.freeze()
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")
    finally:
        if local is not None:
            local.stop()


if __name__ == "__main__":
    main()

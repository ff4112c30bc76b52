"""Benchmark-only probe of the cyclic garbage collector in a server process (never used by the product).

``ingest_live.py --gc-probe`` puts this folder first on the server's PYTHONPATH, so Python imports
it at start-up. It counts collections per generation and the wall time spent in them, and writes
the totals as JSON to ``$CV_BENCH_GC_OUT`` whenever ``$CV_BENCH_GC_OUT.request`` appears (checked
once a second) and at exit. ``CV_BENCH_GC_THRESHOLD=a,b,c`` also sets ``gc.set_threshold``: a way to
measure a proposed setting without changing the server's code.
"""

import atexit
import gc
import json
import os
import threading
import time
from typing import Any

_OUT = os.environ.get("CV_BENCH_GC_OUT")
_stats: dict[str, Any] = {"collections": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "collected": 0}
_started = [0.0]


def _callback(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    generation = info.get("generation", 0)
    _stats["collections"][generation] += 1
    _stats["seconds"][generation] += time.perf_counter() - _started[0]
    _stats["collected"] += info.get("collected", 0)


def _dump() -> None:
    if _OUT:
        snapshot = {**_stats, "threshold": gc.get_threshold(), "frozen": gc.get_freeze_count(), "at": time.time()}
        with open(_OUT, "w", encoding="utf-8") as out:
            json.dump(snapshot, out)


def _watch() -> None:
    request = f"{_OUT}.request"
    while True:
        time.sleep(1.0)
        if os.path.exists(request):
            _dump()
            os.unlink(request)


if _OUT:
    gc.callbacks.append(_callback)
    if os.environ.get("CV_BENCH_GC_THRESHOLD"):
        gc.set_threshold(*(int(x) for x in os.environ["CV_BENCH_GC_THRESHOLD"].split(",")))
    atexit.register(_dump)
    threading.Thread(target=_watch, name="bench-gc-probe", daemon=True).start()

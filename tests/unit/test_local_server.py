"""``services.local.server``: the rate-limited log filter (the wiring: tests/integration/test_local_server_config.py).

The behaviour under load (slow clients, descriptor exhaustion, bodies in flight) is proven against the
real process in tests/e2e/test_serve_limits.py; these are the pure parts.
"""

import json
import logging
from typing import Any

import anyio
from uvicorn.server import ServerState

from services.local.runtime import RepeatFilter
from services.local.server import OverloadGuard


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(msg: str = "socket.accept() out of system resource", level: int = logging.ERROR, **extra: object):
    record = logging.LogRecord("asyncio", level, __file__, 1, msg, None, None)
    for name, value in extra.items():
        setattr(record, name, value)
    return record


def test_local_server_repeat_filter_passes_each_kind_once_per_interval_and_counts_the_rest() -> None:
    clock = Clock()
    repeats = RepeatFilter(10.0, annotate=True, clock=clock)
    assert repeats.filter(_record())
    assert [repeats.filter(_record()) for _ in range(2047)] == [False] * 2047
    clock.now += 9.9
    assert not repeats.filter(_record())
    clock.now += 0.2
    passed = _record()
    assert repeats.filter(passed)
    assert passed.suppressed_repeats == 2048
    assert "[2048 similar messages suppressed in the last 10 s]" in passed.getMessage()


def test_local_server_repeat_filter_keeps_kinds_apart_and_never_drops_info() -> None:
    repeats = RepeatFilter(10.0, clock=Clock())
    assert repeats.filter(_record("webhook refused", logging.WARNING, error_code="invalid_signature"))
    assert not repeats.filter(_record("webhook refused", logging.WARNING, error_code="invalid_signature"))
    assert repeats.filter(_record("webhook refused", logging.WARNING, error_code="payload_too_large"))
    assert repeats.filter(_record("webhook failed", logging.ERROR))
    assert all(repeats.filter(_record("webhook stored", logging.INFO)) for _ in range(100))


def test_local_server_repeat_filter_json_records_carry_the_count_but_keep_their_message() -> None:
    clock = Clock()
    repeats = RepeatFilter(5.0, clock=clock)
    repeats.filter(_record("webhook refused", logging.WARNING))
    repeats.filter(_record("webhook refused", logging.WARNING))
    clock.now += 5
    passed = _record("webhook refused", logging.WARNING)
    assert repeats.filter(passed)
    assert (passed.getMessage(), passed.suppressed_repeats) == ("webhook refused", 1)


def test_local_server_repeat_filter_forgets_quiet_kinds_so_it_stays_small() -> None:
    clock = Clock()
    repeats = RepeatFilter(1.0, clock=clock)
    for n in range(5000):
        clock.now += 0.01
        repeats.filter(_record(f"error {n}"))
    assert len(repeats._kinds) <= 1025


def _call(guard: OverloadGuard) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope: Any = {"type": "http", "method": "GET", "path": "/healthz"}
    anyio.run(guard, scope, receive, send)
    return sent


def test_local_server_overload_guard_answers_503_with_retry_after_and_the_envelope() -> None:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    state = ServerState()
    guard = OverloadGuard(app, state, limit=2, retry_after_secs=5)
    state.connections.update({object(), object()})  # type: ignore[arg-type]
    assert _call(guard) == [] and reached == ["/healthz"]  # at the limit: served

    state.connections.add(object())  # type: ignore[arg-type]
    start, body = _call(guard)
    assert reached == ["/healthz"]
    assert start["status"] == 503
    headers = dict(start["headers"])
    assert headers[b"retry-after"] == b"5" and headers[b"content-type"] == b"application/json"
    envelope = json.loads(body["body"])
    assert envelope["error"]["code"] == "server_busy" and envelope["request_id"]

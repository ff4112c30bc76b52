"""``services.local.server``: the rate-limited log filter, the overload answer and the send timeout's
timer (the wiring: tests/integration/test_local_server_config.py).

The behaviour under load (slow clients, descriptor exhaustion, bodies in flight) is proven against the
real process in tests/e2e/test_serve_limits.py; these are the pure parts.
"""

import json
import logging
import socket
import struct
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import anyio
from uvicorn.config import Config
from uvicorn.server import ServerState

from services.local.runtime import RepeatFilter
from services.local.server import GuardedH11Protocol, OverloadGuard, ServerLimits, protocol_class


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


# --- the send timeout, on a clock the test moves ------------------------------------------------


class Timer:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class ManualLoop:
    """What the protocol's timers need of an event loop (``time``, ``call_later``); time moves in ``advance``."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[Timer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        timer = Timer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while due := [t for t in self.timers if not t.cancelled and t.when <= end]:
            timer = min(due, key=lambda t: t.when)
            self.timers.remove(timer)
            self.now = timer.when
            timer.callback()
        self.now = end


class PeerSocket:
    """No kernel behind it (``fileno`` -1): the bytes not yet taken are the transport's buffer alone."""

    def __init__(self) -> None:
        self.options: dict[tuple[int, int], bytes] = {}

    def fileno(self) -> int:
        return -1

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 8080)

    def getpeername(self) -> tuple[str, int]:
        return ("127.0.0.1", 50000)

    def setsockopt(self, level: int, option: int, value: bytes) -> None:
        self.options[(level, option)] = value


class StuckTransport:
    """A transport whose write buffer holds ``buffered`` bytes until the test says the client took some."""

    def __init__(self) -> None:
        self.socket = PeerSocket()
        self.buffered = 1_000_000
        self.closing = self.aborted = False

    def get_extra_info(self, name: str) -> Any:
        return self.socket if name == "socket" else None

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing or self.aborted

    def close(self) -> None:
        self.closing = True  # asyncio's close() waits for the buffer, which this client never takes

    def abort(self) -> None:
        self.aborted = True


class Warnings:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, object]]] = []

    def warning(self, message: str, extra: dict[str, object]) -> None:
        self.lines.append((message, extra))


SEND_TIMEOUT = 8.0
KEEP_ALIVE = 5.0  # uvicorn's default, shorter than SEND_TIMEOUT


def _protocol(loop: ManualLoop) -> tuple[GuardedH11Protocol, StuckTransport, Warnings]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("no request is made")

    warnings = Warnings()
    # No request is made here: the header timer, which would close the idle connection, waits an hour.
    limits = ServerLimits(header_timeout=3600, send_timeout=SEND_TIMEOUT)
    bound = protocol_class(limits, cast(Any, warnings))
    config = Config(app, log_config=None, timeout_keep_alive=int(KEEP_ALIVE))
    protocol = bound(config, ServerState(), {}, _loop=cast(Any, loop))
    transport = StuckTransport()
    protocol.connection_made(cast(Any, transport))
    return protocol, transport, warnings


def _response_written(protocol: GuardedH11Protocol) -> None:
    """The app's last ``send``: uvicorn marks the cycle complete and calls ``on_response_complete``."""
    protocol.cycle = cast(Any, SimpleNamespace(response_complete=True))
    protocol.on_response_complete()


def test_local_server_send_timeout_resets_a_response_the_client_stops_taking_while_the_app_waits() -> None:
    loop = ManualLoop()
    protocol, transport, warnings = _protocol(loop)
    protocol.pause_writing()  # the buffers are full: the app waits for them to drain
    loop.advance(SEND_TIMEOUT - 0.1)
    assert not transport.aborted
    loop.advance(SEND_TIMEOUT * 0.25)
    assert transport.aborted
    assert transport.socket.options[(socket.SOL_SOCKET, socket.SO_LINGER)] == struct.pack("ii", 1, 0)
    assert warnings.lines == [("closed a slow connection", {"phase": "response", "body_bytes": 0})]

    protocol.connection_lost(None)  # what asyncio calls after abort(): the app's pending write is released
    assert not protocol.flow.write_paused
    anyio.run(protocol.flow.drain)


def test_local_server_send_timeout_resets_the_end_of_a_complete_response_the_client_never_takes() -> None:
    loop = ManualLoop()
    protocol, transport, warnings = _protocol(loop)
    transport.buffered = 30_000  # what the kernel's buffers had no room for: under the high-water mark, no pause
    _response_written(protocol)
    loop.advance(KEEP_ALIVE + 0.1)
    assert transport.closing and not transport.aborted  # keep-alive's close() waits for those bytes for ever
    loop.advance(SEND_TIMEOUT)
    assert transport.aborted
    assert warnings.lines == [("closed a slow connection", {"phase": "response", "body_bytes": 0})]


def test_local_server_send_timeout_runs_between_writes_not_for_the_whole_response() -> None:
    loop = ManualLoop()
    protocol, transport, warnings = _protocol(loop)
    protocol.pause_writing()
    for _ in range(40):  # five timeouts long, the buffer never under the low-water mark (no resume_writing)
        loop.advance(SEND_TIMEOUT / 2)
        transport.buffered -= 16 * 1024  # but the client takes something every half timeout
    assert not transport.aborted and warnings.lines == []
    loop.advance(SEND_TIMEOUT * 1.25)  # then nothing more
    assert transport.aborted


def test_local_server_send_timeout_starts_again_at_each_pause_until_the_response_is_written() -> None:
    loop = ManualLoop()
    protocol, transport, _warnings = _protocol(loop)
    protocol.pause_writing()
    loop.advance(SEND_TIMEOUT - 1)
    protocol.resume_writing()  # drained: the app writes again
    loop.advance(SEND_TIMEOUT * 10)
    assert not transport.aborted
    protocol.pause_writing()
    loop.advance(SEND_TIMEOUT - 1)
    assert not transport.aborted
    _response_written(protocol)  # the paused write was the last: the app is done
    transport.buffered = 10_000  # under the low-water mark, but still not taken
    protocol.resume_writing()
    loop.advance(SEND_TIMEOUT * 1.25 + 1)
    assert transport.aborted


def test_local_server_send_timeout_timer_ends_with_the_connection() -> None:
    loop = ManualLoop()
    protocol, transport, warnings = _protocol(loop)
    protocol.pause_writing()
    protocol.connection_lost(ConnectionResetError())
    loop.advance(SEND_TIMEOUT * 2)
    assert not transport.aborted and warnings.lines == []

"""The HTTP server of ``callvault serve``: uvicorn, with the limits a server on the Internet needs.

uvicorn's h11 protocol waits forever for a request's headers, for its body and for a client to take
its response (its keep-alive timer only runs between requests), accepts 2,048 pending connections, and
at the descriptor limit asyncio logs one traceback per pending connection per second. Here:

* ``GuardedH11Protocol`` closes a connection whose request head is not complete ``header_timeout``
  seconds after its first byte (or after the connection opened), and one whose body falls behind
  ``body_timeout`` seconds plus 1 s per ``MIN_BODY_RATE`` bytes received (mod_reqtimeout's rule). A
  body still arriving after we answered (a refusal before reading) gets ``body_timeout``, no more.
  A response whose client takes nothing for ``send_timeout`` seconds while bytes wait in our buffer
  (nginx's ``send_timeout``: between two successive writes, not for the whole response) is aborted
  with a reset: ``close()`` would wait for a buffer this client never drains.
* More than ``limit_concurrency`` connections or requests get 503 with ``Retry-After`` and the one
  error envelope (uvicorn's own answer is plain text).
* ``RepeatFilter`` lets each kind of warning or error through once per ``log_interval`` seconds and
  counts the rest, so a flood (descriptor exhaustion, forged webhooks) costs one line per interval.
  asyncio retries ``accept`` every second, so the server serves again once descriptors are free.

Webhook bodies themselves are bounded by the route (``services.ingest.router.BodyIntake``).
"""

import asyncio
import fcntl
import logging
import resource
import socket
import struct
import sys
import termios
import uuid
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
import orjson
import uvicorn
from aws_lambda_powertools import Logger
from fastapi import FastAPI
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from services.core.config import Settings
from services.core.http import BUSY_CODE, error_body
from services.core.logging import get_logger
from services.ingest.router import BodyIntake, StoreElsewhere, WebhookFastPath, install_body_intake

from .runtime import LOG_INTERVAL_SECS, RepeatFilter

MIN_BODY_RATE = 128 * 1024  # bytes per second (1 Mbit/s) a body must keep up, after its first body_timeout
# A response waiting for its client is looked at this many times per send_timeout, so one the client
# stopped taking is cut off between 1 and 1.25 send_timeouts after the last byte it took.
SEND_CHECKS_PER_TIMEOUT = 4
MAX_HEAD_BYTES = 16 * 1024  # request line + headers (h11's default, said out loud); larger gets 400
BACKLOG = 128  # pending connections; also how many accept() errors asyncio logs per retry
KEEP_ALIVE_SECS = 5  # idle time between two requests on one connection (uvicorn's default)
GRACEFUL_SHUTDOWN_SECS = 30
RETRY_AFTER_SECS = 5
# Loggers whose repeats are rate-limited: asyncio (accept() at the descriptor limit), uvicorn's
# error log (malformed requests), and ours (refused webhooks, closed slow connections).
_PLAIN_LOGGERS = ("asyncio", "uvicorn.error")
_SERVER_LOGGER = "callvault-server"


@dataclass(frozen=True)
class ServerLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    send_timeout: float = 60.0
    min_body_rate: int = MIN_BODY_RATE
    limit_concurrency: int = 1024
    retry_after_secs: int = RETRY_AFTER_SECS

    @classmethod
    def from_settings(cls, settings: Settings) -> "ServerLimits":
        return cls(
            header_timeout=settings.header_timeout_secs,
            body_timeout=settings.body_timeout_secs,
            send_timeout=settings.send_timeout_secs,
            limit_concurrency=default_limit_concurrency(),
        )


def default_limit_concurrency() -> int:
    """Half the process's descriptors (at most 1,024) for connections: the rest stay for files and SQLite."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 2))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header, body and send timeouts and an enveloped 503 when overloaded.

    Use ``protocol_class(limits, logger)``: uvicorn builds protocols from a class and three arguments.
    """

    limits: ClassVar[ServerLimits] = ServerLimits()
    log: ClassVar[Logger | None] = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # uvicorn's own check answers in plain text without Retry-After: ours replaces it.
        self.limit_concurrency = None
        self.app = OverloadGuard(self.app, server_state, self.limits.limit_concurrency, self.limits.retry_after_secs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_started = 0.0
        self._body_received = 0
        self._draining = False
        self._send_timer: asyncio.TimerHandle | None = None
        self._send_unsent = 0  # bytes the client had not taken at the last look
        self._send_idle_checks = 0  # looks in a row that found the client took nothing

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._start_header_timer()  # a connection that never sends a request is closed too

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._start_header_timer()  # the first byte of a request head (after a keep-alive pause)
        elif self._body_timer is not None:
            self._body_received += len(data)
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._cancel_body_timer()
        self._cancel_send_timer()
        super().connection_lost(exc)  # an app task waiting to write is released and sees http.disconnect

    def pause_writing(self) -> None:
        super().pause_writing()
        self._start_send_timer()  # the buffers are full: the app waits until the client takes bytes

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.cycle is None or not self.cycle.response_complete:
            self._cancel_send_timer()  # the app writes again (and pauses again if the client lags)

    # -- uvicorn hooks ----------------------------------------------------------------------------

    def handle_events(self) -> None:
        super().handle_events()
        self._follow_request_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._body_timer is not None and self.conn.their_state is h11.SEND_BODY:
            # Answered before the body ended (a refusal): what is left is read and dropped, within
            # body_timeout and without the rate allowance, so a sender that never stops is cut off.
            self._draining = True
            self._body_started, self._body_received = self.loop.time(), 0
            self._cancel_body_timer()
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._check_body)
        self._follow_request_state()
        if self.transport.get_write_buffer_size():
            # The end of the response still waits in our buffer, and keep-alive's close() or the next
            # response waits for it: the client must take it, paused or not.
            self._start_send_timer()

    # -- the timers ------------------------------------------------------------------------------

    def _follow_request_state(self) -> None:
        state = self.conn.their_state
        if state is h11.IDLE:
            self._cancel_body_timer()
            return
        self._cancel_header_timer()
        if state is h11.SEND_BODY:
            if self._body_timer is None:
                self._body_started, self._body_received, self._draining = self.loop.time(), 0, False
                self._body_timer = self.loop.call_later(self.limits.body_timeout, self._check_body)
        else:
            self._cancel_body_timer()

    def _start_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_expired)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _header_expired(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE:
            self._close_slow("header")

    def _check_body(self) -> None:
        self._body_timer = None
        if self.conn.their_state is not h11.SEND_BODY or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused and not self._draining:
            deadline = now + self.limits.body_timeout  # the app is not reading: not the client's delay
        else:
            allowance = 0.0 if self._draining else self._body_received / self.limits.min_body_rate
            deadline = self._body_started + self.limits.body_timeout + allowance
        if now >= deadline:
            self._close_slow("body")
            return
        self._body_timer = self.loop.call_later(deadline - now, self._check_body)

    def _start_send_timer(self) -> None:
        if self._send_timer is None:
            self._send_unsent, self._send_idle_checks = self._unsent_bytes(), 0
            self._send_timer = self.loop.call_later(self._send_check_interval, self._check_send)

    def _cancel_send_timer(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    @property
    def _send_check_interval(self) -> float:
        return self.limits.send_timeout / SEND_CHECKS_PER_TIMEOUT

    def _check_send(self) -> None:
        self._send_timer = None
        if not self.transport.get_write_buffer_size():
            return  # all handed to the kernel: the app writes on, or close() completes
        # Nothing is written while the timer runs (the app is paused or done), so fewer unsent bytes
        # means the client took some: asyncio reports no partial sends.
        unsent = self._unsent_bytes()
        self._send_idle_checks = 0 if unsent < self._send_unsent else self._send_idle_checks + 1
        self._send_unsent = unsent
        if self._send_idle_checks >= SEND_CHECKS_PER_TIMEOUT:
            self._close_slow("response")
            return
        self._send_timer = self.loop.call_later(self._send_check_interval, self._check_send)

    def _unsent_bytes(self) -> int:
        """Our write buffer plus the kernel's send queue (Linux). Ours alone would hide a client that
        reads steadily: the kernel lets asyncio write again only once a third of its buffer (MBs) is free."""
        unsent = self.transport.get_write_buffer_size()
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError, ValueError):  # no SIOCOUTQ, or no descriptor (-1): our buffer alone
                queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, bytes(4))  # TIOCOUTQ is SIOCOUTQ
                unsent += int.from_bytes(queued, sys.byteorder, signed=True)
        return unsent

    def _close_slow(self, phase: str) -> None:
        # A response can be stuck in a transport that is closing already (keep-alive's close after a
        # complete response): close() waits for the buffer to drain, so that one is aborted all the same.
        stuck_response = phase == "response"
        if self.transport.is_closing() and not stuck_response:
            return
        if self.log is not None:
            self.log.warning("closed a slow connection", extra={"phase": phase, "body_bytes": self._body_received})
        if not stuck_response:
            self.transport.close()  # an unfinished request sees http.disconnect
            return
        # abort() drops asyncio's buffer and frees the descriptor; SO_LINGER 0 makes the kernel reset
        # too, instead of keeping the unsent bytes of an orphan in FIN-WAIT-1 for minutes (nginx's
        # reset_timedout_connection).
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


class OverloadGuard:
    """503 with ``Retry-After`` and the error envelope when more than ``limit`` connections or
    requests are open (what uvicorn's ``limit_concurrency`` does, in our format)."""

    def __init__(self, app: ASGI3Application, state: ServerState, limit: int, retry_after_secs: int) -> None:
        self.app = app
        self.state = state
        self.limit = limit
        self.retry_after = str(retry_after_secs).encode()

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        # The calling request is counted in both (its connection and its task are already registered).
        overloaded = len(self.state.connections) > self.limit or len(self.state.tasks) > self.limit
        if scope["type"] != "http" or not overloaded:
            await self.app(scope, receive, send)
            return
        message = f"the server is busy; retry after {self.retry_after.decode()} s"
        body = orjson.dumps(error_body(BUSY_CODE, message, uuid.uuid4().hex))
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", self.retry_after),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def protocol_class(limits: ServerLimits, log: Logger | None) -> type[GuardedH11Protocol]:
    """``GuardedH11Protocol`` bound to ``limits``: uvicorn instantiates the class it is given."""
    return type("BoundGuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits, "log": log})


def install_repeat_filters(app_logger: Logger | None, interval: float = LOG_INTERVAL_SECS) -> None:
    for name in _PLAIN_LOGGERS:
        logging.getLogger(name).addFilter(RepeatFilter(interval, annotate=True))
    logging.getLogger(_SERVER_LOGGER).addFilter(RepeatFilter(interval))
    if app_logger is not None:
        app_logger.addFilter(RepeatFilter(interval))


def build_server(
    app: FastAPI, settings: Settings, *, host: str, port: int, store_elsewhere: StoreElsewhere | None = None
) -> uvicorn.Server:
    """The configured server; ``run_server`` runs it. Separate so tests can inspect the configuration.
    ``store_elsewhere``: where verified in-memory bodies are stored (``IngestProcess.store``)."""
    limits = ServerLimits.from_settings(settings)
    intake = BodyIntake(
        max_in_flight=settings.max_bodies_in_flight, spool_dir=settings.data_dir, store_elsewhere=store_elsewhere
    )
    install_body_intake(app, intake)
    log = get_logger(_SERVER_LOGGER, settings.log_level)
    config = uvicorn.Config(
        WebhookFastPath(app),  # webhooks skip the app's router and middleware
        host=host,
        port=port,
        http=protocol_class(limits, log),
        # access log off: URLs can carry phone numbers; the app logs its own masked lines.
        access_log=False,
        log_level="warning",
        limit_concurrency=limits.limit_concurrency,  # enforced by OverloadGuard, see GuardedH11Protocol
        backlog=BACKLOG,
        timeout_keep_alive=KEEP_ALIVE_SECS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECS,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )
    # After Config, which applies uvicorn's logging configuration.
    install_repeat_filters(getattr(app.state, "logger", None))
    return uvicorn.Server(config)


def run_server(
    app: FastAPI,
    settings: Settings,
    *,
    host: str,
    port: int,
    sockets: list[socket.socket] | None = None,
    store_elsewhere: StoreElsewhere | None = None,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (what ``callvault serve`` runs), on ``sockets`` when given
    (bound beforehand, so a taken port is reported before anything else happens)."""
    build_server(app, settings, host=host, port=port, store_elsewhere=store_elsewhere).run(sockets=sockets)

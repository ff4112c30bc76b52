"""``callvault serve`` applies the retention rules daily: once a minute after start, then every
``interval`` seconds. The rules file is read again on every run, so an edit takes effect the next day
without a restart; a bad file or a failed run is logged and retried at the next tick, and the
server keeps serving either way."""

import threading
from collections.abc import Callable

from aws_lambda_powertools import Logger

from services.core.logging import get_logger

from .retention import RetentionRunner

DAILY = 86_400.0


class RetentionThread:
    def __init__(
        self,
        build: Callable[[], RetentionRunner],
        interval: float = DAILY,
        first_delay: float = 60.0,
        log: Logger | None = None,
    ) -> None:
        self.build = build  # a fresh runner per run: the rules file is read again
        self.interval = interval
        self.first_delay = first_delay
        self.log = log or get_logger("callvault-retention")
        self.runs = 0  # completed runs, for tests and status
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="callvault-retention", daemon=True)

    def start(self) -> "RetentionThread":
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> bool:
        self._stop.set()
        if self._thread.is_alive():  # never started (a start-up that failed before it): nothing to wait for
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        if self._stop.wait(self.first_delay):
            return
        while not self._stop.is_set():
            try:
                summary = self.build().run()
            except Exception as exc:  # keep serving; the next tick tries again
                self.log.warning("retention run failed", extra={"error": type(exc).__name__})
            else:
                self.runs += 1
                self.log.info("retention run", extra=summary.to_dict())
            self._stop.wait(self.interval)

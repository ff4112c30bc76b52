"""`callvault serve`'s retention thread: runs after its first delay, then every interval; a failing
run (a bad rules file) is logged and the next tick runs again; stop ends it."""

import threading
import time
from typing import Any

from services.privacy.retention import RetentionSummary
from services.privacy.schedule import RetentionThread


class CountingRunner:
    def __init__(self, fail_first: bool) -> None:
        self.calls = 0
        self.fail_first = fail_first
        self.ran = threading.Event()

    def run(self) -> RetentionSummary:
        self.calls += 1
        if self.fail_first and self.calls == 1:
            raise ValueError("bad rules file")
        if self.calls >= 3:
            self.ran.set()
        return RetentionSummary(dry_run=False)


def test_retention_thread_runs_on_every_tick_and_survives_a_failed_run() -> None:
    runner = CountingRunner(fail_first=True)
    builds: list[Any] = []

    def build() -> Any:
        builds.append(1)  # a fresh runner (and rules file read) per run
        return runner

    thread = RetentionThread(build, interval=0.01, first_delay=0.0).start()
    assert runner.ran.wait(5)
    assert thread.stop()
    assert thread.runs >= 2 and len(builds) == runner.calls


def test_retention_thread_waits_its_first_delay_and_stops_at_once() -> None:
    runner = CountingRunner(fail_first=False)
    thread = RetentionThread(lambda: runner, interval=3600, first_delay=3600).start()  # type: ignore[arg-type, return-value]
    started = time.monotonic()
    assert thread.stop()
    assert time.monotonic() - started < 2 and runner.calls == 0

"""Every crash point of the write protocol, enumerated: a redelivery always completes what a crash left.

For each scenario (events of one call, in one order) a run without crash counts the storage
operations of every step and records the end state. Then, for EVERY step i, operation k and
before|after (nothing sampled): a fresh world runs the steps before i, step i dies at operation k
(``Crash`` raised before it ran, or after it ran and was durable), the process "restarts" (a new
Archiver over the same stores; for files, new adapter instances over the same folder), and the
event that was not acknowledged is delivered again, then the rest. Afterwards ``callvault verify``
must find nothing and archive, index row and analytics rows must equal the run without crash.

``redeliver_last``: the sender retries the unacknowledged event only after the call's other events
arrived (ElevenLabs retries with backoff; the other webhooks do not wait). The end state must then be
the no-crash result of the original order or of the order the stores actually saw (the crashed
attempt may or may not have placed the call before the others did).

Run with ``-s`` to see how many crash points each scenario enumerates.
"""

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.core.domain.errors import CallVaultError
from tests.protocol.harness import (
    A1,
    A2,
    CLOSED_NOW,
    CONV,
    F_LATER_DAY,
    MERGE,
    T1,
    T2,
    T_MOVED,
    T_NO_START,
    T_NO_TIME,
    A,
    Crash,
    F,
    FilesWorld,
    MemoryWorld,
    OperationLog,
    Scenario,
    Step,
    T,
    When,
    World,
    check_against,
    promise_problems,
    recording,
    reference,
    reference_of,
    run_step,
    run_steps,
    scenario,
)

SCENARIOS = [
    scenario(T),
    scenario(A),
    scenario(F),
    scenario(T, A),
    scenario(A, T),
    scenario(F, T),
    scenario(T, F),
    scenario(T1, T2),
    scenario(T2, T1),
    scenario(A1, T),
    scenario(T, A1, A2),
    scenario(A2, A1, T),
    scenario(A, F, T),
    # Started long ago: the analytics day is closed, a merge folds the call into the day object and
    # the late audio must reach the merged row.
    scenario(T, MERGE, A, MERGE, now=CLOSED_NOW, name="closed-day:T,merge,A,merge"),
    # The failure's start (its timestamp) lies two days after the transcript's: the transcript moves
    # the call's analytics rows to another day.
    scenario(F_LATER_DAY, T),
    # Versions without a start time (it is their timestamp) or without any time (an import: the call
    # starts when first stored, five days after START here, so a timed version moves it across days).
    scenario(T_NO_START),
    scenario(T, T_NO_START),
    scenario(T_NO_TIME, now=CLOSED_NOW, name="closed:Tnt"),
    scenario(T_NO_TIME, A, now=CLOSED_NOW, name="closed:Tnt,A"),
    scenario(A, T_NO_TIME, now=CLOSED_NOW, name="closed:A,Tnt"),
    scenario(T_NO_TIME, MERGE, T, MERGE, now=CLOSED_NOW, name="closed:Tnt,merge,T,merge"),
    scenario(T, T_NO_TIME, now=CLOSED_NOW, name="closed:T,Tnt"),
    # The start moves across closed, merged days, audio before and after.
    scenario(T, MERGE, T_MOVED, MERGE, now=CLOSED_NOW, name="closed:T,merge,T+2d,merge"),
    scenario(T, MERGE, A, T_MOVED, now=CLOSED_NOW, name="closed:T,merge,A,T+2d"),
    scenario(A, T_MOVED, T, now=CLOSED_NOW, name="closed:A,T+2d,T"),
]
# The files run repeats the enumeration over real files and SQLite (fsyncs make it ~100x slower).
FILE_SCENARIOS = ["T", "A,T", "T,A", "F,T", "T1,T2", "T,A1,A2", "closed-day:T,merge,A,merge"]
WHENS: tuple[When, ...] = ("before", "after")


@dataclass(frozen=True)
class CrashPoint:
    step: int
    operation: int
    when: When

    def describe(self, case: Scenario, crashed: str) -> str:
        return f"{case.name}: crash {self.when} {crashed} of step {self.step + 1} ({case.steps[self.step].label})"


def crash_and_recover(
    make_world: Callable[[], World], case: Scenario, point: CrashPoint, *, redeliver_last: bool
) -> tuple[str, list[str]]:
    """Run the scenario with a crash at ``point``; return (the operation that crashed, what went wrong)."""
    world = make_world()
    try:
        stores = world.open()
        run_steps(stores, case.steps[: point.step], case.now)
        log = OperationLog(point.operation, point.when)
        crashed_step = case.steps[point.step]
        with contextlib.suppress(Crash):
            run_step(recording(stores, log), crashed_step, case.now)
        if log.crashed is None:
            return "?", [f"no crash: the step made {len(log.operations)} operations this time"]
        rest = case.steps[point.step + 1 :]
        order = (*rest, crashed_step) if redeliver_last else (crashed_step, *rest)
        stores = world.open()  # the restarted process
        try:
            run_steps(stores, order, case.now)
        except CallVaultError as exc:
            return str(log.crashed), [f"redelivery failed: {type(exc).__name__}: {exc}"]
        # The crashed attempt may or may not have placed the call before the events after it did.
        orders = [case.steps, (*case.steps[: point.step], *order)] if redeliver_last else [case.steps]
        return str(log.crashed), check_against(make_world, stores, case.now, orders)
    finally:
        world.close()


def enumerate_crash_points(
    make_world: Callable[[], World], case: Scenario, *, redeliver_last: bool = False
) -> tuple[int, list[str]]:
    counts = reference_of(make_world, case.steps, case.now).operations
    points = [
        CrashPoint(step, operation, when)
        for step, count in enumerate(counts)
        for operation in range(1, count + 1)
        for when in WHENS
    ]
    failures = []
    for point in points:
        crashed, problems = crash_and_recover(make_world, case, point, redeliver_last=redeliver_last)
        if problems:
            failures.append(f"{point.describe(case, crashed)}: " + "; ".join(problems))
    return len(points), failures


def _report(world: str, case: Scenario, started: float, enumerated: int, failures: list[str], note: str = "") -> None:
    counts = reference_of(MemoryWorld, case.steps, case.now).operations
    per_step = ", ".join(f"{step.label}:{count}" for step, count in zip(case.steps, counts, strict=True))
    print(
        f"\n[{world}] {case.name}{note}: {enumerated} crash points enumerated (operations per step {per_step}) "
        f"in {time.monotonic() - started:.2f}s, {len(failures)} failed"
    )
    shown = "\n".join(failures[:25])
    more = f"\n... and {len(failures) - 25} more" if len(failures) > 25 else ""
    assert not failures, f"{len(failures)} of {enumerated} crash points do not converge:\n{shown}{more}"


@pytest.mark.parametrize("case", SCENARIOS, ids=str)
def test_protocol_the_run_without_crash_ends_at_the_newest_version(case: Scenario) -> None:
    """What every crash point is compared with must itself keep the promise (README, "What stays
    true"): the newest call-level event in archive, row and analytics, the newest audio."""
    stores = MemoryWorld().open()
    run_steps(stores, case.steps, case.now)
    events = [step.event for step in case.steps if step.event is not None]
    assert promise_problems(stores, events) == []


@pytest.mark.parametrize("case", SCENARIOS, ids=str)
def test_protocol_every_crash_point_converges_in_memory(case: Scenario) -> None:
    started = time.monotonic()
    enumerated, failures = enumerate_crash_points(MemoryWorld, case)
    _report("memory", case, started, enumerated, failures)


@pytest.mark.parametrize("case", [case for case in SCENARIOS if len(case.steps) > 1], ids=str)
def test_protocol_every_crash_point_converges_when_the_retry_comes_last(case: Scenario) -> None:
    started = time.monotonic()
    enumerated, failures = enumerate_crash_points(MemoryWorld, case, redeliver_last=True)
    _report("memory", case, started, enumerated, failures, " (retry last)")


@pytest.mark.parametrize("case", [case for case in SCENARIOS if case.name in FILE_SCENARIOS], ids=str)
def test_protocol_every_crash_point_converges_on_files_and_sqlite(case: Scenario, tmp_path: Path) -> None:
    runs = iter(range(1_000_000))

    def files_world() -> World:
        return FilesWorld(tmp_path / f"run-{next(runs)}")

    started = time.monotonic()
    enumerated, failures = enumerate_crash_points(files_world, case)
    _report("files", case, started, enumerated, failures)


def test_protocol_references_agree_between_memory_and_files(tmp_path: Path) -> None:
    """The files run compares with its own reference; both references must be the same end state."""
    for number, case in enumerate(case for case in SCENARIOS if case.name in FILE_SCENARIOS):
        memory = reference(MemoryWorld, case.steps, case.now)
        files = reference(lambda: FilesWorld(tmp_path / f"ref-{number}"), case.steps, case.now)  # noqa: B023
        assert (files.operations, files.late_findings) == (memory.operations, memory.late_findings), case.name
        assert files.state.differences(memory.state) == [], case.name


def test_protocol_harness_crashes_where_it_is_told() -> None:
    """The harness itself: operations are numbered in order; "after" leaves the operation durable,
    "before" leaves nothing of it."""
    cases: tuple[tuple[When, bool], ...] = (("before", False), ("after", True))
    for when, durable in cases:
        stores = MemoryWorld().open()
        log = OperationLog(2, when)
        with pytest.raises(Crash):
            run_step(recording(stores, log), Step("T", T), CLOSED_NOW)
        assert [str(op) for op in log.operations] == [f"#1 index.get({CONV})", f"#2 index.claim_place({CONV})"]
        assert (stores.index.get(CONV) is not None) is durable

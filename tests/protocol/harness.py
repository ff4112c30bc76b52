"""What the write-protocol tests share: one call's events, stores that number (and crash at) every
operation, and the end state of a world (archive, index, analytics) in comparable form.

Every event here belongs to one call (``CONV``) unless a test builds others with ``for_call``. The
variants differ in what the protocol orders by (``services/core/domain/versions.py``): event
timestamp, content, and kind (a transcript always beats an initiation failure).
"""

import base64
import copy
import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import orjson

from services.analytics.compaction import compact_closed_days
from services.analytics.rows import Row, decode
from services.analytics.tables import TABLES, parse_day_object_key, parse_object_key, partition_of
from services.analytics.writer import AnalyticsWriter
from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
from services.core.adapters.sqlite_call_index import SqliteCallIndex
from services.core.domain import keys, payload, versions
from services.core.domain.errors import StorageUnavailable
from services.core.domain.models import CALL_FIELDS, CallRecord, WebhookEvent
from services.core.ports import BlobStore, CallIndex
from services.ingest.service import Archiver
from services.ingest.verify import ArchiveVerifier, Finding
from tests.support import AUDIO, FIXTURES, INITIATION_FAILURE, TRANSCRIPTION, fixture_json

CONV = "conv_01jzfrjvcce0vsea1fcbpp9p04"
START = 1_751_802_015  # the fixture call's start (2025-07-06 11:40:15 UTC)
DAY = 86_400
OPEN_NOW = float(START + 3_600)  # the call's analytics day is open
CLOSED_NOW = float(START + 5 * DAY)  # the call's analytics day is closed: merged into one object per table
MP3 = (FIXTURES / "hello.mp3").read_bytes()
# Row fields that record when a write happened, not what was written.
VOLATILE_ROW_FIELDS = ("ingested_at", "updated_at", "memory_updated_at")


# --- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One webhook delivery: the envelope as ElevenLabs sends it."""

    label: str
    envelope: dict[str, Any]

    @property
    def body(self) -> bytes:
        return orjson.dumps(self.envelope)

    def parsed(self) -> WebhookEvent:
        return payload.parse_envelope(self.body)

    @property
    def conversation_id(self) -> str:
        return str(self.envelope["data"]["conversation_id"])

    @property
    def kind(self) -> str:
        return str(self.envelope["type"])

    @property
    def timestamp(self) -> int:
        return int(self.envelope.get("event_timestamp") or 0)  # none: an import, versioned as 0


def transcript(label: str = "T", *, later_by: int = 0, summary: str | None = None, closure: str | None = None) -> Event:
    """The fixture transcript; ``later_by`` seconds later, with another summary / closure criterion result."""
    envelope = fixture_json(TRANSCRIPTION)
    envelope["event_timestamp"] += later_by
    analysis = envelope["data"]["analysis"]
    if summary is not None:
        analysis["transcript_summary"] = summary
    if closure is not None:
        analysis["evaluation_criteria_results"]["session_closure"]["result"] = closure
    return Event(label, envelope)


def audio(label: str = "A", *, later_by: int = 0, take: bytes = b"") -> Event:
    """The fixture audio; ``take`` appended to the MP3 makes another recording (another digest)."""
    envelope = fixture_json(AUDIO)
    envelope["event_timestamp"] += later_by
    if take:
        envelope["data"]["full_audio"] = base64.b64encode(MP3 + take).decode()
    return Event(label, envelope)


def failure(label: str = "F", *, at: int | None = None) -> Event:
    """An initiation failure of the same call (the fixture's is another call): dialled +16125550188, so
    a failure that arrives first places the call in another folder than the transcript's number."""
    envelope = fixture_json(INITIATION_FAILURE)
    envelope["data"]["conversation_id"] = CONV
    if at is not None:
        envelope["event_timestamp"] = at
    return Event(label, envelope)


def for_call(event: Event, conversation_id: str, label: str | None = None) -> Event:
    """The same event for another call (the concurrency tests use many calls)."""
    envelope = copy.deepcopy(event.envelope)
    envelope["data"]["conversation_id"] = conversation_id
    return Event(label or event.label, envelope)


def moved(event: Event, start: int) -> Event:
    """The event of the same call started at ``start`` instead of ``START`` (every time in it shifted)."""
    envelope = copy.deepcopy(event.envelope)
    shift = start - START
    envelope["event_timestamp"] += shift
    metadata = envelope["data"].get("metadata")
    for name in ("start_time_unix_secs", "accepted_time_unix_secs"):
        if isinstance(metadata, dict) and isinstance(metadata.get(name), int):
            metadata[name] += shift
    return Event(event.label, envelope)


def without_start(event: Event, label: str, *, timestamp: bool = True) -> Event:
    """The event without ``metadata.start_time_unix_secs`` (its start is then its event_timestamp) and,
    ``timestamp=False``, without ``event_timestamp`` either (an import: the call starts when first stored)."""
    envelope = copy.deepcopy(event.envelope)
    envelope["data"].get("metadata", {}).pop("start_time_unix_secs", None)
    if not timestamp:
        envelope.pop("event_timestamp", None)
    return Event(label, envelope)


T = transcript()
T1 = transcript("T1")
T2 = transcript("T2", later_by=100, summary="A newer analysis of the call.", closure="success")
A = audio()
A1 = audio("A1")
A2 = audio("A2", later_by=60, take=b"second take")
F = failure()  # 1751805625: an hour after the transcript's event, same UTC day
F_LATER_DAY = failure("F+2d", at=START + 2 * DAY + 600)  # its start (= its timestamp) is two days later
T_NO_START = without_start(transcript(later_by=50, summary="No start time."), "Tns")  # starts at its timestamp
T_NO_TIME = without_start(transcript(summary="No time at all."), "Tnt", timestamp=False)  # starts when first stored
T_MOVED = moved(transcript("T+2d", later_by=100, summary="Moved."), START + 2 * DAY)  # newer, two days later


# --- storage that counts, and crashes --------------------------------------------------------------


class Crash(BaseException):
    """The process died here. A BaseException: no ``except Exception`` in the code under test may survive it."""


def _port_methods(port: type) -> frozenset[str]:
    return frozenset(name for name in vars(port) if not name.startswith("_") and callable(getattr(port, name)))


# Every method of the ports: each reads or writes storage, so each is one numbered operation.
BLOB_OPERATIONS = _port_methods(BlobStore)
INDEX_OPERATIONS = _port_methods(CallIndex)

When = Literal["before", "after"]


@dataclass(frozen=True)
class Operation:
    number: int  # 1-based, in the order the operations started
    store: str  # "archive", "index" or "analytics"
    name: str
    key: str  # the first argument (a key or a conversation id), for reading failures

    def __str__(self) -> str:
        return f"#{self.number} {self.store}.{self.name}({self.key})"


@dataclass
class OperationLog:
    """Numbers operations; with ``crash_at``, raises ``Crash`` before that operation runs or after it ran."""

    crash_at: int | None = None
    when: When = "before"
    # Another writer's whole event, run just before operation ``pause_at`` (a deterministic interleaving).
    pause_at: int | None = None
    interrupt: Callable[[], None] | None = None
    operations: list[Operation] = field(default_factory=list)
    crashed: Operation | None = None
    interrupted: Operation | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, store: str, name: str, args: tuple[Any, ...], call: Callable[[], Any]) -> Any:
        with self._lock:
            operation = Operation(len(self.operations) + 1, store, name, _subject(args))
            self.operations.append(operation)
        if operation.number == self.pause_at and self.interrupt is not None:
            self.interrupted = operation
            self.interrupt()
        crash_here = operation.number == self.crash_at
        if crash_here and self.when == "before":
            self.crashed = operation
            raise Crash(str(operation))
        try:
            return call()
        finally:
            if crash_here:  # also when the operation raised (NotFound...): it ran, then the process died
                self.crashed = operation
                raise Crash(str(operation))


def _subject(args: tuple[Any, ...]) -> str:
    if not args:
        return ""
    first = args[0]
    return first if isinstance(first, str) else str(getattr(first, "conversation_id", type(first).__name__))


class Recording:
    """A store whose port methods go through an ``OperationLog``; anything else passes straight through."""

    def __init__(self, inner: object, store: str, log: OperationLog, operations: frozenset[str]) -> None:
        self._inner = inner
        self._store = store
        self._log = log
        self._operations = operations

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in self._operations:
            return attribute

        def operation(*args: Any, **kwargs: Any) -> Any:
            return self._log.run(self._store, name, args, lambda: attribute(*args, **kwargs))

        return operation


# --- worlds: three stores, reopened after a "crash" as a restarted process would -------------------


@dataclass
class Stores:
    blobs: BlobStore
    index: CallIndex
    analytics: BlobStore


class World:
    """A place for one run's data. ``open()`` returns stores as a freshly started process sees them."""

    name = "world"

    def open(self) -> Stores:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the last ``open`` holds (the process is gone)."""


class MemoryWorld(World):
    name = "memory"

    def __init__(self) -> None:
        self._stores = Stores(MemoryBlobStore(), MemoryCallIndex(), MemoryBlobStore())

    def open(self) -> Stores:
        return self._stores  # in-memory stores are the "disk": a restart keeps them


class FilesWorld(World):
    """FsBlobStore + SqliteCallIndex in a folder, laid out as ``callvault serve``'s data dir."""

    name = "files"

    def __init__(self, root: Path) -> None:
        self.root = root
        self._index: SqliteCallIndex | None = None

    def open(self) -> Stores:
        self.close()
        self._index = SqliteCallIndex(self.root / "index.sqlite3")
        analytics = FsBlobStore(self.root / "analytics", durable=False)  # as services/core/wiring.py builds it
        return Stores(FsBlobStore(self.root / "archive"), self._index, analytics)

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None


def archiver_for(stores: Stores, now: float) -> Archiver:
    clock = _fixed(now)
    return Archiver(stores.blobs, stores.index, clock, analytics=AnalyticsWriter(stores.analytics, clock))


def recording(stores: Stores, log: OperationLog) -> Stores:
    return Stores(
        cast(BlobStore, Recording(stores.blobs, "archive", log, BLOB_OPERATIONS)),
        cast(CallIndex, Recording(stores.index, "index", log, INDEX_OPERATIONS)),
        cast(BlobStore, Recording(stores.analytics, "analytics", log, BLOB_OPERATIONS)),
    )


def _fixed(now: float) -> Callable[[], float]:
    return lambda: now


def verify(stores: Stores, now: float) -> list[Finding]:
    """``callvault verify`` over the stores, with the default grace periods, at ``now``."""
    return ArchiveVerifier(archiver_for(stores, now), clock=_fixed(now)).run().findings


# --- end states ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndState:
    """What a world holds, in the form two runs can be compared in."""

    archive: dict[str, tuple[str | None, int, str]]  # key -> (version label, size, sha256 prefix)
    index: dict[str, dict[str, Any]]  # conversation id -> row without the write times
    # table -> dt -> conversation id -> rows, as the next merge would leave them (per-call objects
    # win over the day object within a day; calls with no rows in a table are left out).
    analytics: dict[str, dict[str, dict[str, list[Row]]]]

    def differences(self, other: "EndState") -> list[str]:
        found = []
        for name in ("archive", "index", "analytics"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                found.append(f"{name}: {_diff(mine, theirs)}")
        return found


def _diff(mine: dict[str, Any], theirs: dict[str, Any], path: str = "") -> str:
    for key in sorted(set(mine) | set(theirs)):
        if key not in theirs:
            return f"{path}{key} only here"
        if key not in mine:
            return f"{path}{key} missing"
        here, there = mine[key], theirs[key]
        if here != there:
            if isinstance(here, list) and isinstance(there, list) and len(here) == len(there):
                # rows: name the first differing row by position
                position = next(n for n, (a, b) in enumerate(zip(here, there, strict=True)) if a != b)
                here, there, key = here[position], there[position], f"{key}[{position}]"
            if isinstance(here, dict) and isinstance(there, dict):
                return _diff(here, there, f"{path}{key}/")
            return f"{path}{key}: {here!r:.300} != {there!r:.300}"
    return "equal"


def end_state(stores: Stores) -> EndState:
    archive: dict[str, tuple[str | None, int, str]] = {}
    for key in stores.blobs.list_keys():
        head = stores.blobs.head(key)
        data = stores.blobs.get_bytes(key)
        archive[key] = (head.version if head else None, len(data), hashlib.sha256(data).hexdigest()[:16])
    index = {row.conversation_id: _stable_row(row.to_dict()) for row in stores.index.scan()}
    return EndState(archive, index, analytics_view(stores.analytics))


def _stable_row(values: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if name not in VOLATILE_ROW_FIELDS}


def analytics_view(store: BlobStore) -> dict[str, dict[str, dict[str, list[Row]]]]:
    """Every table's rows by day and call, merged as ``compaction.rewrite_day`` (and
    ``verify._analytics_calls``) merge them. Unlike the verifier's view, a call with rows in two days
    appears in both: that is a call counted twice."""
    view: dict[str, dict[str, dict[str, list[Row]]]] = {}
    for table in TABLES:
        days: dict[str, dict[str, list[Row]]] = {}
        per_call: list[tuple[str, str, list[Row]]] = []
        for key in store.list_keys(f"{table}/"):
            day = parse_day_object_key(key)
            single = parse_object_key(key)
            if day is not None:
                for row in decode(store.get_bytes(key)):
                    days.setdefault(day[1], {}).setdefault(str(row.get("conversation_id")), []).append(row)
            elif single is not None:
                per_call.append((single[1], single[2], decode(store.get_bytes(key))))
            else:
                days.setdefault("?", {})[key] = []  # an object no reader expects: always a difference
        for dt, conversation_id, rows in per_call:
            days.setdefault(dt, {})[conversation_id] = rows
        view[table] = {
            dt: {cid: rows for cid, rows in calls.items() if rows or dt == "?"}
            for dt, calls in sorted(days.items())
            if any(calls.values()) or dt == "?"
        }
    return view


# --- scenarios -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """An event delivered, or (``event`` None) a merge of the closed analytics days."""

    label: str
    event: Event | None = None


MERGE = Step("merge")


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: tuple[Step, ...]
    now: float = OPEN_NOW  # the clock of every process of the run

    def __str__(self) -> str:
        return self.name


def scenario(*items: Event | Step, now: float = OPEN_NOW, name: str | None = None) -> Scenario:
    steps = tuple(item if isinstance(item, Step) else Step(item.label, item) for item in items)
    return Scenario(name or ",".join(step.label for step in steps), steps, now)


def run_step(stores: Stores, step: Step, now: float) -> None:
    if step.event is None:
        compact_closed_days(stores.analytics, now=now)
    else:
        archiver_for(stores, now).archive(step.event.parsed())


def run_steps(stores: Stores, steps: Sequence[Step], now: float) -> None:
    for step in steps:
        run_step(stores, step, now)


LATE = 2 * DAY  # verify again this much later: nothing may be left "in flight"


@dataclass(frozen=True)
class Reference:
    """A run without crash: how many operations each step made, and where it ended."""

    operations: list[int]  # per step
    state: EndState
    late_findings: list[str]  # kinds `verify` reports two days later (audio waiting for a transcript)


def reference(make_world: Callable[[], World], steps: Sequence[Step], now: float) -> Reference:
    world = make_world()
    try:
        stores = world.open()
        counts = []
        for step in steps:
            log = OperationLog()
            run_step(recording(stores, log), step, now)
            counts.append(len(log.operations))
        findings = verify(stores, now)
        assert findings == [], f"the run without crash must verify clean: {findings}"
        late = sorted(finding.kind for finding in verify(stores, now + LATE))
        return Reference(counts, end_state(stores), late)
    finally:
        world.close()


_REFERENCES: dict[tuple[str, tuple[str, ...], float], Reference] = {}


def reference_of(make_world: Callable[[], World], steps: Sequence[Step], now: float) -> Reference:
    """``reference``, computed once per world kind, steps and clock."""
    key = (make_world().name, tuple(step.label for step in steps), now)
    if key not in _REFERENCES:
        _REFERENCES[key] = reference(make_world, steps, now)
    return _REFERENCES[key]


def check_against(
    make_world: Callable[[], World], stores: Stores, now: float, orders: Sequence[Sequence[Step]]
) -> list[str]:
    """What is wrong with ``stores`` after a run: verify findings, and an end state that is not the
    no-crash end state of any of ``orders`` (the delivery orders the run may be equivalent to)."""
    problems = []
    findings = verify(stores, now)
    if findings:
        problems.append(f"verify: {[(finding.kind, finding.detail) for finding in findings]}")
    late = sorted(finding.kind for finding in verify(stores, now + LATE))
    state = end_state(stores)
    expected = [reference_of(make_world, order, now) for order in orders]
    if any(state == candidate.state and late == candidate.late_findings for candidate in expected):
        return problems
    for order, candidate in zip(orders, expected, strict=True):
        named = ",".join(step.label for step in order)
        problems.append(f"end state differs from the run {named} without crash: {state.differences(candidate.state)}")
        if late != candidate.late_findings:
            problems.append(f"verify two days later: {late} != {candidate.late_findings}")
    return problems


@dataclass(frozen=True)
class CrashAt:
    operation: int
    when: When


def interleave(
    make_world: Callable[[], World],
    first: Step,
    second: Step,
    pause_at: int,
    crash: CrashAt | None,
    now: float,
    before: Sequence[Step] = (),
    after: Sequence[Step] = (),
) -> tuple[list[str], list[str]]:
    """After ``before``, ``first`` runs until just before its operation ``pause_at``; ``second`` runs
    whole; ``first`` goes on (and dies at ``crash``, if given, and is delivered again afterwards). An
    event answered 503 (``StorageUnavailable``) is delivered again too, as the sender would. ``after``
    runs last (a merge: what serve's compactor does at start and every hour).

    Returns (what is wrong with the end state, the labels of the events answered 503).
    """
    world = make_world()
    try:
        stores = world.open()
        run_steps(stores, before, now)
        again: list[Step] = []  # not acknowledged: delivered again at the end
        unavailable: list[str] = []

        def deliver(step: Step, into: Stores) -> None:
            try:
                run_step(into, step, now)
            except StorageUnavailable:
                unavailable.append(step.label)
                again.append(step)

        log = OperationLog(
            crash_at=crash.operation if crash else None,
            when=crash.when if crash else "before",
            pause_at=pause_at,
            interrupt=lambda: deliver(second, stores),
        )
        try:
            deliver(first, recording(stores, log))
        except Crash:
            stores = world.open()  # the restarted process
            again.append(first)
        if log.interrupted is None:  # ``first`` made fewer operations than ``pause_at``
            deliver(second, stores)
        for step in again:
            run_step(stores, step, now)
        run_steps(stores, after, now)
        orders = [(*before, first, second, *after), (*before, second, first, *after)]
        return check_against(make_world, stores, now, orders), unavailable
    finally:
        world.close()


# --- what the protocol promises, whatever the order -------------------------------------------------

# Row fields the first event decides (the call's folder) or a background job writes.
PLACEMENT_FIELDS = ("phone", "archive_prefix", "transcript_key", "reported_phone", "memory_status")


def _call_version(event: Event) -> str:
    return versions.call_version(event.kind, event.timestamp, orjson.dumps(event.envelope["data"]))


def _audio_text(event: Event) -> str:
    return str(event.envelope["data"]["full_audio"])


def _audio_version(event: Event) -> str:
    return versions.audio_version(event.timestamp, [_audio_text(event).encode()])


def newest_call_event(events: Sequence[Event]) -> Event | None:
    return max((e for e in events if e.kind != "post_call_audio"), key=_call_version, default=None)


def newest_audio_event(events: Sequence[Event]) -> Event | None:
    return max((e for e in events if e.kind == "post_call_audio"), key=_audio_version, default=None)


def expected_row(event: Event) -> CallRecord:
    """The row fields ``event`` alone says (its version and size included), as the Archiver reads it."""
    parsed = event.parsed()
    if event.kind == "call_initiation_failure":
        record = payload.call_from_initiation_failure(parsed.data, parsed.event_timestamp)
    else:
        record = payload.call_from_transcription(parsed.data, parsed.event_timestamp)
    record.version = _call_version(event)
    record.transcript_bytes = len(orjson.dumps(event.envelope["data"]))
    return record


def promise_problems(stores: Stores, events: Sequence[Event]) -> list[str]:
    """Where ``stores`` break the README's promise for one call: archive object, index row and analytics
    rows hold the newest call-level event (a transcript above a failure, then the later timestamp),
    the archived audio is the newest audio, and the call has one analytics calls row, in its day."""
    conversation_id = events[0].conversation_id
    row = stores.index.get(conversation_id)
    if row is None:
        return [f"{conversation_id}: no index row"]
    problems: list[str] = []
    newest = newest_call_event(events)
    if newest is not None:
        problems += _call_problems(stores, row, newest)
    newest_audio = newest_audio_event(events)
    if newest_audio is not None:
        version = _audio_version(newest_audio)
        if row.archive_prefix is None:
            place = keys.pending_audio_key(conversation_id)
        else:
            place = keys.audio_key(row.archive_prefix, conversation_id)
        if (row.audio_key, row.audio_version) != (place, version):
            problems.append(f"row audio ({row.audio_key}, {row.audio_version}) is not the newest ({place}, {version})")
        elif stores.blobs.get_bytes(place) != base64.b64decode(_audio_text(newest_audio)):
            problems.append(f"the archived audio is not the newest ({newest_audio.label})")
    return problems


def _call_problems(stores: Stores, row: CallRecord, newest: Event) -> list[str]:
    problems = []
    cid = row.conversation_id
    expected = expected_row(newest)
    if row.archive_prefix is None or row.transcript_key != keys.transcript_key(row.archive_prefix, cid):
        problems.append(f"the row names no transcript in its folder: {row.transcript_key}")
    elif stores.blobs.get_bytes(row.transcript_key) != orjson.dumps(newest.envelope["data"]):
        problems.append(f"the archive holds another version than the newest ({newest.label})")
    ignored = {*PLACEMENT_FIELDS, "memory_updated_at"}
    if expected.started_at is None:
        expected.started_at = row.ingested_at  # no time at all: the call starts when first stored
    wrong = {
        name: (getattr(row, name), getattr(expected, name))
        for name in CALL_FIELDS
        if name not in ignored and getattr(row, name) != getattr(expected, name)
    }
    if wrong:
        problems.append(f"the row is not the newest version ({newest.label}): (row, newest) {wrong}")
    audio_in_place = row.archive_prefix is not None and stores.blobs.head(keys.audio_key(row.archive_prefix, cid))
    start = expected.started_at or row.ingested_at  # no time at all: the call starts when first stored
    wanted = [(partition_of(start) if start else "?", expected.summary, expected.status, bool(audio_in_place))]
    seen = [
        (
            dt if start else "?",
            analytics_row.get("summary"),
            analytics_row.get("status"),
            analytics_row.get("has_audio"),
        )
        for dt, calls in analytics_view(stores.analytics)["calls"].items()
        for analytics_row in calls.get(cid, [])
    ]
    if seen != wanted:
        problems.append(f"analytics calls rows (day, summary, status, has_audio) {seen} != {wanted}")
    return problems


# --- single interleavings, for the named regression tests ------------------------------------------------


def step_of(event: Event) -> Step:
    return Step(event.label, event)


def deliver(stores: Stores, *events: Event, now: float = OPEN_NOW) -> list[str]:
    """Deliver whole events; their outcomes ("stored", "stale", ...)."""
    return [archiver_for(stores, now).archive(event.parsed()).outcome for event in events]


def delivering(stores: Stores, *events: Event) -> Callable[[], None]:
    """An interruption for ``OperationLog``: ``events`` delivered whole, as by another process."""

    def interrupt() -> None:
        deliver(stores, *events)

    return interrupt


def operations_of(before: Sequence[Event], event: Event, now: float = OPEN_NOW) -> list[Operation]:
    """The operations ``event`` makes after ``before`` were delivered, without crash."""
    stores = MemoryWorld().open()
    deliver(stores, *before, now=now)
    log = OperationLog()
    run_step(recording(stores, log), step_of(event), now)
    return log.operations


def number_of(operations: list[Operation], store: str, name: str, key: str = "") -> int:
    """The number of the first ``store.name`` operation on a key containing ``key``."""
    return next(op.number for op in operations if (op.store, op.name) == (store, name) and key in op.key)

"""Concurrent deliveries of the events of many calls end where a sequential delivery ends.

1. In process, deterministic: after some events (or none), X (an event or a merge of closed
   analytics days) stops before each of its operations k in turn, Y runs whole, X goes on; and from
   that interleaving X also dies at each of its later operations j (before / after) and is delivered
   again. Every interleaving of a whole step into another, every crash point after it: the end state
   must be the no-crash end state of X,Y or of Y,X, and `verify` must find nothing. (An interleaving
   of two steps op by op would be C(n+m, n) runs; a whole step at every point of the other is the
   first-order set, and found every race reported in test_protocol_gaps.py.)
2. The real `callvault serve` (files + SQLite; its compactor merging the closed days meanwhile):
   ~20 calls x (3 transcript versions, an initiation failure, 2 audios), each delivered twice,
   shuffled (seed printed; ``CALLVAULT_TEST_SEED`` replays one), posted from 8 keep-alive clients.
3. The same deliveries driving ``Archiver.archive`` from 8 threads over moto's S3 + DynamoDB, and
   over a real S3 (SeaweedFS) with SQLite.

Everything is bounded in count and time; nothing asserts how long anything took.
"""

import os
import queue
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import boto3
import httpx
import orjson
import pytest
from botocore.config import Config
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from services.analytics.compaction import compact_closed_days
from services.analytics.writer import AnalyticsWriter
from services.core.adapters.dynamo_call_index import DynamoCallIndex
from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.s3_blob_store import S3BlobStore
from services.core.adapters.sqlite_call_index import SqliteCallIndex
from services.core.domain import keys
from services.core.domain.errors import StorageUnavailable
from services.ingest.service import Archiver
from services.ingest.verify import ArchiveVerifier
from tests.conftest_seaweed import SeaweedS3
from tests.protocol.harness import (
    A1,
    A2,
    CLOSED_NOW,
    CONV,
    F_LATER_DAY,
    MERGE,
    OPEN_NOW,
    T1,
    T2,
    T_MOVED,
    T_NO_TIME,
    A,
    Crash,
    CrashAt,
    Event,
    F,
    MemoryWorld,
    OperationLog,
    Step,
    Stores,
    T,
    When,
    audio,
    deliver,
    delivering,
    failure,
    for_call,
    interleave,
    number_of,
    operations_of,
    promise_problems,
    recording,
    reference_of,
    run_step,
    step_of,
    transcript,
    verify,
)
from tests.support import fake_aws_environment, serve_archive, signed_headers

# --- 1. deterministic interleavings ---------------------------------------------------------------------

WHENS: tuple[When, ...] = ("before", "after")


@dataclass(frozen=True)
class Pair:
    """``first`` interrupted by ``second``, after ``before``, with the clock at ``now``."""

    first: Step
    second: Step
    before: tuple[Step, ...] = ()
    now: float = OPEN_NOW
    after: tuple[Step, ...] = ()  # run after the redeliveries, in every run and every reference

    def __str__(self) -> str:
        prefix = "".join(f"{step.label}," for step in self.before)
        suffix = "".join(f",{step.label}" for step in self.after)
        closed = "closed-day:" if self.now == CLOSED_NOW else ""
        return f"{closed}{prefix}{self.first.label}-interrupted-by-{self.second.label}{suffix}"


def _pair(
    first: Event | Step,
    second: Event | Step,
    *before: Event | Step,
    now: float = OPEN_NOW,
    after: tuple[Step, ...] = (),
) -> Pair:
    def step(item: Event | Step) -> Step:
        return item if isinstance(item, Step) else step_of(item)

    return Pair(step(first), step(second), tuple(step(item) for item in before), now, after)


PAIRS = [
    _pair(T, A),
    _pair(A, T),
    _pair(T1, T2),
    _pair(T2, T1),
    _pair(F, T),
    _pair(T, F),
    _pair(A1, A2),
    _pair(A2, A1),
    _pair(A, F),
    _pair(T, A2),
    _pair(F_LATER_DAY, T),
    _pair(T, F_LATER_DAY),
    _pair(T, T),  # a sender's retry racing the first delivery
    _pair(A, A),
    # The call's day moves (F+2d, then T): audio racing the move.
    _pair(T, A, F_LATER_DAY),
    _pair(A, T, F_LATER_DAY),
    # A closed day: late per-call objects, and the merge that folds them in, racing ingest.
    _pair(T, A, now=CLOSED_NOW),
    _pair(A, MERGE, T, now=CLOSED_NOW),
    _pair(MERGE, A, T, now=CLOSED_NOW),
    _pair(T2, MERGE, T1, now=CLOSED_NOW),
    _pair(MERGE, T2, T1, now=CLOSED_NOW),
    _pair(A, T2, T1, MERGE, now=CLOSED_NOW),
    _pair(T2, A, T1, MERGE, now=CLOSED_NOW),
    _pair(T, MERGE, F_LATER_DAY, MERGE, now=CLOSED_NOW),
    # The start moves out of a merged day while audio arrives (mark_audio copies the merged row). Where
    # one of them dies right after the copy, or between the row's move and its second clean, the copy
    # is left behind until the next merge drops it (test_protocol_gaps): so a merge ends these runs.
    _pair(T_MOVED, A, T, MERGE, now=CLOSED_NOW, after=(MERGE,)),
    _pair(A, T_MOVED, T, MERGE, now=CLOSED_NOW, after=(MERGE,)),
    # No time at all: the call starts when first stored (five days after START), a timed version moves it.
    _pair(T_NO_TIME, A, now=CLOSED_NOW),
    _pair(A, T_NO_TIME, now=CLOSED_NOW),
    _pair(T_NO_TIME, T, now=CLOSED_NOW),
    _pair(T, T_NO_TIME, now=CLOSED_NOW),
    _pair(T_NO_TIME, T_NO_TIME, now=CLOSED_NOW),
]
# Every closed-day pair again, ending with a merge (what serve's compactor does at start and hourly):
# the merge must keep what the run converged to, whichever objects a crash left for it.
PAIRS += [replace(pair, after=(MERGE,)) for pair in PAIRS if pair.now == CLOSED_NOW and not pair.after]


@pytest.mark.parametrize("pair", PAIRS, ids=str)
def test_concurrency_every_event_interleaved_into_another_converges(pair: Pair) -> None:
    started = time.monotonic()
    x, y, before, now = pair.first, pair.second, pair.before, pair.now
    count = reference_of(MemoryWorld, (*before, x), now).operations[len(before)]
    failures: list[str] = []
    unavailable: list[str] = []
    runs = 0
    for pause_at in range(1, count + 1):
        crashes: list[CrashAt | None] = [None]
        crashes += [CrashAt(j, when) for j in range(pause_at, count + 1) for when in WHENS]
        for crash in crashes:
            runs += 1
            problems, answered_503 = interleave(MemoryWorld, x, y, pause_at, crash, now, before, pair.after)
            unavailable += [f"{label} (paused at #{pause_at}, crash {crash})" for label in answered_503]
            if problems:
                died = f", then {x.label} dies {crash.when} #{crash.operation}" if crash else ""
                failures.append(f"{y.label} runs before #{pause_at} of {x.label}{died}: " + "; ".join(problems))
    print(
        f"\n{pair}: {runs} interleavings and crash points in "
        f"{time.monotonic() - started:.2f}s, {len(failures)} failed; 503 and retried: {unavailable or 'none'}"
    )
    shown = "\n".join(failures[:20])
    assert not failures, f"{len(failures)} of {runs} runs do not converge:\n{shown}"


# --- regressions found by the interleavings ------------------------------------------------------------


def test_concurrency_audio_parked_by_a_delivery_that_died_is_placed_when_it_is_delivered_again() -> None:
    """A reads no placement, T runs whole (placing the call), A parks its audio under _pending-audio/
    and dies before recording it. The redelivered A sees the call placed and writes the final key;
    it must also finish the parked copy (found by the interleavings of A and T; fixed in 482a3ad by
    the audio redelivery placing a parked copy it finds).
    """
    operations = operations_of([], A)
    parked = number_of(operations, "archive", "put_stream_if", PENDING_KEY)
    stores = MemoryWorld().open()
    log = OperationLog(parked, "after", pause_at=2, interrupt=delivering(stores, T))
    with pytest.raises(Crash):
        run_step(recording(stores, log), step_of(A), OPEN_NOW)
    assert log.interrupted is not None and str(log.interrupted).startswith("#2 archive.head(_pending-audio/")
    deliver(stores, A)
    assert PENDING_KEY not in list(stores.blobs.list_keys())
    assert verify(stores, OPEN_NOW) == []


PENDING_KEY = keys.pending_audio_key(CONV)


# --- the deliveries of 2 and 3 ---------------------------------------------------------------------------

CALLS = 20
COPIES = 2  # every event delivered this many times
THREADS = 8
MAX_ATTEMPTS = 10  # per delivery answered 503
# One connection per worker thread and the merger (botocore's default pool of 10 would churn).
POOL = Config(signature_version="s3v4", max_pool_connections=THREADS * 2)


def _seed() -> int:
    configured = os.environ.get("CALLVAULT_TEST_SEED")
    seed = int(configured) if configured else random.SystemRandom().randrange(2**32)
    print(f"\nCALLVAULT_TEST_SEED={seed}")
    return seed


@dataclass(frozen=True)
class CallPlan:
    conversation_id: str
    events: list[Event]


def plan_calls(count: int = CALLS) -> list[CallPlan]:
    """Per call: 3 transcript versions (later ones with another analysis), a failure whose timestamp
    is the newest of all (a transcript must beat it anyway), and 2 recordings."""
    plans = []
    for number in range(count):
        cid = f"conv_concurrency_{number:03d}"
        transcripts = [
            for_call(transcript(f"T{v}", later_by=100 * v, summary=f"Analysis {v} of call {number}."), cid)
            for v in range(3)
        ]
        late_failure = for_call(failure("F", at=transcripts[-1].timestamp + 500), cid)
        audios = [for_call(audio("A1", later_by=10), cid), for_call(audio("A2", later_by=20, take=b"take 2"), cid)]
        plans.append(CallPlan(cid, [*transcripts, late_failure, *audios]))
    return plans


def shuffled_deliveries(plans: list[CallPlan], seed: int) -> list[Event]:
    deliveries = [event for plan in plans for event in plan.events for _copy in range(COPIES)]
    random.Random(seed).shuffle(deliveries)
    return deliveries


def broken_promises(stores: Stores, plans: list[CallPlan]) -> list[str]:
    """Each call must hold its newest transcript (row, archive, analytics) and its newest audio."""
    return [f"{plan.conversation_id}: {problem}" for plan in plans for problem in promise_problems(stores, plan.events)]


# --- 2. the real server -------------------------------------------------------------------------------------


@dataclass
class Tally:
    statuses: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    redelivered: int = 0

    def count(self, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1


def post_all(url: str, deliveries: list[Event], tally: Tally) -> list[str]:
    """Post from THREADS keep-alive clients; a 503 goes back on the queue (at most MAX_ATTEMPTS times)."""
    work: queue.Queue[tuple[Event, int]] = queue.Queue()
    for event in deliveries:
        work.put((event, 1))
    problems: list[str] = []

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while True:
                try:
                    event, attempt = work.get_nowait()
                except queue.Empty:
                    return
                body = event.body
                response = client.post("/webhooks/elevenlabs", content=body, headers=signed_headers(body))
                tally.count(response.status_code)
                if response.status_code == 503 and attempt < MAX_ATTEMPTS:
                    with tally.lock:
                        tally.redelivered += 1
                    time.sleep(0.05 * attempt)
                    work.put((event, attempt + 1))
                elif response.status_code != 200:
                    problems.append(f"{event.conversation_id} {event.label}: {response.status_code} {response.text}")

    threads = [threading.Thread(target=worker, name=f"poster-{n}") for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    if any(thread.is_alive() for thread in threads):
        problems.append("posting did not finish within 240 s")
    return problems


def run_verify(data_dir: Path) -> tuple[int, dict[str, Any]]:
    """`callvault verify --json` as a subprocess, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    env["CALLVAULT_MEMORY_BACKEND"] = "none"
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "verify", "--json", "--data-dir", str(data_dir)],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    try:
        report: dict[str, Any] = orjson.loads(done.stdout)
    except orjson.JSONDecodeError:
        report = {"unparsed": done.stdout.decode(errors="replace"), "stderr": done.stderr.decode(errors="replace")}
    return done.returncode, report


@contextmanager
def local_stores(data_dir: Path) -> Iterator[Stores]:
    """The data dir of a stopped server, opened as it opens it."""
    index = SqliteCallIndex(data_dir / "index.sqlite3")
    try:
        yield Stores(FsBlobStore(data_dir / "archive"), index, FsBlobStore(data_dir / "analytics"))
    finally:
        index.close()


@pytest.mark.e2e
def test_concurrency_real_server_ends_at_the_newest_version_of_every_call(tmp_path: Path) -> None:
    seed = _seed()
    plans = plan_calls()
    deliveries = shuffled_deliveries(plans, seed)
    data_dir = tmp_path / "data"
    tally = Tally()
    with serve_archive(data_dir) as served:
        problems = post_all(served.url, deliveries, tally)
        logs = served.logs()
    print(
        f"{len(deliveries)} deliveries, {THREADS} clients: statuses {tally.statuses}, {tally.redelivered} redelivered"
    )
    assert not problems, f"seed {seed}: {problems[:10]}\n{logs[-3000:]}"
    assert set(tally.statuses) <= {200, 503}, f"seed {seed}: {tally.statuses}"
    code, report = run_verify(data_dir)
    assert (code, report.get("findings")) == (0, 0), f"seed {seed}: {report}"
    with local_stores(data_dir) as stores:
        found = broken_promises(stores, plans)
    assert not found, f"seed {seed}: " + "\n".join(found[:20])


# --- 3. in process over S3 and DynamoDB ---------------------------------------------------------------------


def archive_all(archiver: Archiver, deliveries: list[Event]) -> tuple[list[str], int]:
    """``Archiver.archive`` from THREADS threads; StorageUnavailable (a 503) is retried, anything else fails."""
    retried = 0
    lock = threading.Lock()

    def deliver(event: Event) -> str | None:
        nonlocal retried
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                archiver.archive(event.parsed())
                return None
            except StorageUnavailable:
                with lock:
                    retried += 1
                time.sleep(0.02 * attempt)
            except Exception as exc:  # a 500: never allowed
                return f"{event.conversation_id} {event.label}: {type(exc).__name__}: {exc}"
        return f"{event.conversation_id} {event.label}: still 503 after {MAX_ATTEMPTS} attempts"

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(deliver, deliveries))
    return [result for result in results if result], retried


def check_in_process(stores: Stores, plans: list[CallPlan], seed: int) -> None:
    clock: Callable[[], float] = time.time
    archiver = Archiver(stores.blobs, stores.index, clock, analytics=AnalyticsWriter(stores.analytics, clock))
    deliveries = shuffled_deliveries(plans, seed)
    # The calls' day is closed (the clock is today): every analytics write is a late per-call object,
    # and a merger folds them into the day objects all along, as the hourly compaction would.
    done = threading.Event()
    merges: list[int] = []
    merge_errors: list[str] = []

    def merge_meanwhile() -> None:
        while not done.is_set():
            try:
                merges.append(compact_closed_days(stores.analytics).objects_merged)
            except StorageUnavailable as exc:  # a merge racing writes gives up after 20 rounds: next run
                merge_errors.append(str(exc))
            done.wait(0.05)

    merger = threading.Thread(target=merge_meanwhile, name="merger")
    merger.start()
    try:
        failures, retried = archive_all(archiver, deliveries)
    finally:
        done.set()
        merger.join(timeout=120)
    print(
        f"{len(deliveries)} deliveries from {THREADS} threads, {retried} retried after StorageUnavailable; "
        f"{len(merges)} merges meanwhile folded {sum(merges)} objects ({len(merge_errors)} gave up)"
    )
    assert not failures, f"seed {seed}: {failures[:10]}"
    report = ArchiveVerifier(archiver).run()
    assert report.findings == [], f"seed {seed}: {report.findings[:10]}"
    found = broken_promises(stores, plans)
    assert not found, f"seed {seed}: " + "\n".join(found[:20])


@pytest.fixture
def moto_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """moto in process, one request at a time (as tests/contract/conftest.py: moto is not thread-safe)."""
    fake_aws_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    lock = threading.Lock()
    process_request = BotocoreStubber.process_request

    def one_request_at_a_time(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return process_request(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", one_request_at_a_time)
    with mock_aws():
        yield


def test_concurrency_moto_s3_and_dynamodb_end_at_the_newest_version_of_every_call(moto_aws: None) -> None:
    seed = _seed()
    client = boto3.client("s3", config=POOL)
    for bucket in ("callvault-archive-concurrency", "callvault-analytics-concurrency"):
        client.create_bucket(Bucket=bucket)
    index = DynamoCallIndex("callvault-calls-concurrency")
    index.create_table()
    archive, analytics = (
        S3BlobStore("callvault-archive-concurrency", client),
        S3BlobStore("callvault-analytics-concurrency", client),
    )
    stores = Stores(archive, index, analytics)
    check_in_process(stores, plan_calls(), seed)


def test_concurrency_real_s3_seaweedfs_ends_at_the_newest_version_of_every_call(
    seaweed: SeaweedS3, tmp_path: Path
) -> None:
    seed = _seed()
    client = boto3.client(
        "s3",
        endpoint_url=seaweed.endpoint,
        aws_access_key_id=seaweed.access_key,
        aws_secret_access_key=seaweed.secret_key,
        region_name="us-east-1",
        config=POOL.merge(Config(s3={"addressing_style": "path"})),
    )
    names = [f"concurrency-{role}-{uuid.uuid4().hex[:8]}" for role in ("archive", "analytics")]
    for name in names:
        client.create_bucket(Bucket=name)
    index = SqliteCallIndex(tmp_path / "index.sqlite3")
    try:
        stores = Stores(S3BlobStore(names[0], client), index, S3BlobStore(names[1], client))
        check_in_process(stores, plan_calls(), seed)
    finally:
        index.close()

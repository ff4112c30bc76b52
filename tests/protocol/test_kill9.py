"""The crash-point enumeration end to end: a real `callvault serve` killed by SIGKILL at a storage operation.

For each scenario a run without kill (``tests/protocol/crashing_serve.py`` logging every operation
made while archiving) counts the operations of each event and records the end state. Then for each
crash point: a fresh data dir, a server that SIGKILLs itself before (or after) operation k of event
i, the events before i posted (200), event i posted (the connection drops; the process is reaped
with signal 9 and its operation log ends at exactly that operation), a normal `serve` restarted on
the same data dir, event i delivered again and then the rest (200 each), the server stopped
(SIGTERM), `callvault verify --json` run on the data dir (exit 0, no findings), and the end state
(archive files with their version attributes, index rows, analytics rows) equal to the run without kill.

Processes come from one fork server (``crashing_serve --fork-server``): every server and every
`verify` is a child running the CLI entry point ``services.cli.main:cli``, as `callvault` does,
without 2-4 s of interpreter start each. One test (``..._without_the_fork_server``) checks one crash
point with plain ``python -m`` processes, to show the fork server changes nothing.

Budget (~3 minutes on 2 cores): scenario T enumerates every operation before and after (28
points). A,T and T,A enumerate every operation "after" plus "before" the first operation of each
event: "before k" leaves the same durable state as "after k-1" (nothing durable happens between
two port operations with memory off, and test_crash_points.py checks both sides of every operation
in process), so the points skipped are duplicates, not samples. ``CALLVAULT_TEST_KILL9_FULL=1``
enumerates both sides of every operation in all scenarios.
"""

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.sqlite_call_index import SqliteCallIndex
from tests.protocol.harness import A, EndState, Event, Stores, T, When, end_state, moved
from tests.support import SECRET, free_port, signed_headers, wait_until_ready

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
# The calls start an hour ago: their analytics day is open, so no late write wakes the compactor and
# every run makes the same operations in the same order.
NOW_START = int(time.time()) - 3_600
SCENARIOS = {
    "T": [moved(T, NOW_START)],
    "A,T": [moved(A, NOW_START), moved(T, NOW_START)],
    "T,A": [moved(T, NOW_START), moved(A, NOW_START)],
}
FULL = os.environ.get("CALLVAULT_TEST_KILL9_FULL") == "1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
WHENS: tuple[When, ...] = ("before", "after")


# --- the fork server and its children -------------------------------------------------------------------


class ForkServer:
    """``python -m tests.protocol.crashing_serve --fork-server``: one JSON command in, one JSON answer out."""

    def __init__(self, workdir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
        self.log = workdir / "fork-server.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.protocol.crashing_serve", "--fork-server"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=REPO,
                env=env,
            )
        ready = self._read(60)
        assert "ready" in ready, ready

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        # selectors, not select.select: after a long test session this process's descriptors pass 1,024.
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            readable = selector.select(timeout)
        if not readable:
            raise TimeoutError(f"the fork server did not answer within {timeout}s:\n{self.log.read_text()}")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server exited:\n{self.log.read_text()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def command(self, **command: Any) -> dict[str, Any]:
        """Send one command; its own ``timeout`` (if any) bounds the wait for the answer too."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        self.process.stdin.flush()
        return self._read(float(command.get("timeout", 0)) + 30)

    def wait(self, pid: int, timeout: float) -> dict[str, Any]:
        return self.command(command="wait", pid=pid, timeout=timeout)

    def close(self) -> None:
        """EOF: the fork server kills any child still running, then exits."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def forks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    server = ForkServer(tmp_path_factory.mktemp("fork-server"))
    try:
        yield server
    finally:
        server.close()


@dataclass
class Served:
    pid: int
    url: str
    log: Path
    forks: ForkServer
    reaped: dict[str, Any] | None = None

    def stop(self) -> dict[str, Any]:
        """SIGTERM, bounded; SIGKILL if it does not stop. Only this child is signalled."""
        if self.reaped is None:
            os.kill(self.pid, signal.SIGTERM)
            status = self.forks.wait(self.pid, STOP_TIMEOUT)
            if "alive" in status:
                os.kill(self.pid, signal.SIGKILL)
                status = self.forks.wait(self.pid, STOP_TIMEOUT)
            self.reaped = status
        return self.reaped


def serve_env(memory: bool = False, **test_env: str) -> dict[str, str]:
    # The use case on the server's own thread: the hooks that number and kill at operations wrap the
    # adapters of this process, not of spawned ingest processes (those run the same use case; a child
    # killed mid-write is tests/integration/test_ingest_process.py's, with `verify` as the oracle).
    env = {
        "CALLVAULT_WEBHOOK_SECRET": SECRET,
        "CALLVAULT_MEMORY_BACKEND": "oss" if memory else "none",
        "CALLVAULT_INGEST_PROCESSES": "0",
    }
    if memory:
        env["CALLVAULT_AGENT_WEBHOOK_SECRET"] = "asec_kill9"
    return {**env, **test_env}


@contextmanager
def serving(forks: ForkServer, data_dir: Path, env: dict[str, str], name: str) -> Iterator[Served]:
    """A `callvault serve` child on 127.0.0.1, ready (GET /healthz) within START_TIMEOUT; stopped after."""
    port = free_port()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"{name}-{port}.log"
    args = ["serve", "--data-dir", str(data_dir), "--port", str(port)]
    answer = forks.command(command="serve", env=env, args=args, output=str(log))
    served = Served(int(answer["pid"]), f"http://127.0.0.1:{port}", log, forks)

    def exited() -> str | None:
        status = forks.wait(served.pid, 0)
        if "alive" in status:
            return None
        served.reaped = status
        return f" ({status})"

    try:
        wait_until_ready(
            "callvault serve",
            lambda: httpx.get(served.url + "/healthz", timeout=1).status_code == 200,
            exited,
            log,
            START_TIMEOUT,
            interval=0.05,
        )
        yield served
    finally:
        served.stop()


def post(client: httpx.Client, event: Event) -> httpx.Response:
    body = event.body
    return client.post("/webhooks/elevenlabs", content=body, headers=signed_headers(body))


def deliver(client: httpx.Client, event: Event, attempts: int = 5) -> httpx.Response:
    """Post as ElevenLabs would: a 503 (nothing acknowledged: busy, storage) is delivered again, a few times."""
    for attempt in range(1, attempts + 1):
        response = post(client, event)
        if response.status_code != 503 or attempt == attempts:
            return response
        time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def verify_cli(forks: ForkServer, data_dir: Path) -> tuple[int, dict[str, Any]]:
    """`callvault verify --json --data-dir DIR`, exit code and report."""
    output = data_dir.parent / "verify.json"
    answer = forks.command(
        command="verify",
        env=serve_env(),
        args=["verify", "--json", "--data-dir", str(data_dir)],
        output=str(output),
        errors=str(output.with_suffix(".stderr")),
        timeout=120,
    )
    text = output.read_text()
    try:
        report: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError:
        report = {"unparsed": text}
    return int(answer.get("exit", -1)), report


def local_end_state(data_dir: Path) -> EndState:
    """The data dir's end state; ``memory_status`` left out (the memory worker writes it when it gets to it)."""
    index = SqliteCallIndex(data_dir / "index.sqlite3")
    try:
        state = end_state(Stores(FsBlobStore(data_dir / "archive"), index, FsBlobStore(data_dir / "analytics")))
    finally:
        index.close()
    for row in state.index.values():
        row.pop("memory_status", None)
    return state


MEMORY_TIMEOUT = 90.0


def wait_for_memory(client: httpx.Client, data_dir: Path, conversation_id: str) -> str | None:
    """The call's memory_status once it is final ("done"/"failed"), or the last seen after MEMORY_TIMEOUT."""
    auth = {"Authorization": f"Bearer {(data_dir / 'api-key').read_text().strip()}"}
    deadline = time.monotonic() + MEMORY_TIMEOUT
    status = None
    while time.monotonic() < deadline:
        response = client.get(f"/calls/{conversation_id}", headers=auth)
        status = response.json().get("memory_status") if response.status_code == 200 else None
        if status in ("done", "failed"):
            break
        time.sleep(0.25)
    return status


# --- reference and crash points --------------------------------------------------------------------------


@dataclass
class Reference:
    operations: list[list[str]]  # per event, the "<store>.<method>" of each operation
    state: EndState


def run_reference(forks: ForkServer, workdir: Path, events: list[Event]) -> Reference:
    """The run without kill (memory off); the same operations happen with memory on (the memory job
    is recorded outside the ports), so both compare with it."""
    data_dir = workdir / "data"
    log = workdir / "operations.log"
    env = serve_env(CALLVAULT_TEST_OPERATIONS_LOG=str(log))
    with serving(forks, data_dir, env, "reference") as served, httpx.Client(base_url=served.url, timeout=30) as client:
        for event in events:
            response = deliver(client, event)
            assert response.status_code == 200, response.text
    code, report = verify_cli(forks, data_dir)
    assert (code, report.get("findings")) == (0, 0), report
    operations: list[list[str]] = [[] for _ in events]
    for line in log.read_text().splitlines():
        event_number, _number, operation = line.split()[:3]
        operations[int(event_number) - 1].append(operation)
    assert all(operations), f"every event makes operations: {operations}"
    return Reference(operations, local_end_state(data_dir))


_REFERENCES: dict[str, Reference] = {}


def reference_for(forks: ForkServer, tmp_path: Path, name: str) -> Reference:
    if name not in _REFERENCES:
        _REFERENCES[name] = run_reference(forks, tmp_path / "reference", SCENARIOS[name])
    return _REFERENCES[name]


@dataclass(frozen=True)
class KillPoint:
    event: int  # 0-based
    operation: int  # 1-based within the event
    when: When


def kill_points(reference: Reference, full: bool) -> list[KillPoint]:
    points = []
    for event, operations in enumerate(reference.operations):
        for number in range(1, len(operations) + 1):
            for when in WHENS:
                if full or when == "after" or number == 1:
                    points.append(KillPoint(event, number, when))
    return points


def kill_and_recover(
    forks: ForkServer,
    workdir: Path,
    events: list[Event],
    reference: Reference,
    point: KillPoint,
    memory: bool = False,
) -> list[str]:
    data_dir = workdir / "data"
    log = workdir / "operations.log"
    offset = sum(len(operations) for operations in reference.operations[: point.event])
    kill_at = offset + point.operation
    env = serve_env(
        memory=memory,
        CALLVAULT_TEST_KILL_AT=str(kill_at),
        CALLVAULT_TEST_KILL_WHEN=point.when,
        CALLVAULT_TEST_OPERATIONS_LOG=str(log),
    )
    with serving(forks, data_dir, env, "killed") as served, httpx.Client(base_url=served.url, timeout=30) as client:
        for event in events[: point.event]:
            response = deliver(client, event)
            if response.status_code != 200:
                return [f"before the kill: {event.label} answered {response.status_code} {response.text}"]
        try:
            response = post(client, events[point.event])
            return [f"the server answered {response.status_code} instead of dying"]
        except httpx.TransportError:
            pass  # the connection dropped: nothing was acknowledged
        status = forks.wait(served.pid, STOP_TIMEOUT)
        served.reaped = status if "alive" not in status else None
    if status.get("signal") != signal.SIGKILL:
        return [f"the server did not die by SIGKILL: {status}"]
    last = log.read_text().splitlines()[-1].split()
    expected = [str(point.event + 1), str(kill_at), reference.operations[point.event][point.operation - 1], "KILL"]
    if last != expected:
        return [f"died at {last}, not at {expected}"]
    restarted = serving(forks, data_dir, serve_env(memory=memory), "restarted")
    with restarted as served, httpx.Client(base_url=served.url, timeout=30) as client:
        for event in events[point.event :]:
            response = deliver(client, event)
            if response.status_code != 200:
                return [f"redelivery of {event.label} answered {response.status_code} {response.text}"]
        if memory:
            memory_status = wait_for_memory(client, data_dir, events[0].conversation_id)
            if memory_status != "done":
                return [f"the caller-memory job did not finish after the kill: memory_status {memory_status!r}"]
    problems = []
    code, report = verify_cli(forks, data_dir)
    if (code, report.get("findings")) != (0, 0):
        problems.append(f"callvault verify exited {code}: {report.get('items', report)}")
    differences = local_end_state(data_dir).differences(reference.state)
    if differences:
        problems.append(f"end state differs from the run without kill: {differences}")
    return problems


def enumerate_kills(forks: ForkServer, tmp_path: Path, name: str, full: bool) -> tuple[int, list[str]]:
    events = SCENARIOS[name]
    reference = reference_for(forks, tmp_path, name)
    failures = []
    points = kill_points(reference, full)
    started = time.monotonic()
    for number, point in enumerate(points):
        workdir = tmp_path / f"kill-{number}"
        problems = kill_and_recover(forks, workdir, events, reference, point)
        if problems:
            operation = reference.operations[point.event][point.operation - 1]
            label = events[point.event].label
            failures.append(f"SIGKILL {point.when} #{point.operation} {operation} of {label}: " + "; ".join(problems))
    counts = ", ".join(f"{event.label}:{len(ops)}" for event, ops in zip(events, reference.operations, strict=True))
    print(
        f"\n[kill -9] {name}: {len(points)} crash points ({'every side' if full else 'after + first before'}; "
        f"operations per event {counts}) in {time.monotonic() - started:.1f}s, {len(failures)} failed"
    )
    return len(points), failures


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_kill9_every_crash_point_of_a_real_server_converges(forks: ForkServer, tmp_path: Path, name: str) -> None:
    enumerated, failures = enumerate_kills(forks, tmp_path, name, full=FULL or name == "T")
    shown = "\n".join(failures[:15])
    assert not failures, f"{len(failures)} of {enumerated} crash points do not converge:\n{shown}"


# The kills that matter to caller memory: the row carries memory_status from index.save_call on, and the
# job is recorded after the last storage operation (so a kill there leaves a row saying "pending" and no
# job). Mem0 loads per server start (~3 s): these two points, not all 28, keep the file in its budget.
MEMORY_POINTS: tuple[tuple[str, When], ...] = (("index.save_call", "after"), ("last", "after"))


def test_kill9_with_caller_memory_on_the_job_survives_the_kill(forks: ForkServer, tmp_path: Path) -> None:
    events = SCENARIOS["T"]
    reference = reference_for(forks, tmp_path, "T")
    operations = reference.operations[0]
    failures = []
    for number, (operation, when) in enumerate(MEMORY_POINTS):
        index = len(operations) if operation == "last" else operations.index(operation) + 1
        point = KillPoint(0, index, when)
        problems = kill_and_recover(forks, tmp_path / f"kill-{number}", events, reference, point, memory=True)
        failures += [f"SIGKILL {when} #{index} {operations[index - 1]}: {problem}" for problem in problems]
    print(f"\n[kill -9, memory on] T: {len(MEMORY_POINTS)} crash points, {len(failures)} failed")
    assert not failures, "\n".join(failures)


# --- the same, with plain processes -------------------------------------------------------------------------


@dataclass
class PlainServer:
    process: subprocess.Popen[bytes]
    url: str


@contextmanager
def process_serving(module: str, data_dir: Path, env: dict[str, str], name: str) -> Iterator[PlainServer]:
    """``python -m <module> serve`` (as tests/support.py's serve_archive), ready within START_TIMEOUT."""
    port = free_port()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{name}-{port}.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    child_env.update(env)
    command = [sys.executable, "-m", module, "serve", "--data-dir", str(data_dir), "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(
            f"{module} serve",
            lambda: httpx.get(url + "/healthz", timeout=1).status_code == 200,
            lambda: "" if process.poll() is not None else None,
            log_path,
            START_TIMEOUT,
        )
        yield PlainServer(process, url)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_kill9_without_the_fork_server(forks: ForkServer, tmp_path: Path) -> None:
    """One crash point (T dies right after its index row is written) with plain processes: the launcher
    as ``python -m tests.protocol.crashing_serve``, the restart as ``python -m services.cli serve``,
    and ``python -m services.cli verify --json``, to show the fork server changes nothing."""
    events = SCENARIOS["T"]
    reference = reference_for(forks, tmp_path, "T")
    kill_at = reference.operations[0].index("index.save_call") + 1
    data_dir, log = tmp_path / "plain" / "data", tmp_path / "plain" / "operations.log"
    env = serve_env(
        CALLVAULT_TEST_KILL_AT=str(kill_at), CALLVAULT_TEST_KILL_WHEN="after", CALLVAULT_TEST_OPERATIONS_LOG=str(log)
    )
    killed = process_serving("tests.protocol.crashing_serve", data_dir, env, "killed")
    with killed as served, httpx.Client(base_url=served.url, timeout=30) as client:
        with pytest.raises(httpx.TransportError):
            post(client, events[0])
        assert served.process.wait(timeout=STOP_TIMEOUT) == -signal.SIGKILL
    assert log.read_text().splitlines()[-1] == f"1 {kill_at} index.save_call KILL"
    restarted = process_serving("services.cli", data_dir, serve_env(), "restarted")
    with restarted as served, httpx.Client(base_url=served.url, timeout=30) as client:
        response = deliver(client, events[0])
        assert response.status_code == 200, response.text
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "verify", "--json", "--data-dir", str(data_dir)],
        capture_output=True,
        env={**child_env, **serve_env()},
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert (done.returncode, json.loads(done.stdout)["findings"]) == (0, 0), done.stdout
    assert local_end_state(data_dir).differences(reference.state) == []

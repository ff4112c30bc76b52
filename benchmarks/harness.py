"""What the ingest benchmarks share: the code under test, a real `callvault serve`, the floor, the load.

- ``CodeUnderTest``: which tree is measured (this checkout, or a copy such as ``git archive HEAD``
  extracted to /tmp) and its commit, with ``+dirty`` when ``services/`` differs from that commit.
  Every child process runs with that tree first on PYTHONPATH and as its working directory, and
  ``check_resolution`` proves ``import services`` really loads it.
- ``serve``: the real CLI (``python -m services.cli serve``) on 127.0.0.1, started and stopped
  (SIGTERM, then kill after 30 s) by us; only that process id is ever signalled.
- ``measure_floor``: HMAC-SHA256 verify + ``orjson.loads`` + one durable write (temp file, fsync,
  rename) of the same bytes, wall and CPU per payload, in this process.
- ``run_load``: keep-alive ``http.client`` connections from a second (spawned) process, one thread
  each; per request: when it completed, its latency and status.
- ``process_cpu`` / ``thread_cpu``: utime + stime from /proc (the whole process, or per thread with
  its name and nice value: the memory worker runs at nice 10).
"""

import concurrent.futures
import contextlib
import hashlib
import hmac
import http.client
import itertools
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
SECRET = "wsec_benchmark_secret_not_for_production"  # noqa: S105 - a benchmark value
WEBHOOK = "/webhooks/elevenlabs"
SIGNATURE_HEADER = "ElevenLabs-Signature"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- what is measured ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeUnderTest:
    root: Path
    label: str  # "<short sha>[+dirty]" or "<short sha> (copy at <root>)"

    @classmethod
    def at(cls, root: Path) -> "CodeUnderTest":
        root = root.resolve()
        if not (root / "services" / "cli" / "__main__.py").is_file():
            raise SystemExit(f"{root} has no services/cli: not a CallVault tree")
        if (root / ".git").exists():
            sha = _git(root, "rev-parse", "--short", "HEAD") or "unknown"
            changed = _git(root, "status", "--porcelain", "--", "services", "pyproject.toml")
            return cls(root, sha + ("+dirty" if changed else ""))
        marker = root / ".commit"  # written by whoever extracted the copy: git rev-parse HEAD > .commit
        sha = marker.read_text().strip()[:7] if marker.is_file() else "unknown commit"
        return cls(root, f"{sha} (copy at {root})")

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a child that runs this tree: no CALLVAULT_/MEM0_ settings leak in."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLVAULT_", "MEM0_"))}
        env["PYTHONPATH"] = os.pathsep.join([str(self.root), *filter(None, [os.environ.get("PYTHONPATH")])])
        env.update(extra or {})
        return env

    def check_resolution(self, env: dict[str, str]) -> str:
        """The file ``import services.ingest.service`` loads in a child with ``env``; exits if not ours."""
        found = subprocess.run(
            [sys.executable, "-c", "import services.ingest.service as m; print(m.__file__)"],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        if not Path(found).resolve().is_relative_to(self.root):
            raise SystemExit(f"`import services` resolves to {found}, not to {self.root}")
        return found


def _git(root: Path, *args: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    return ""


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


def pressure() -> dict[str, float]:
    """Linux PSI "some avg10": % of the last 10 s in which some task waited for CPU / for I/O."""
    found: dict[str, float] = {}
    for kind in ("cpu", "io"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            line = Path(f"/proc/pressure/{kind}").read_text().splitlines()[0]
            found[kind] = float(line.split("avg10=")[1].split()[0])
    return found


# --- signing, requests ------------------------------------------------------------------------------


def sign(body: bytes, secret: str = SECRET, at: int | None = None) -> str:
    """ElevenLabs' header: ``t=<unix>,v0=<hex HMAC-SHA256 of "<t>.<body>">`` (what the sender computes)."""
    timestamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v0={mac}"


# --- the server ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Served:
    url: str
    pid: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def serve(
    code: CodeUnderTest, data_dir: Path, *, memory: bool, log_path: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Served]:
    """``callvault serve`` of ``code`` on 127.0.0.1 (memory: offline Mem0 + its worker, or none)."""
    port = free_port()
    env = code.env(
        {
            "CALLVAULT_WEBHOOK_SECRET": SECRET,
            "CALLVAULT_MEMORY_BACKEND": "oss" if memory else "none",
            **(extra_env or {}),
        }
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)],
            cwd=code.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    with _running(process, port, data_dir, log_path, "callvault serve") as served:
        yield served


@contextlib.contextmanager
def serve_floor(data_dir: Path, *, log_path: Path) -> Iterator[Served]:
    """``floor_server.py`` (uvicorn + a bare ASGI verify/parse/write, no ``services``) on 127.0.0.1."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLVAULT_", "MEM0_"))}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "floor_server.py"), "--port", str(port), "--dir", str(data_dir)],
            cwd=BENCH_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    with _running(process, port, data_dir, log_path, "floor_server.py") as served:
        yield served


@contextlib.contextmanager
def _running(
    process: subprocess.Popen[bytes], port: int, data_dir: Path, log_path: Path, what: str
) -> Iterator[Served]:
    """Wait until ``process`` answers ``GET /healthz`` on ``port``; SIGTERM it (kill after 30 s) at the end."""
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited early:\n{log_path.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    connection.close()
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not become ready in 120 s")
            time.sleep(0.2)
        yield Served(url, process.pid, data_dir, log_path, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- CPU from /proc ---------------------------------------------------------------------------------


def _stat_fields(path: Path) -> list[str] | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields from 3 (state) on; comm may hold spaces


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live process it started, and theirs (a server's worker processes count as the server)."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pending.extend(int(child) for child in children.read_text().split())
    return tree


def process_tree_rss_mib(pid: int) -> dict[str, float]:
    """Resident memory of the process ("server") and of each live descendant ("child <pid>"), MiB."""
    found: dict[str, float] = {}
    for member in process_tree(pid):
        with contextlib.suppress(OSError, StopIteration, ValueError):
            status = Path(f"/proc/{member}/status").read_text().splitlines()
            kib = int(next(line for line in status if line.startswith("VmRSS:")).split()[1])
            found["server" if member == pid else f"child {member}"] = round(kib / 1024, 1)
    return found


def process_cpu(pid: int) -> float:
    """utime + stime of the process and its live descendants (every thread, live or exited), seconds."""
    total = 0.0
    for member in process_tree(pid):
        fields = _stat_fields(Path(f"/proc/{member}/stat"))
        if fields is None:
            if member == pid:
                raise RuntimeError(f"/proc/{pid}/stat is not readable")
            continue  # a child that just ended
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def thread_cpu(pid: int) -> dict[int, tuple[str, int, float]]:
    """Per live thread of the process and its descendants: (name, nice, utime + stime seconds)."""
    found: dict[int, tuple[str, int, float]] = {}
    for member in process_tree(pid):
        for task in Path(f"/proc/{member}/task").glob("*"):
            fields = _stat_fields(task / "stat")
            if fields is None:
                continue
            with contextlib.suppress(OSError):
                name = (task / "comm").read_text().strip()
                if member != pid:
                    name = f"child {member} {name}"
                found[int(task.name)] = (name, int(fields[16]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return found


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by OS thread id, from ``py-spy dump`` when py-spy is installed (else empty)."""
    import shutil

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return {}
    try:
        out = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    names: dict[int, str] = {}
    for line in out.splitlines():
        if line.startswith("Thread ") and '"' in line:
            with contextlib.suppress(ValueError, IndexError):
                names[int(line.split()[1], 0)] = line.split('"')[1]
    return names


def thread_delta(
    before: dict[int, tuple[str, int, float]], after: dict[int, tuple[str, int, float]], names: dict[int, str]
) -> dict[str, float]:
    """CPU seconds spent between two ``thread_cpu`` snapshots, summed by "name (nice N)"; the Python
    thread name when ``names`` has it (``thread_names``), else the OS one."""
    spent: dict[str, float] = {}
    for tid, (name, nice, cpu) in after.items():
        label = f"{names.get(tid, name)} (nice {nice})"
        spent[label] = spent.get(label, 0.0) + cpu - (before[tid][2] if tid in before else 0.0)
    return {k: round(v, 3) for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v > 0}


def wait_quiet(pid: int, busy_below: float = 0.05, interval: float = 1.0, max_seconds: float = 180.0) -> float:
    """Wait until the process uses less than ``busy_below`` of a core over ``interval`` (start-up work
    such as opening the memory store done); returns the seconds waited."""
    began = time.monotonic()
    last = process_cpu(pid)
    while time.monotonic() - began < max_seconds:
        time.sleep(interval)
        now = process_cpu(pid)
        if now - last < busy_below * interval:
            break
        last = now
    return time.monotonic() - began


# --- the floor ----------------------------------------------------------------------------------------


def measure_floor(bodies: list[bytes], directory: Path, seconds: float, max_iterations: int = 5000) -> dict[str, Any]:
    """Per payload: verify its signature, parse it, write it durably. Wall and CPU (this thread only).

    ``directory`` must be new, and its files are left for the caller to remove with its scratch
    folder at the end of the run: on ext4 without a journal, every file deleted (or replaced) makes
    creating files in its block group cost up to ~1 ms of CPU for the next 1-6 minutes (the kernel's
    ``recently_deleted`` scan), so deleting between measurements taxed whoever wrote next: ``serve``
    creates four files per webhook, the floor one (docs/benchmarks.md, "File creation after deletions").
    """
    import orjson

    directory.mkdir(parents=True, exist_ok=False)
    signed = [(body, sign(body)) for body in bodies]
    walls: list[float] = []
    cpu_started = time.thread_time()
    deadline = time.perf_counter() + seconds
    for i in range(max_iterations):
        body, header = signed[i % len(signed)]
        started = time.perf_counter()
        _verify(body, header)
        orjson.loads(body)
        tmp, final = directory / f".tmp-{i}", directory / f"{i}.json"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        walls.append(time.perf_counter() - started)
        if time.perf_counter() > deadline:
            break
    cpu = time.thread_time() - cpu_started
    return {
        "iterations": len(walls),
        "wall_ms": round(statistics.fmean(walls) * 1000, 3),
        "wall_p50_ms": round(statistics.median(walls) * 1000, 3),
        "cpu_ms": round(cpu * 1000 / len(walls), 3),
    }


def file_create_cost(parent: Path, label: str, count: int = 300) -> dict[str, Any]:
    """CPU µs to create one empty file in a new folder under ``parent`` (the files stay), and the
    file system's kind: what a webhook's four file creations cost at this moment on this disk.

    On ext4 without a journal this ranges from ~20 µs to ~1 ms: for 1-6 minutes after many files
    were deleted in a block group, the kernel scans the freed inodes before reusing any."""
    folder = parent / f"create-probe-{label}"
    folder.mkdir()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    started = time.thread_time()
    for i in range(count):
        os.close(os.open(folder / f"{i}", flags, 0o600))
    return {"us_per_create": round((time.thread_time() - started) / count * 1e6, 1), "fs": filesystem_kind(parent)}


def filesystem_kind(path: Path) -> str:
    """``ext4 (no journal)``, ``ext4``, ``tmpfs``...: the mount holding ``path``, from /proc/mounts."""
    best, kind, device = "", "unknown", ""
    with contextlib.suppress(OSError), open("/proc/mounts", encoding="utf-8") as mounts:
        resolved = str(path.resolve())
        for line in mounts:
            dev, point, fstype = line.split()[:3]
            if (resolved == point or resolved.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, kind, device = point, fstype, dev
    if kind == "ext4":
        name = device.rsplit("/", 1)[-1]
        journaled = (
            any(entry.startswith(f"{name}-") for entry in os.listdir("/proc/fs/jbd2"))
            if os.path.isdir("/proc/fs/jbd2")
            else False
        )
        return "ext4" if journaled else "ext4 (no journal)"
    return kind


def _verify(body: bytes, header: str) -> None:
    parts = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts["v0"]) or abs(time.time() - int(parts["t"])) > 1800:
        raise AssertionError("floor: signature does not verify")


def combine_floors(*floors: dict[str, Any]) -> dict[str, Any]:
    return {
        "iterations": sum(f["iterations"] for f in floors),
        "wall_ms": round(statistics.fmean(f["wall_ms"] for f in floors), 3),
        "cpu_ms": round(statistics.fmean(f["cpu_ms"] for f in floors), 3),
        "each": floors,
    }


# --- the load (runs in a spawned process) -----------------------------------------------------------


@dataclass(frozen=True)
class CallPlan:
    """Which calls a load phase sends: request ``n`` is conversation ``conv_<tag><n>`` of caller ``n % callers``,
    built from template ``n % templates`` (``long_call.LongCall.build(seed=template_seed + i)``).

    ``day_start`` None: live calls (they ended a moment ago). Else every call starts on that UTC day
    (unix seconds of its midnight), spread through it.
    """

    tag: str
    templates: int = 8
    template_seed: int = 0
    callers: int = 50
    day_start: int | None = None
    first: int = 0  # number of the first request (so warm-up and measured phases never share an id)

    def conversation_id(self, n: int) -> str:
        return f"conv_{self.tag}{n:0{26 - len(self.tag)}d}"

    def times(self, n: int, duration: int) -> tuple[int, int]:
        if self.day_start is None:
            ended = int(time.time()) - 2
            return ended - duration, ended
        started = self.day_start + 6 * 3600 + (n * 97) % (16 * 3600)  # 06:00-22:00 of that day
        return started, started + duration


def render_all(plan: CallPlan, count: int) -> Iterator[tuple[str, bytes]]:
    """(conversation_id, envelope) for requests ``plan.first`` .. ``plan.first + count - 1``."""
    from long_call import LongCall, caller_phone

    calls = [LongCall.build(plan.template_seed + i) for i in range(plan.templates)]
    for n in range(plan.first, plan.first + count):
        call = calls[n % len(calls)]
        started, ended = plan.times(n, call.duration_secs)
        cid = plan.conversation_id(n)
        yield cid, call.render(cid, caller_phone(n % plan.callers), started_at=started, event_at=ended)


@dataclass
class LoadResult:
    concurrency: int
    sent: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    # Per request, in completion order: seconds since the phase began, latency ms, status.
    done_at: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    client_cpu_s: float = 0.0
    # The server, read from /proc by the load process at the start and the end of the phase.
    server_cpu_s: float = 0.0
    server_threads_s: dict[str, float] = field(default_factory=dict)
    loadavg_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    loadavg_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pressure_end: dict[str, float] = field(default_factory=dict)  # PSI avg10 as the window closed
    server_rss_mib: dict[str, float] = field(default_factory=dict)  # per process of the server, as it closed

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)


def _drive(
    url: str, server_pid: int, plan: CallPlan, concurrency: int, seconds: float, max_requests: int, warmup: int
) -> dict[str, Any]:
    sys.path.insert(0, str(BENCH_DIR))
    from long_call import LongCall, caller_phone

    calls = [LongCall.build(plan.template_seed + i) for i in range(plan.templates)]
    host, port = url.removeprefix("http://").split(":")
    numbers = itertools.count(plan.first)
    lock = threading.Lock()
    result = LoadResult(concurrency)
    statuses: dict[int, int] = {}
    barrier = threading.Barrier(concurrency + 1)
    window = {"began": 0.0, "deadline": float("inf")}

    def send(connection: http.client.HTTPConnection) -> tuple[int, float]:
        n = next(numbers)
        call = calls[n % len(calls)]
        started_at, ended = plan.times(n, call.duration_secs)
        cid = plan.conversation_id(n)
        body = call.render(cid, caller_phone(n % plan.callers), started_at=started_at, event_at=ended)
        headers = {SIGNATURE_HEADER: sign(body), "content-type": "application/json"}
        began = time.perf_counter()
        connection.request("POST", WEBHOOK, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, (time.perf_counter() - began) * 1000

    def worker() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            for _ in range(warmup):  # connection, server thread pool, SQLite connection per thread
                send(connection)
            barrier.wait(timeout=120)
            while time.perf_counter() < window["deadline"]:
                with lock:
                    if result.sent >= max_requests:
                        return
                    result.sent += 1
                status, ms = send(connection)
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    result.done_at.append(time.perf_counter() - window["began"])
                    result.latencies_ms.append(ms)
                    result.codes.append(status)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=120)
    result.loadavg_start = loadavg()
    threads_before, server_before = thread_cpu(server_pid), process_cpu(server_pid)
    cpu_before = time.process_time()
    window["began"] = time.perf_counter()
    window["deadline"] = window["began"] + seconds
    for thread in threads:
        thread.join(timeout=seconds + 120)
    result.elapsed_s = time.perf_counter() - window["began"]
    result.client_cpu_s = time.process_time() - cpu_before
    result.server_cpu_s = process_cpu(server_pid) - server_before
    threads_after = thread_cpu(server_pid)
    result.server_threads_s = thread_delta(threads_before, threads_after, thread_names(server_pid))
    result.server_rss_mib = process_tree_rss_mib(server_pid)
    result.loadavg_end = loadavg()
    result.pressure_end = pressure()
    result.statuses = {str(k): v for k, v in sorted(statuses.items())}
    data = asdict(result)
    return data


def run_load(
    served: Served, plan: CallPlan, concurrency: int, seconds: float, max_requests: int, warmup: int = 2
) -> LoadResult:
    """One load phase from a spawned process: ``warmup`` untimed requests per connection, then the
    measured window (until ``seconds`` or ``max_requests``), bracketed by the server's CPU counters."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(_drive, served.url, served.pid, plan, concurrency, seconds, max_requests, warmup)
        return LoadResult(**future.result(timeout=seconds + 600))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def quarters(done_at: list[float], total: int) -> list[float]:
    """Seconds each quarter of ``total`` completions took (by completion order)."""
    if total < 4 or len(done_at) < total:
        return []
    marks = [0.0] + [sorted(done_at)[total * q // 4 - 1] for q in (1, 2, 3, 4)]
    return [round(b - a, 3) for a, b in itertools.pairwise(marks)]

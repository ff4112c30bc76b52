"""`callvault serve` that dies by SIGKILL at one storage operation: the e2e crash-point launcher.

No hook in production code: the port methods of the local adapters (``FsBlobStore`` for archive and
analytics, ``SqliteCallIndex``) and ``Archiver.archive`` are wrapped at class level, then the normal
CLI runs. Only operations made while archiving an event are numbered (the compactor, the search API
and start-up work are not), counted over every event this process handles, outermost call only
(``claim_place`` reading its row back is one operation, as in the in-process harness).

    python -m tests.protocol.crashing_serve serve --data-dir DIR --port PORT

Environment:
  CALLVAULT_TEST_KILL_AT         number of the operation to die at (none: never die)
  CALLVAULT_TEST_KILL_WHEN       before | after (after: the operation ran, was durable, then SIGKILL)
  CALLVAULT_TEST_OPERATIONS_LOG  append "<event> <operation> <store>.<method>" per operation (and
                                 "<event> <operation> <store>.<method> KILL" just before dying)

``--fork-server`` makes a small process that imports everything once and then forks one child per
command read from stdin (JSON lines: ``serve``, ``verify``, ``wait``). Each child runs the same CLI
entry point (``services.cli.main:cli``) as ``callvault serve`` / ``callvault verify``, minus ~2 s of
interpreter start and imports per process, which is what lets test_kill9.py enumerate every crash
point within its time budget. The fork server is single-threaded, so forking it is safe.
"""

import contextlib
import importlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

KILL_AT = "CALLVAULT_TEST_KILL_AT"
KILL_WHEN = "CALLVAULT_TEST_KILL_WHEN"
OPERATIONS_LOG = "CALLVAULT_TEST_OPERATIONS_LOG"
PREFIX = "CALLVAULT_TEST_"
# What `serve` and `verify` import on their way (many lazily, inside the commands).
PRELOADED = (
    "uvicorn",
    "services.analytics.compaction",
    "services.cli.main",
    "services.cli.verify_command",
    "services.core.adapters.fs_blob_store",
    "services.core.adapters.sqlite_call_index",
    "services.core.secrets",
    "services.ingest.verify",
    "services.local.app",
    "services.local.hygiene",
    "services.local.server",
    "services.memory.local",
    "services.web.credentials",
    "tests.protocol.harness",
)


class _Hooks:
    """Numbers operations inside ``Archiver.archive`` and kills the process at one of them."""

    def __init__(self, kill_at: int | None, when: str, log_path: str | None) -> None:
        self.kill_at = kill_at
        self.when = when
        self.log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if log_path else None
        self.lock = threading.Lock()
        self.operations = 0
        self.events = 0
        self.local = threading.local()

    def _log(self, line: str) -> None:
        if self.log_fd is not None:
            os.write(self.log_fd, line.encode() + b"\n")  # unbuffered: the page cache outlives SIGKILL

    def _die(self, line: str) -> None:
        self._log(f"{line} KILL")
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # pragma: no cover - SIGKILL cannot be caught; never reached

    def archive(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def archive(archiver: Any, event: Any) -> Any:
            with self.lock:
                self.events += 1
                self.local.event = self.events
            self.local.archiving = True
            try:
                return original(archiver, event)
            finally:
                self.local.archiving = False

        return archive

    def operation(self, store: Callable[[Any], str], name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def operation(adapter: Any, *args: Any, **kwargs: Any) -> Any:
            if not getattr(self.local, "archiving", False) or getattr(self.local, "inside", False):
                return original(adapter, *args, **kwargs)
            with self.lock:
                self.operations += 1
                number = self.operations
            line = f"{self.local.event} {number} {store(adapter)}.{name}"
            self._log(line)
            kill_here = number == self.kill_at
            if kill_here and self.when == "before":
                self._die(line)
            self.local.inside = True
            try:
                return original(adapter, *args, **kwargs)
            finally:
                self.local.inside = False
                if kill_here:
                    self._die(line)

        return operation


def install_from_environment() -> None:
    """Wrap the adapters as the environment says (no ``CALLVAULT_TEST_*``: nothing is wrapped)."""
    kill_at, log_path = os.environ.get(KILL_AT), os.environ.get(OPERATIONS_LOG)
    if not kill_at and not log_path:
        return
    from services.core.adapters.fs_blob_store import FsBlobStore
    from services.core.adapters.sqlite_call_index import SqliteCallIndex
    from services.ingest.service import Archiver
    from tests.protocol.harness import BLOB_OPERATIONS, INDEX_OPERATIONS

    hooks = _Hooks(int(kill_at) if kill_at else None, os.environ.get(KILL_WHEN, "before"), log_path)

    def blob_store(adapter: Any) -> str:
        return str(adapter.root.name)  # "archive" or "analytics"

    def index(_adapter: Any) -> str:
        return "index"

    for cls, names, store in ((FsBlobStore, BLOB_OPERATIONS, blob_store), (SqliteCallIndex, INDEX_OPERATIONS, index)):
        for name in names:
            setattr(cls, name, hooks.operation(store, name, getattr(cls, name)))
    Archiver.archive = hooks.archive(Archiver.archive)  # type: ignore[method-assign]


def run_cli(args: list[str]) -> int:
    from services.cli.main import cli

    try:
        cli.main(args=args, prog_name="callvault", standalone_mode=True)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return 0


# --- the fork server ------------------------------------------------------------------------------------


def _child(env: dict[str, str], args: list[str], output: str, errors: str | None) -> None:
    """In the forked child: the environment, stdout to ``output`` (stderr too unless ``errors`` names its own
    file: a command's --json must stay parseable when CI turns progress bars on), hooks, the CLI; never returns."""
    code = 70
    try:
        for name in [name for name in os.environ if name.startswith(("CALLVAULT_", PREFIX))]:
            del os.environ[name]
        os.environ.update(env)
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(os.open(errors, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if errors else fd, 2)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        install_from_environment()
        code = run_cli(args)
    except BaseException as exc:  # report, then exit: a forked child must never return into the server loop
        print(f"crashing_serve child failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _wait(pid: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFSIGNALED(status):
                return {"signal": os.WTERMSIG(status)}
            return {"exit": os.WEXITSTATUS(status)}
        if time.monotonic() > deadline:
            return {"alive": True}
        time.sleep(0.01)


def fork_server() -> None:
    """Read commands (JSON lines) from stdin, answer each with one JSON line on stdout."""
    for module in PRELOADED:  # imported once here; importing them starts no thread
        with contextlib.suppress(ModuleNotFoundError):  # only a speed-up: a child imports what it lacks
            importlib.import_module(module)
    assert threading.active_count() == 1, "the fork server must stay single-threaded"
    print(json.dumps({"ready": os.getpid()}), flush=True)
    children: set[int] = set()
    try:
        _serve_commands(children)
    finally:  # stdin closed (the test ended, or died): no child outlives the fork server
        for pid in children:
            if "alive" in _wait(pid, 0):
                os.kill(pid, signal.SIGKILL)
                _wait(pid, 10)


def _serve_commands(children: set[int]) -> None:
    for line in sys.stdin:
        command = json.loads(line)
        kind = command["command"]
        answer: dict[str, Any]
        if kind in ("serve", "verify"):
            pid = os.fork()
            if pid == 0:
                _child(command["env"], command["args"], command["output"], command.get("errors"))
            children.add(pid)
            answer = {"pid": pid}
            if kind == "verify":
                answer.update(_wait(pid, float(command.get("timeout", 120))))
        elif kind == "wait" and int(command["pid"]) in children:
            pid = int(command["pid"])
            answer = {"pid": pid, **_wait(pid, float(command["timeout"]))}
        else:
            answer = {"error": f"unknown command or child: {command!r}"}
        if "exit" in answer or "signal" in answer:
            children.discard(answer["pid"])  # reaped
        print(json.dumps(answer), flush=True)


def main() -> None:
    if sys.argv[1:] == ["--fork-server"]:
        fork_server()
        return
    install_from_environment()
    sys.exit(run_cli(sys.argv[1:]))


if __name__ == "__main__":
    main()

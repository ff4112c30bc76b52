"""Shared test helpers: the shipped fixtures, real signatures, and a real `callvault serve` process."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.core.domain import signing

FIXTURES = Path(__file__).parent / "fixtures" / "elevenlabs"
SECRET = "wsec_test_secret_not_for_production"
TRANSCRIPTION = "post_call_transcription.json"
TRANSCRIPTION_OUTBOUND = "post_call_transcription_outbound.json"
TRANSCRIPTION_WEB = "post_call_transcription_web.json"
AUDIO = "post_call_audio.json"
INITIATION_FAILURE = "call_initiation_failure.json"
ALL_FIXTURES = (TRANSCRIPTION, TRANSCRIPTION_OUTBOUND, TRANSCRIPTION_WEB, AUDIO, INITIATION_FAILURE)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(fixture_bytes(name))
    return loaded


def signed_headers(body: bytes, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if at is None else at
    return {signing.HEADER: signing.sign(body, secret, timestamp), "content-type": "application/json"}


@contextmanager
def running_server(
    command: list[str], workdir: Path, name: str, answers: Callable[[], bool], *, timeout: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """A helper server (SeaweedFS, dynalite) started in ``workdir``, ready once ``answers()`` is True,
    and stopped by its pid at the end (SIGTERM, then SIGKILL): only the process we started."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        wait_until_ready(name, answers, lambda: "" if process.poll() is not None else None, log_path, timeout)
        yield process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


def wait_until_ready(
    name: str,
    answers: Callable[[], bool],
    exited: Callable[[], str | None],
    log_path: Path,
    timeout: float,
    interval: float = 0.1,
) -> None:
    """Poll ``answers()`` (connection errors count as "not yet") until it is True; raise with the end of
    the process's log when ``exited()`` says how it ended (None while it runs) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        ended = exited()
        if ended is not None:
            raise RuntimeError(f"{name} exited early{ended}:\n{log_path.read_text(errors='replace')[-4000:]}")
        try:
            if answers():
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not become ready:\n{log_path.read_text(errors='replace')[-4000:]}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServedArchive:
    """A running `callvault serve` process bound to 127.0.0.1."""

    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def serve_archive(
    data_dir: Path, env: dict[str, str] | None = None, secret: str | None = SECRET
) -> Iterator[ServedArchive]:
    """Start the real CLI (`python -m services.cli`), wait for /healthz, stop it (SIGTERM) afterwards."""
    port = free_port()
    log_path = data_dir.parent / f"serve-{port}.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    if secret is not None:
        child_env["CALLVAULT_WEBHOOK_SECRET"] = secret
    # Caller memory loads Mem0, Qdrant and ONNX (~1-3 s, ~300 MB): off unless a test asks for it.
    child_env["CALLVAULT_MEMORY_BACKEND"] = "none"
    child_env.update(env or {})
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(
            "callvault serve",
            lambda: httpx.get(url + "/healthz", timeout=1).status_code == 200,
            lambda: "" if process.poll() is not None else None,
            log_path,
            timeout=30,
        )
        yield ServedArchive(url, data_dir, process, log_path)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def fake_aws_environment(monkeypatch: Any, tmp_path: Path) -> None:
    """Fake credentials in us-east-1 and nothing from the developer's machine (profiles, endpoints, CALLVAULT_*),
    so moto's in-process mock is the only AWS a test can reach."""
    for name in list(os.environ):
        if name.startswith(("AWS_ENDPOINT_URL", "CALLVAULT_")) or name in {"AWS_PROFILE", "AWS_DEFAULT_PROFILE"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


def process_running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended; only its exit status waits to be read)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def descendants(pid: int) -> set[int]:
    """Every live process ``pid`` started, and theirs (Linux: /proc/<pid>/task/*/children)."""
    found: set[int] = set()
    pending = [pid]
    while pending:
        for children in Path(f"/proc/{pending.pop()}/task").glob("*/children"):
            try:
                new = {int(child) for child in children.read_text().split()}
            except OSError:
                continue
            found |= new
            pending.extend(new)
    return found


def wait_until_ended(pids: Iterable[int], timeout: float = 10.0) -> None:
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while any(map(process_running, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)

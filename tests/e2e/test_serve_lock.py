"""One process owns a data dir, and a taken port is said before anything is generated (issue #14),
through real `callvault serve` processes on 127.0.0.1."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.local.lock import LOCK_FILE
from tests.support import SECRET, serve_archive

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _callvault(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    child_env.update(CALLVAULT_MEMORY_BACKEND="none", CALLVAULT_WEBHOOK_SECRET=SECRET)
    child_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, env=child_env, timeout=60
    )


def _one_clear_line(process: subprocess.CompletedProcess[str]) -> str:
    assert process.returncode == 1, process.stdout + process.stderr
    assert "Traceback" not in process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1, process.stderr
    return lines[0]


def test_a_second_serve_on_the_same_data_dir_names_the_first(tmp_path: Path) -> None:
    with serve_archive(tmp_path / "data") as served:
        other_port = str(served.process.pid % 20000 + 30000)
        line = _one_clear_line(_callvault("serve", "--data-dir", str(served.data_dir), "--port", other_port))
        assert line == (
            f"Error: another callvault serve (pid {served.process.pid}) holds {served.data_dir}; "
            "stop it or use another --data-dir"
        )
        assert (served.data_dir / LOCK_FILE).read_text().startswith(f"{served.process.pid} ")


def test_memory_forget_while_serving_names_the_server(tmp_path: Path) -> None:
    with serve_archive(tmp_path / "data") as served:
        process = _callvault(
            "memory",
            "forget",
            "+16125550142",
            "--yes",
            "--data-dir",
            str(served.data_dir),
            CALLVAULT_MEMORY_BACKEND="oss",
        )
        line = _one_clear_line(process)
        assert f"another callvault serve (pid {served.process.pid}) holds {served.data_dir}" in line
        shown = _callvault(
            "memory", "show", "+16125550142", "--data-dir", str(served.data_dir), CALLVAULT_MEMORY_BACKEND="oss"
        )
        assert "its API answers the same: GET /callers/{phone}/memories" in _one_clear_line(shown)


def test_a_taken_port_is_said_before_secrets_are_generated(tmp_path: Path) -> None:
    with serve_archive(tmp_path / "data") as served:
        port = served.url.rsplit(":", 1)[1]
        other = tmp_path / "other"
        process = _callvault("serve", "--data-dir", str(other), "--port", port, CALLVAULT_WEBHOOK_SECRET="")
        line = _one_clear_line(process)
        assert line == (
            f"Error: cannot listen on 127.0.0.1:{port}: the port is taken by another program; "
            "stop what uses it or pass another --port"
        )
        assert "listening" not in process.stderr
        assert not other.exists()  # the folder it made for nothing is gone again

        existing = tmp_path / "existing"
        existing.mkdir()
        again = _callvault("serve", "--data-dir", str(existing), "--port", port, CALLVAULT_WEBHOOK_SECRET="")
        assert again.returncode == 1 and existing.is_dir()  # a folder it did not make stays
        assert not (existing / "webhook-secret").exists() and not (existing / "api-key").exists()


def test_the_lock_goes_with_the_server(tmp_path: Path) -> None:
    """A stopped (or killed) server's lock file blocks nobody: the kernel released its flock."""
    data_dir = tmp_path / "data"
    with serve_archive(data_dir):
        pass
    with serve_archive(data_dir) as again:
        assert again.process.poll() is None

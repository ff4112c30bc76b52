"""`make serve` installs only the runtime; `make test` and the checks install the dev tools too, also into
a venv that `make serve` made first (issue #14); every install takes its versions from constraints.txt.
Read from `make -n` against a venv that does not exist."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry_run(target: str, venv: Path) -> list[str]:
    process = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [line for line in process.stdout.splitlines() if "pip install" in line]


def test_serve_installs_the_runtime_only(tmp_path: Path) -> None:
    installs = _dry_run("serve", tmp_path / "venv")
    uv = "uv pip install --quiet --python"
    assert any(uv in line and line.endswith("-c constraints.txt -e . \\") for line in installs), installs
    assert installs[-1].endswith("pip install --quiet -c constraints.txt -e .")  # pip, if uv cannot
    assert not any("[dev]" in line for line in installs)


@pytest.mark.parametrize("target", ["test", "lint", "typecheck"])
def test_checks_install_the_dev_tools(tmp_path: Path, target: str) -> None:
    venv = tmp_path / "venv"
    assert any(line.endswith("pip install --quiet -c constraints.txt -e '.[dev]'") for line in _dry_run(target, venv))
    # After `make serve` made the venv with the runtime only, the checks still install the dev tools.
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / ".installed-runtime").touch()
    assert any(line.endswith("pip install --quiet -c constraints.txt -e '.[dev]'") for line in _dry_run(target, venv))


def test_constraints_pin_every_package_and_name_no_local_paths() -> None:
    lines = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert lines and all("==" in line and " @ " not in line and not line.startswith("-e") for line in lines), lines
    pinned = {line.split("==")[0].lower() for line in lines}
    assert {"fastapi", "mem0ai", "ruff", "mypy", "pytest"} <= pinned  # runtime and dev tools alike

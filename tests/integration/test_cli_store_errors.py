"""A store that fails under a maintenance command is one line that says so, not a Python traceback."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli.main import cli
from services.core.domain.errors import StorageUnavailable
from tests.support import FIXTURES


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    done = CliRunner().invoke(cli, ["import", str(FIXTURES), "--data-dir", str(target)], env=_ENV)
    assert done.exit_code == 0, done.output
    return target


_ENV = {"CALLVAULT_MEMORY_BACKEND": "none"}


def _failing(*_args: object, **_kwargs: object) -> None:
    raise StorageUnavailable("analytics store unavailable: disk full")


@pytest.mark.parametrize(
    ("command", "target"),
    [
        ("backfill-analytics", "services.analytics.backfill.backfill_analytics"),
        ("compact-analytics", "services.analytics.compaction.compact_closed_days"),
    ],
)
def test_a_store_failure_is_one_line_not_a_traceback(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, command: str, target: str
) -> None:
    monkeypatch.setattr(target, _failing)

    result = CliRunner().invoke(cli, [command, "--data-dir", str(data_dir)], env=_ENV)

    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "Error: analytics store unavailable: disk full" in result.output
    assert "Traceback" not in result.output

"""`callvault verify` from the terminal: what a run leaves behind when it stops midway."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from services.analytics.tables import CALLS, parse_day_object_key, parse_object_key
from services.cli.main import cli
from services.ingest.verify import ArchiveVerifier
from tests.support import FIXTURES


def _analytics_keys(data_dir: Path) -> list[str]:
    root = data_dir / "analytics"
    return [path.relative_to(root).as_posix() for path in root.rglob("*.json.gz")]


def _calls_day_objects(data_dir: Path) -> list[str]:
    return [key for key in _analytics_keys(data_dir) if (parse_day_object_key(key) or ("",))[0] == CALLS]


def test_a_repair_stopped_midway_still_merges_the_closed_days_it_rewrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fixtures' days (July 2025) are closed. A repair that rewrites a call's rows there writes
    per-call objects beside the day objects, counted twice until merged; a run stopped by Ctrl-C after
    that must still merge them, as `import` and `sync` do."""
    data_dir = tmp_path / "data"
    env = {"CALLVAULT_MEMORY_BACKEND": "none"}
    assert CliRunner().invoke(cli, ["import", str(FIXTURES), "--data-dir", str(data_dir)], env=env).exit_code == 0
    calls_days = _calls_day_objects(data_dir)
    assert calls_days  # the import merged its closed days
    for key in calls_days:
        (data_dir / "analytics" / key).unlink()  # every call of those days now lacks its calls row

    real_run = ArchiveVerifier.run

    def run_then_stop(self: ArchiveVerifier, **kwargs: object) -> object:
        real_run(self, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt  # the operator's Ctrl-C, after the rewrites, before the report

    monkeypatch.setattr(ArchiveVerifier, "run", run_then_stop)
    stopped = CliRunner().invoke(cli, ["verify", "--repair", "--data-dir", str(data_dir)], env=env)

    assert stopped.exit_code != 0
    rewritten = [key for key in _analytics_keys(data_dir) if parse_object_key(key)]
    assert rewritten == []  # folded into their day objects
    assert _calls_day_objects(data_dir)

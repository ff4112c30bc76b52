"""The signed-out list of `callvault serve` survives a restart and does not grow for ever."""

import stat
from pathlib import Path

from services.console.session import FileSignedOutSessions


def test_signed_out_file_keeps_live_entries_across_a_restart_and_drops_expired_ones(tmp_path: Path) -> None:
    path = tmp_path / "console-signed-out"
    now = [1_000_000.0]
    first = FileSignedOutSessions(path, clock=lambda: now[0])
    first.add("old", 1_000_100)
    first.add("live", 1_009_000)
    assert path.read_text().splitlines() == ["old 1000100", "live 1009000"]

    now[0] = 1_000_200.0  # "old" has expired: its cookie fails on its own expiry anyway
    again = FileSignedOutSessions(path, clock=lambda: now[0])

    assert "live" in again and "old" not in again
    assert path.read_text().splitlines() == ["live 1009000"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["console-signed-out"]  # no temp file left


def test_signed_out_file_with_nothing_expired_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "console-signed-out"
    FileSignedOutSessions(path, clock=lambda: 0.0).add("a", 100)
    before = path.stat().st_ino
    assert "a" in FileSignedOutSessions(path, clock=lambda: 50.0)
    assert path.stat().st_ino == before  # not rewritten

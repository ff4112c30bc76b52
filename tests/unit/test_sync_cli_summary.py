"""`callvault sync`'s text summary prints what upstream sent (conversation ids, its error details): a
hostile or odd value must neither crash the command after its work is done nor drive the terminal."""

import pytest

from services.cli.sync_command import _print
from services.sync.service import SyncSummary


def test_sync_summary_prints_upstream_text_literally(capsys: pytest.CaptureFixture[str]) -> None:
    summary = SyncSummary(None, None, dry_run=True)
    summary.failures.append(("conv_[/x]", "ElevenLabs rejected it (HTTP 400: [bold]no[/bold] \x1b[2J)"))
    summary.missing.append("[/red]\x1b]8;;http://evil.example\x07")

    _print(summary)

    err = capsys.readouterr().err
    assert "conv_[/x]" in err and "[bold]no[/bold]" in err and "[/red]" in err
    assert "\x1b]8" not in err and "\x1b[2J" not in err


def test_import_summary_prints_paths_and_reasons_literally(capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from services.cli.importer import ImportSummary

    summary = ImportSummary()
    summary.failed.append((Path("exports[/july] [bold].json"), "data.conversation_id must be [x]"))

    summary.print()

    err = capsys.readouterr().err
    assert "exports[/july] [bold].json" in err and "must be [x]" in err

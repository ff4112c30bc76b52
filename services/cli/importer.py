"""``callvault import``: saved webhook envelopes or conversation documents through the same use case."""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from services.core.config import Settings
from services.core.domain import payload
from services.core.domain.errors import CallVaultError, InvalidPayload
from services.core.wiring import build_storage
from services.ingest.service import IngestResult
from services.ingest.wiring import build_archiver

# stored: a new call, or a new version of one; unchanged: the archive already held exactly this (a file
# imported again); stale: a newer version is held; ignored: an event type CallVault does not keep;
# erased: a call erased here (its tombstone keeps it out).
OUTCOMES = ("stored", "unchanged", "stale", "ignored", "erased")


@dataclass
class ImportSummary:
    outcomes: Counter[str] = field(default_factory=Counter)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    searched: int = 0  # files found to import

    def count(self, result: IngestResult) -> None:
        self.outcomes["unchanged" if result.unchanged else result.outcome] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.searched,
            **{outcome: self.outcomes[outcome] for outcome in OUTCOMES},
            "failed": [{"path": str(path), "reason": reason} for path, reason in self.failed],
        }

    def print(self, console: Console | None = None) -> None:
        console = console or Console(stderr=True)
        if not self.searched and not self.failed and not sum(self.outcomes.values()):
            console.print("no .json files found: give files, or folders holding *.json files (searched recursively)")
            return
        table = Table(title="callvault import")
        table.add_column("outcome")
        table.add_column("files", justify="right")
        for outcome in OUTCOMES:
            table.add_row(outcome, str(self.outcomes[outcome]))
        table.add_row("failed", str(len(self.failed)))
        console.print(table)
        for path, reason in self.failed[:20]:
            console.print(f"[red]failed[/red] {escape(str(path))}: {escape(reason)}")  # as text, not markup
        if len(self.failed) > 20:
            console.print(f"... and {len(self.failed) - 20} more")


def _files(paths: list[Path], data_dir: Path) -> list[Path]:
    """The files to import: each file given, and the ``*.json`` files in each folder given, except those
    of the data dir itself (``callvault import .`` beside ./callvault-data read the archive back in)."""
    found: list[Path] = []
    archive = data_dir.resolve()
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue
        inside = archive.is_relative_to(path.resolve())  # else no file of the walk can be the data dir's
        # Regular files only: a named pipe called x.json would block the import for ever.
        found.extend(
            sorted(
                p for p in path.rglob("*.json") if p.is_file() and not (inside and p.resolve().is_relative_to(archive))
            )
        )
    return found


_UTF8_BOM = b"\xef\xbb\xbf"


def _read_bounded(path: Path, limit: int) -> bytes:
    """The file's bytes, refused above the webhook's body bound (a stray multi-GB file is not read into
    memory), without a UTF-8 byte-order mark (editors on Windows add one; JSON allows ignoring it)."""
    with path.open("rb") as handle:
        raw = handle.read(limit + 1)
    if len(raw) > limit:
        raise InvalidPayload(
            f"larger than {limit // (1024 * 1024)} MiB, the webhook's bound (CALLVAULT_MAX_BODY_BYTES raises it)"
        )
    return raw.removeprefix(_UTF8_BOM)


def import_paths(settings: Settings, paths: list[Path], progress: bool = True) -> ImportSummary:
    from services.analytics.compaction import LateDays

    storage = build_storage(settings)
    late_days = LateDays()
    archiver = build_archiver(settings, storage, on_late_write=late_days.add)
    files = _files(paths, settings.data_dir)
    summary = ImportSummary()
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, disable=not progress, console=Console(stderr=True)) as bar:
            task = bar.add_task("import", total=len(files))
            for path in files:
                try:
                    if not path.is_file():
                        raise OSError(0, "not a regular file")
                    document = orjson.loads(_read_bounded(path, settings.max_body_bytes))
                    if not isinstance(document, dict):
                        raise InvalidPayload("not a JSON object")
                    summary.count(archiver.archive(payload.as_transcription_event(document)))
                except orjson.JSONDecodeError:
                    summary.failed.append((path, "not valid JSON"))
                except CallVaultError as exc:
                    summary.failed.append((path, exc.message))
                except OSError as exc:
                    summary.failed.append((path, exc.strerror or "cannot read"))
                bar.advance(task)
    finally:
        # No `serve` compactor hears of these writes; merged also when the import stops (Ctrl-C).
        late_days.merge(archiver.analytics)
    summary.searched = len(files)
    return summary

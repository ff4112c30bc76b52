"""``callvault sync``: pull what the archive lacks from the ElevenLabs Conversations API (docs/sync.md)."""

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.cli.options import DATA_DIR_OPTION, settings_for, terminal_text
from services.core.domain.errors import CallVaultError, InvalidRequest

if TYPE_CHECKING:
    from services.sync.service import SyncSummary

DATE_HELP = "ISO 8601 (2025-07-06, 2025-07-06T11:40Z) or unix seconds"


@click.command()
@DATA_DIR_OPTION
@click.option("--since", help=f"Calls that started at or after this: {DATE_HELP}. [default: where the last sync ended]")
@click.option("--until", help=f"Calls that started before this: {DATE_HELP}. [default: now]")
@click.option("--agent", "agent_id", help="Only this agent's conversations (agent_...).")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 32),
    default=4,
    show_default=True,
    help="Requests to ElevenLabs in flight at once.",
)
@click.option("--dry-run", is_flag=True, help="List what upstream has and the archive lacks; fetch and write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def sync(
    data_dir: Path | None,
    since: str | None,
    until: str | None,
    agent_id: str | None,
    concurrency: int,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Archive every call ElevenLabs has and the archive lacks: missed calls, newer versions, audio.

    Lists the window's conversations (100 a page) and, for each one missing here, held in an older
    version, or whose audio is missing, fetches only what is missing and archives it exactly as the
    webhook would (same files, row, analytics and memory job). Calls still in progress are left for
    the next run. Without --since a run continues where the last one ended (with an overlap for
    calls that finished late); the very first run reaches back as far as ElevenLabs keeps calls.

    Needs ELEVENLABS_API_KEY (an API key with read access to Conversational AI). Exit status 1
    when any conversation failed to sync; re-running retries exactly those.

    \b
    Examples:
      callvault sync                       # continue where the last sync ended
      callvault sync --since 2025-07-01    # a window, e.g. a new installation's history
      callvault sync --dry-run --json      # the gap report: what the archive lacks
    """
    from services.analytics.compaction import LateDays
    from services.core.wiring import build_storage
    from services.ingest.wiring import build_archiver
    from services.sync.elevenlabs import ElevenLabsClient
    from services.sync.service import Syncer
    from services.sync.state import build_sync_state
    from services.web.params import parse_instant

    settings = settings_for(data_dir)
    try:
        after = parse_instant("since", since) if since is not None else None
        before = parse_instant("until", until) if until is not None else None
        if after is not None and before is not None and before <= after:
            raise InvalidRequest("--until must be later than --since")
        client = ElevenLabsClient.from_settings(settings, concurrency=concurrency)
        storage = build_storage(settings)
        late_days = LateDays()
        archiver = build_archiver(settings, storage, on_late_write=late_days.add)
        syncer = Syncer(
            client,
            archiver,
            storage.index,
            build_sync_state(settings),
            concurrency=concurrency,
            overlap_seconds=settings.sync_overlap_seconds,
        )
        start = syncer.window(after, agent_id)
        if after is None and before is not None and start is not None and before <= start:
            raise InvalidRequest(
                f"--until is before where this run would start ({_when(start)}: the last sync's watermark less "
                "the overlap); give --since too"
            )
        show = not as_json and (sys.stderr.isatty() or bool(os.environ.get("CI")))
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        try:
            with Progress(*columns, disable=not show, console=Console(stderr=True)) as bars, client:
                task = bars.add_task("syncing", total=0)
                summary = syncer.run(
                    since=after,
                    until=before,
                    agent_id=agent_id,
                    dry_run=dry_run,
                    on_listed=lambda n: bars.update(task, total=(bars.tasks[0].total or 0) + n),
                    on_done=lambda _result: bars.advance(task),
                )
        finally:
            # Calls of closed days: fold them in now, also when the run stopped (what it archived stays).
            late_days.merge(archiver.analytics)
    except InvalidRequest as exc:
        raise click.UsageError(exc.message) from None
    except CallVaultError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        _print(summary)
    if summary.failed:
        sys.exit(1)


def _when(seconds: int | None) -> str:
    if seconds is None:
        return "the beginning"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _plain(text: str) -> str:
    """Upstream's words as text: no Rich markup (``[/x]`` would crash the print) and no control
    characters (escape sequences would drive the terminal)."""
    return escape(terminal_text(text))


def _print(summary: "SyncSummary") -> None:
    console = Console(stderr=True)
    title = "callvault sync --dry-run" if summary.dry_run else "callvault sync"
    until = _when(summary.before) if summary.before is not None else "now"
    table = Table(title=f"{title}: calls started from {_when(summary.after)} to {until}")
    table.add_column("conversations")
    table.add_column("count", justify="right")
    counts = summary.counts
    audio = len(summary.audio_missing) if summary.dry_run else summary.audio_fetched
    rows = [
        ("listed", summary.listed),
        ("already complete", counts.get("complete", 0)),
        ("missing here" if summary.dry_run else "new", counts.get("new", 0)),
        ("older here" if summary.dry_run else "updated", counts.get("updated", 0)),
        ("audio missing" if summary.dry_run else "audio fetched", audio),
        ("still processing (next run)", counts.get("processing", 0)),
        ("gone upstream (kept here)", len(summary.gone)),
        ("audio gone upstream (none here)", len(summary.audio_gone)),
        ("erased here (not fetched)", counts.get("erased", 0)),
        ("failed", summary.failed),
    ]
    for label, count in rows:
        table.add_row(label, str(count))
    console.print(table)
    for conversation_id, reason in summary.failures[:20]:
        console.print(f"[red]failed[/red] {_plain(conversation_id)}: {_plain(reason)}")
    if summary.failed > 20:
        console.print(f"... and {summary.failed - 20} more; `callvault sync --json` lists them all")
    if summary.audio_gone:
        ids = summary.audio_gone
        console.print(
            f"audio gone upstream: {_plain(' '.join(ids[:50]))}{' ...' if len(ids) > 50 else ''} "
            "(their transcripts say they have audio; ElevenLabs answers 404 for it, so it cannot be fetched)"
        )
    if summary.dry_run:
        for label, ids in (
            ("missing", summary.missing),
            ("older here", summary.outdated),
            ("audio missing", summary.audio_missing),
        ):
            if ids:
                console.print(f"{label}: {_plain(' '.join(ids[:50]))}{' ...' if len(ids) > 50 else ''}")
    elif summary.failed:
        console.print("Run `callvault sync` again to retry the failed ones: the next window starts before them.")

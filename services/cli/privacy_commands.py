"""``callvault forget``: erase a caller, or conversations, from every store (docs/privacy.md)."""

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from services.cli.options import DATA_DIR_OPTION, progress_bars, settings_for
from services.core.config import Settings

if TYPE_CHECKING:
    from services.core.ports import CallerData


def _memory_erasure(settings: Settings) -> "CallerData | None":
    """The memory store, if memory is on. The local (offline Mem0) store is held by a running `serve`."""
    from services.memory.wiring import INDEX_FILE, build_memory_store, memory_enabled

    if not memory_enabled(settings):
        return None
    from services.memory.erasure import MemoryErasure
    from services.memory.outbox import SqliteOutbox

    try:
        store = build_memory_store(settings)
    except Exception as exc:  # e.g. the offline store's folder is locked by `callvault serve`
        raise click.ClickException(
            f"cannot open the memory store ({type(exc).__name__}): stop `callvault serve`, or erase through "
            "it with `DELETE /callers/{phone}` (an admin key)"
        ) from None
    local = settings.backend == "local" and (settings.data_dir / INDEX_FILE).exists()
    return MemoryErasure(store, SqliteOutbox(settings.data_dir / INDEX_FILE) if local else None)


@click.command()
@click.argument("phone", required=False)
@click.option(
    "--conversation", "conversations", multiple=True, metavar="ID", help="Erase this conversation (repeatable)."
)
@click.option("--dry-run", is_flag=True, help="Count what would be erased; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@DATA_DIR_OPTION
def forget(
    phone: str | None, conversations: tuple[str, ...], dry_run: bool, as_json: bool, yes: bool, data_dir: Path | None
) -> None:
    """Erase the caller PHONE everywhere: archive objects (every S3 version), index rows, analytics
    rows, caches, memories and memory jobs. Or only the conversations named with --conversation.

    Idempotent: run it again after a failure and it finishes what is left.

    \b
    Examples:
      callvault forget +16125550142 --dry-run
      callvault forget +16125550142 --yes --json
      callvault forget --conversation conv_01jzfrjvcce0vsea1fcbpp9p04
    """
    from services.core.domain import phone as phone_domain
    from services.core.domain.errors import CallVaultError
    from services.core.wiring import build_storage
    from services.privacy.wiring import build_eraser
    from services.web.params import parse_phone

    if bool(phone) == bool(conversations):
        raise click.UsageError("name a PHONE or --conversation ID (not both)")
    settings = settings_for(data_dir)
    if settings.backend != "aws" and not (settings.data_dir / "index.sqlite3").exists():
        raise click.ClickException(f"no archive in {settings.data_dir}: pass the server's --data-dir")
    e164 = None
    if phone:
        try:
            e164 = parse_phone(phone, settings.default_region)
        except CallVaultError as exc:
            raise click.BadParameter(exc.message, param_hint="PHONE") from None
    who = phone_domain.mask(e164) if e164 else f"{len(conversations)} conversation(s)"
    if not dry_run and not yes and not as_json:
        click.confirm(f"Erase everything kept of {who}? This cannot be undone.", abort=True)
    try:
        eraser = build_eraser(settings, build_storage(settings), _memory_erasure(settings))
        plan = eraser.plan_caller(e164) if e164 else eraser.plan_conversations(conversations)
        if dry_run:
            summary = eraser.dry_run(plan)
        else:
            with progress_bars() as bar:
                summary = eraser.erase(plan, progress=bar("erasing calls"))
    except CallVaultError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
        return
    verb = "would erase" if dry_run else "erased"
    click.echo(f"{who}: {verb} {summary.conversations} conversation(s)")
    for name, count in summary.to_dict().items():
        if name not in ("phone", "dry_run", "conversations"):
            click.echo(f"  {name:<20} {count}")
    if not dry_run:
        click.echo("Run `callvault verify` to check the archive.", err=True)
    sys.exit(0)


PRIVACY_COMMANDS = [forget]

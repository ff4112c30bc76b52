"""``callvault calls`` and ``callvault show``: the search API for people at a terminal.

They call the same use cases as ``GET /calls`` and ``GET /calls/{id}`` (``services.search.service``)
directly on the configured storage, so no server or API key is needed; ``--json`` prints exactly
what the API would return, for scripts.
"""

import time
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.cli.options import DATA_DIR_OPTION, archive_settings, terminal_text
from services.core.config import Settings
from services.core.domain.errors import CallVaultError, InvalidCursor, InvalidRequest
from services.core.domain.models import CALL_OUTCOMES, CALL_STATUSES

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON instead of a table.")
DEFAULT_BASE_URL = "http://127.0.0.1:8080"


def _signing_key(settings: Settings) -> bytes:
    """The key `callvault serve` uses, so cursors and links from here work there too (and back)."""
    from services.web.credentials import configured_signing_key, local_signing_key

    return configured_signing_key(settings) or local_signing_key(settings.data_dir)


def _fail(exc: CallVaultError) -> click.ClickException:
    if isinstance(exc, InvalidRequest | InvalidCursor):
        return click.UsageError(exc.message)
    return click.ClickException(exc.message)


def _when(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _console() -> Console:
    """The terminal's width on a terminal; wide when piped (rich would assume 80 columns and cut ids)."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _text(value: object) -> str:
    """A value from the archive (what a webhook sent) as plain text: Rich markup in it (``[/x]``) would
    crash the table, control characters would drive the terminal."""
    text = "" if value is None else str(value).strip()
    return escape(terminal_text(text)) or "-"


@click.command()
@click.option("--phone", help="Customer number as you would type it: +16125550142, (612) 555-0142, ...")
@click.option("--agent", "agent_id", help="Only calls of this ElevenLabs agent id.")
@click.option("--since", help="Started at or after: ISO 8601 (2025-07-06, 2025-07-06T11:40Z) or unix seconds.")
@click.option("--until", help="Started before (exclusive): ISO 8601 or unix seconds.")
@click.option(
    "--status",
    type=click.Choice(CALL_STATUSES),
    help="The call's status (initiation_failed: it never connected).",
)
@click.option(
    "--outcome",
    "call_successful",
    type=click.Choice(CALL_OUTCOMES),
    help="ElevenLabs' evaluation of the call.",
)
@click.option("--limit", default=25, show_default=True, type=click.IntRange(1, 100), help="Calls per page.")
@click.option("--cursor", help="Continue a previous listing (its 'next page' hint prints this).")
@JSON_OPTION
@DATA_DIR_OPTION
def calls(
    phone: str | None,
    agent_id: str | None,
    since: str | None,
    until: str | None,
    status: str | None,
    call_successful: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
    data_dir: Path | None,
) -> None:
    """List archived calls, newest first.

    \b
    Examples:
      callvault calls --phone "(612) 555-0142"
      callvault calls --agent agent_01jx... --since 2025-07-01 --outcome failure
      callvault calls --json | jq -r '.items[].conversation_id'
    """
    from services.core.wiring import build_storage
    from services.search.cursor import CursorCodec
    from services.search.params import parse_filters
    from services.search.schemas import CallList
    from services.search.service import search_calls

    settings = archive_settings(data_dir)
    try:
        filters = parse_filters(
            phone=phone,
            agent_id=agent_id,
            since=since,
            until=until,
            status=status,
            call_successful=call_successful,
            default_region=settings.default_region,
        )
        storage = build_storage(settings)
        page = search_calls(
            filters, limit=limit, cursor=cursor, index=storage.index, cursors=CursorCodec(_signing_key(settings))
        )
    except CallVaultError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(CallList.of(page).model_dump_json(indent=2))
        return
    table = Table(title=f"{len(page.items)} call(s), newest first", title_justify="left")
    # Time, id and phone are what people copy: never shortened. The rest gives way on narrow terminals.
    table.add_column("started (UTC)", no_wrap=True, min_width=19)
    table.add_column(
        "conversation", no_wrap=True, min_width=max((len(r.conversation_id) for r in page.items), default=12)
    )
    table.add_column("phone", no_wrap=True, min_width=12)
    table.add_column("agent", overflow="ellipsis", no_wrap=True, max_width=34)
    for column in ("dir", "secs", "status", "outcome", "audio"):
        table.add_column(column, no_wrap=True, overflow="ellipsis", justify="right" if column == "secs" else "left")
    for r in page.items:
        table.add_row(
            _when(r.started_at),
            r.conversation_id,
            _text(r.phone),
            _text(r.agent_name or r.agent_id),
            _text(r.direction),
            _text(r.duration_s),
            _text(r.status),
            _text(r.call_successful),
            "yes" if r.has_audio else "-",
        )
    _console().print(table)
    if page.next_cursor:
        click.echo(f"next page: add --cursor {page.next_cursor}", err=True)


@click.command()
@click.argument("conversation_id")
@click.option(
    "--base-url",
    default=None,
    help=(
        "Local back end: the `callvault serve` address the links point at [CALLVAULT_PUBLIC_URL, "
        f"else where `serve` last listened for this data dir, else {DEFAULT_BASE_URL}]."
    ),
)
@JSON_OPTION
@DATA_DIR_OPTION
def show(conversation_id: str, base_url: str | None, as_json: bool, data_dir: Path | None) -> None:
    """Show one call: its index record and download links for transcript and audio.

    \b
    Example:
      callvault show conv_01jzfrjvcce0vsea1fcbpp9p04
      curl -fLOJ "$(callvault show conv_01jz... --json | jq -r .links.transcript.url)"
    """
    from services.core.wiring import build_storage
    from services.local.served_url import recorded_served_url
    from services.search.schemas import CallDetail
    from services.search.service import get_call
    from services.search.wiring import build_link_signer

    settings = archive_settings(data_dir)
    try:
        storage = build_storage(settings)
        links = build_link_signer(settings, storage, _signing_key(settings), time.time)
        details = get_call(conversation_id, index=storage.index, links=links, expires_in=settings.link_ttl_secs)
        _record_links_issued(settings, conversation_id)
    except CallVaultError as exc:
        raise _fail(exc) from None
    base_url = base_url or settings.public_url or recorded_served_url(settings.data_dir) or DEFAULT_BASE_URL
    detail = CallDetail.of_details(details, base_url)
    if as_json:
        click.echo(detail.model_dump_json(indent=2))
        return
    table = Table(title=f"call {detail.conversation_id}", title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in detail.model_dump(exclude={"links"}).items():
        table.add_row(name, _when(value) if name.endswith("_at") and value is not None else _text(value))
    _console().print(table)
    # Links on plain lines, never wrapped by the table, so they can be copied whole.
    for kind, link in (("transcript", detail.links.transcript), ("audio", detail.links.audio)):
        if link is None:
            click.echo(f"{kind}: none")
        else:
            click.echo(f"{kind} ({link.bytes} bytes, link expires {_when(link.expires_at)} UTC):\n  {link.url}")


def _record_links_issued(settings: Settings, conversation_id: str) -> None:
    """Links from the terminal are accesses like links from the API (``GET /calls/{id}``): recorded
    before they are shown, with the OS user as the actor."""
    from services.cli.privacy_commands import cli_actor
    from services.privacy.wiring import build_auditor

    auditor = build_auditor(settings)
    if auditor is not None:
        auditor.record("link_issued", cli_actor(), [conversation_id], {})

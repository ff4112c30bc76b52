"""``callvault forget``: erase a caller, or conversations, from every store (docs/privacy.md)."""

import json
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import click

from services.cli.options import (
    CONVERSATION_ID,
    DATA_DIR_OPTION,
    INSTANT,
    archive_settings,
    confirm,
    progress_bars,
    require_archive,
    settings_for,
)
from services.core.config import Settings

if TYPE_CHECKING:
    from services.core.domain.holds import Hold
    from services.core.ports import CallerData
    from services.privacy.holds import HoldBook
    from services.privacy.service import ErasureSummary, UpstreamSummary


_NO_TOMBSTONE_KEY = (
    "set CALLVAULT_TOMBSTONE_KEY_PARAM (an SSM SecureString) or CALLVAULT_TOMBSTONE_KEY first: "
    "without tombstones an erased call comes back with the next webhook retry or sync"
)
# On AWS the audit trail and the holds are the stack's audit table, whose entries name conversations
# with the tombstone key: both settings are needed (docs/privacy.md).
AWS_PRIVACY_SETTINGS = (
    "on AWS set CALLVAULT_AUDIT_TABLE (the stack's AuditTable) and CALLVAULT_TOMBSTONE_KEY_PARAM (see docs/privacy.md)"
)
_THROUGH_SERVE = "erase through it instead: DELETE /callers/{phone} with an admin key (docs/privacy.md)"


def _exclusive(settings: Settings, command: str, hint: str = _THROUGH_SERVE) -> AbstractContextManager[object]:
    """The offline memory store is one process's: held while we erase, refused while `serve` runs
    (which erases through `DELETE /callers/{phone}` itself)."""
    from services.local.lock import DataDirBusy, DataDirLock, DataDirUnusable

    if settings.backend != "local" or settings.memory_backend != "oss":
        return nullcontext()
    try:
        return DataDirLock.acquire(settings.data_dir, command)
    except DataDirBusy as exc:
        raise click.ClickException(f"{exc}; {hint}") from None
    except DataDirUnusable as exc:  # e.g. a data dir that is a file, or not ours to write
        raise click.ClickException(str(exc)) from None


def _memory_erasure(settings: Settings) -> "CallerData | None":
    """The memory store, if memory is on. The local (offline Mem0) store is held by a running `serve`."""
    from services.memory.wiring import INDEX_FILE, build_memory_store, memory_enabled

    if not memory_enabled(settings):
        return None
    if settings.backend == "aws" and settings.memory_backend == "oss":  # the default; no such store on AWS
        raise click.ClickException(
            "on AWS the caller memories are on Mem0 Platform: set CALLVAULT_MEMORY_BACKEND=platform and "
            "CALLVAULT_MEM0_API_KEY_PARAM (or none if the stack keeps no memories); nothing was changed"
        )
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
    "--conversation",
    "conversations",
    type=CONVERSATION_ID,
    multiple=True,
    metavar="ID",
    help="Erase this conversation (repeatable).",
)
@click.option(
    "--upstream",
    is_flag=True,
    help="Also delete the conversations at ElevenLabs (needs ELEVENLABS_API_KEY, a key with write access).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be erased; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@DATA_DIR_OPTION
def forget(
    phone: str | None,
    conversations: tuple[str, ...],
    upstream: bool,
    dry_run: bool,
    as_json: bool,
    yes: bool,
    data_dir: Path | None,
) -> None:
    """Erase the caller PHONE everywhere: archive objects (every S3 version), index rows, analytics
    rows, caches, memories and memory jobs. Or only the conversations named with --conversation.
    With --upstream, the conversations at ElevenLabs too (--dry-run lists them).

    Idempotent: run it again after a failure and it finishes what is left (exit 1 while an upstream
    deletion failed: the same command asks again).

    \b
    Examples:
      callvault forget +16125550142 --dry-run
      callvault forget +16125550142 --yes --json
      callvault forget --conversation conv_01jzfrjvcce0vsea1fcbpp9p04
      callvault forget +16125550142 --upstream --dry-run
    """
    from services.core.domain import phone as phone_domain
    from services.core.domain.errors import CallVaultError
    from services.web.params import parse_phone

    if bool(phone) == bool(conversations):
        raise click.UsageError("name a PHONE or --conversation ID (not both)")
    settings = settings_for(data_dir)
    if settings.backend != "aws":
        require_archive(settings, data_dir)
    e164 = None
    if phone:
        try:
            e164 = parse_phone(phone, settings.default_region)
        except CallVaultError as exc:
            raise click.BadParameter(exc.message, param_hint="PHONE") from None
    who = phone_domain.mask(e164) if e164 else f"{len(conversations)} conversation(s)"
    with _exclusive(settings, "callvault forget"):  # first: a refusal must not follow a "yes"
        if not dry_run and not yes and not as_json:
            confirm(f"Erase everything kept of {who}? This cannot be undone.")
        summary = _forget(settings, e164, conversations, dry_run, upstream)
    failed = summary.upstream.failed if summary.upstream is not None else {}
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
        sys.exit(1 if failed else 0)
    verb = "would erase" if dry_run else "erased"
    click.echo(f"{who}: {verb} {summary.conversations} conversation(s)")
    # The DuckDB cache is dropped whenever it exists: it says nothing about whether the call was here.
    derived = [count for name, count in summary.derived.items() if name != "analytics_cache"]
    if not (any(derived) or summary.index_rows or summary.archive_objects):
        if e164:  # no call, so no tombstone: the number's next calls are archived as usual
            click.echo(
                "  nothing of this number was found here; its calls are archived as usual when they come", err=True
            )
        else:  # a mistyped id, or a call not delivered yet: its tombstone refuses it when it comes
            kept = "would be" if dry_run else "is"
            click.echo(
                f"  nothing of it was found here; it {kept} kept erased, so a later delivery or sync of it is refused",
                err=True,
            )
    for name, count in summary.to_dict().items():
        if name not in ("phone", "dry_run", "conversations", "upstream", "index_log_pending"):
            click.echo(f"  {name:<20} {count}")
    if summary.index_log_pending:
        click.echo(
            "  the index's write-ahead log still holds copies of the erased rows (a reader held it); they go "
            "with the next erasure, or when the last program using the index (that reader, or `serve`) closes it",
            err=True,
        )
    if summary.upstream is not None:
        _echo_upstream(summary.upstream, dry_run)
    if failed:
        assert summary.upstream is not None
        fix = (
            "ElevenLabs refused the key: set ELEVENLABS_API_KEY (on AWS, the SSM parameter named by "
            "CALLVAULT_ELEVENLABS_API_KEY_PARAM) to a key with write access to Conversational AI, then "
            if summary.upstream.key_refused
            else ""
        )
        click.echo(
            f"{len(failed)} conversation(s) were not deleted at ElevenLabs (their index rows are kept): "
            f"{fix}run the same command again to finish",
            err=True,
        )
        sys.exit(1)
    if not dry_run:
        click.echo("Run `callvault verify` to check the archive.", err=True)
    sys.exit(0)


def _echo_upstream(upstream: "UpstreamSummary", dry_run: bool) -> None:
    if dry_run:
        click.echo(f"  {'at ElevenLabs':<20} would delete {len(upstream.would_delete)}")
        for conversation_id in upstream.would_delete:
            click.echo(f"    {conversation_id}")
        return
    click.echo(f"  {'at ElevenLabs':<20} deleted {upstream.deleted}, already gone {upstream.already_gone}")
    for conversation_id, why in upstream.failed.items():
        click.echo(f"    FAILED {conversation_id}: {why}")


def _forget(
    settings: Settings, e164: str | None, conversations: tuple[str, ...], dry_run: bool, upstream: bool = False
) -> "ErasureSummary":
    from services.core.domain.errors import CallVaultError
    from services.core.wiring import build_storage
    from services.privacy.wiring import AWS_NO_ANALYTICS, build_eraser

    try:
        eraser = build_eraser(settings, build_storage(settings), _memory_erasure(settings), upstream=upstream)
        if eraser.erased is None:  # AWS without a tombstone key: the calls would come back with the next sync
            raise click.ClickException(_NO_TOMBSTONE_KEY)
        if eraser.holds is None or eraser.audit is None:  # AWS: both are the audit table; never "no holds"
            raise click.ClickException(
                f"erasure on AWS needs the legal holds and the audit trail: {AWS_PRIVACY_SETTINGS}; nothing was changed"
            )
        if settings.backend == "aws" and not settings.analytics_bucket:
            raise click.ClickException(AWS_NO_ANALYTICS)
        plan = eraser.plan_caller(e164) if e164 else eraser.plan_conversations(conversations)
        if dry_run:
            return eraser.dry_run(plan, upstream=upstream)
        with progress_bars() as bar:
            return eraser.erase(plan, progress=bar("erasing calls"), actor=cli_actor(), upstream=upstream)
    except CallVaultError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None


def cli_actor() -> str:
    """Who acts at a terminal, for the audit trail: the OS user (never a caller's data)."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@click.command()
@click.option("--since", type=INSTANT, metavar="WHEN", help="Only entries at or after this (ISO 8601 or unix seconds).")
@click.option("--conversation", type=CONVERSATION_ID, metavar="ID", help="Only entries naming this conversation.")
@click.option("--verify", "check", is_flag=True, help="Check the hash chain; exit 1 if it is broken.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines, one entry each.")
@DATA_DIR_OPTION
def audit(since: int | None, conversation: str | None, check: bool, as_json: bool, data_dir: Path | None) -> None:
    """The audit trail, oldest first: erasures, legal holds, retention runs, key changes, and reads of
    transcripts, audio and caller memories.

    Conversations are named by a keyed hash (never an id or phone number in clear); --conversation
    finds one conversation's entries, erased or not.

    \b
    Examples:
      callvault audit --since 2026-12-01
      callvault audit --conversation conv_01jzfrjvcce0vsea1fcbpp9p04
      callvault audit --verify
    """
    from datetime import UTC, datetime

    from services.core.domain import keys
    from services.core.domain.errors import CallVaultError
    from services.privacy.wiring import build_auditor

    settings = archive_settings(data_dir)
    auditor = build_auditor(settings)
    if auditor is None:
        raise click.ClickException(f"no audit trail here: {AWS_PRIVACY_SETTINGS}")
    try:
        cid = keys.check_conversation_id(conversation) if conversation else None
        entries = auditor.entries(since=since, conversation_id=cid)
        chain = auditor.check() if check else None
    except CallVaultError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    for entry in entries:
        if as_json:
            click.echo(json.dumps(entry.to_dict()))
            continue
        when = datetime.fromtimestamp(entry.at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        subjects = ",".join(s[:12] for s in entry.subjects[:3]) + (" ..." if len(entry.subjects) > 3 else "")
        detail = " ".join(f"{k}={v}" for k, v in entry.detail.items())
        click.echo(f"{entry.seq:>6}  {when}  {entry.action:<18} {entry.actor:<20} {subjects or '-'}  {detail}")
    if chain is not None:
        if chain.ok:
            click.echo(f"chain verifies: {chain.entries} entries, head {chain.head}", err=True)
        else:
            click.echo(f"chain BROKEN at entry {chain.seq}: {chain.problem}", err=True)
            sys.exit(1)


def _hold_book(settings: Settings) -> "HoldBook":
    from services.privacy.wiring import build_auditor, build_holds

    book = build_holds(settings, build_auditor(settings))
    if book is None:
        raise click.ClickException(f"no legal holds here: {AWS_PRIVACY_SETTINGS}")
    return book


@click.command()
@click.argument("phone", required=False)
@click.option(
    "--conversation",
    type=CONVERSATION_ID,
    metavar="ID",
    help="Hold this conversation instead of a caller; with --list, only the holds that cover it.",
)
@click.option("--reason", default=None, help="Why (a case or ticket reference); shown when erasure is refused.")
@click.option(
    "--list",
    "show",
    is_flag=True,
    help="List the holds (active and released) instead, or with --conversation ID those covering that call.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@DATA_DIR_OPTION
def hold(
    phone: str | None, conversation: str | None, reason: str | None, show: bool, as_json: bool, data_dir: Path | None
) -> None:
    """Place a legal hold on the caller PHONE (or one --conversation): erasure refuses held data,
    naming the hold, until `callvault release HOLD_ID`.

    \b
    Examples:
      callvault hold +16125550142 --reason "case 2026-114"
      callvault hold --conversation conv_01jz... --reason "complaint 88"
      callvault hold --list
      callvault hold --list --conversation conv_01jz...   # a hold on the call or on its caller
    """
    from services.core.domain import keys
    from services.core.domain.errors import CallVaultError
    from services.web.params import parse_phone

    settings = archive_settings(data_dir)
    if show and phone:
        raise click.UsageError(
            "--list takes no PHONE: it lists every hold, or with --conversation ID the holds covering that call"
        )
    book = _hold_book(settings)
    if show:
        holds = book.holds.all() if conversation is None else _holds_covering(settings, book, conversation)
        for item in holds:
            if as_json:
                click.echo(json.dumps(item.to_dict()))
            else:
                state = "active" if item.active else f"released by {item.released_by}"
                click.echo(f"{item.id}  {item.kind:<12} {item.label:<24} {state:<24} {item.reason}")
        return
    if bool(phone) == bool(conversation):
        raise click.UsageError("name a PHONE or --conversation ID (not both)")
    if not reason or not reason.strip():
        raise click.UsageError("--reason is required: a case or ticket reference")
    try:
        e164 = parse_phone(phone, settings.default_region) if phone else None
    except CallVaultError as exc:
        raise click.BadParameter(exc.message, param_hint="PHONE") from None
    try:
        cid = keys.check_conversation_id(conversation) if conversation else None
    except CallVaultError as exc:
        raise click.BadParameter(exc.message, param_hint="--conversation") from None
    placed = book.place(reason=reason, actor=cli_actor(), phone=e164, conversation_id=cid)
    click.echo(json.dumps(placed.to_dict()) if as_json else f"placed {placed.id} on {placed.label}")


def _holds_covering(settings: Settings, book: "HoldBook", conversation: str) -> list["Hold"]:
    """The holds on the call or on its caller: the caller's number comes from the call's index row."""
    from services.core.domain import keys
    from services.core.domain.errors import CallVaultError
    from services.core.domain.models import CallRecord
    from services.core.wiring import build_storage

    try:
        cid = keys.check_conversation_id(conversation)
    except CallVaultError as exc:
        raise click.BadParameter(exc.message, param_hint="--conversation") from None
    call = build_storage(settings).index.get(cid)
    if call is None:
        click.echo(f"no call {cid} in the index: only holds placed on the conversation itself can match", err=True)
    holds = book.covering(call or CallRecord(cid))
    if not holds:
        click.echo(f"no hold covers {cid}", err=True)
    return holds


@click.command()
@click.argument("hold_id")
@DATA_DIR_OPTION
def release(hold_id: str, data_dir: Path | None) -> None:
    """Release the legal hold HOLD_ID (from `callvault hold --list`); its data may be erased again."""
    from datetime import UTC, datetime

    from services.core.domain.errors import NotFound

    book = _hold_book(archive_settings(data_dir))
    earlier = next((hold for hold in book.holds.all() if hold.id == hold_id and not hold.active), None)
    if earlier is not None:  # again: nothing to do, and nothing to record twice
        when = datetime.fromtimestamp(earlier.released_at or 0, UTC).strftime("%Y-%m-%d %H:%M UTC")
        click.echo(f"{earlier.id} ({earlier.label}) was released already, on {when} by {earlier.released_by}")
        return
    try:
        released = book.release(hold_id, actor=cli_actor())
    except NotFound as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"released {released.id} ({released.label})")


@click.group()
def retention() -> None:
    """Retention rules: erase calls, audio, memories and analytics rows older than DATA_DIR/retention.toml allows."""


@retention.command(name="run")
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--rules",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),  # a mistyped path must not mean "no rules"
    default=None,
    help="Rules file [DATA_DIR/retention.toml; without it nothing expires].",
)
@DATA_DIR_OPTION
def retention_run(dry_run: bool, as_json: bool, rules: Path | None, data_dir: Path | None) -> None:
    """Apply the retention rules once (`callvault serve` does it daily). Held calls are skipped.

    \b
    DATA_DIR/retention.toml:
      [default]
      transcripts_days = 365        # the whole call: transcript, audio, row, analytics, memories
      audio_days = 30               # the audio only
      memories_days = 90            # the call's memories only
      analytics_days = 730          # the call's analytics rows only (reports stop counting it)
      [agents."agent_7201k..."]
      transcripts_days = 30
    """
    from services.analytics.compaction import LateDays
    from services.analytics.writer import AnalyticsWriter
    from services.core.domain.errors import CallVaultError
    from services.core.wiring import build_storage
    from services.privacy.retention import RetentionConfigError
    from services.privacy.wiring import build_retention

    settings = settings_for(data_dir)
    if settings.backend != "aws":
        require_archive(settings, data_dir)
    lock = _exclusive(settings, "callvault retention run", "it applies the rules itself, daily")
    try:
        with lock:
            late_days = LateDays()  # closed days whose has_audio it rewrote: merged before it ends
            storage = build_storage(settings)
            runner = build_retention(settings, storage, _memory_erasure(settings), rules, on_late_write=late_days.add)
            if runner.eraser.erased is None:  # AWS without a tombstone key: expired calls would sync back
                raise click.ClickException(_NO_TOMBSTONE_KEY)
            with progress_bars() as bar:
                try:
                    summary = runner.run(dry_run=dry_run, progress=bar("expiring calls"), actor=cli_actor())
                finally:
                    flags = runner.audio_flags
                    late_days.merge(flags if isinstance(flags, AnalyticsWriter) else None)
    except RetentionConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except CallVaultError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
        return
    if runner.rules.shortest_days() is None:  # no file, or one that keeps everything: not "nothing old enough"
        where = rules or settings.data_dir / "retention.toml"
        click.echo(f"retention: no rule in {where}: nothing expires (docs/privacy.md, Retention rules)", err=True)
    verb = "would expire" if dry_run else "expired"
    click.echo(
        f"retention: {verb} {len(summary.calls_expired)} call(s), the audio of {len(summary.audio_expired)}, "
        f"the memories of {len(summary.memories_expired)} and the analytics rows of "
        f"{len(summary.analytics_expired)} more; {summary.held} held call(s) skipped"
    )


PRIVACY_COMMANDS = [forget, audit, hold, release, retention]

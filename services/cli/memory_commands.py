"""``callvault memory ...``: the local memory outbox for people at a terminal.

- ``status``: how many memory jobs are pending, running, done and failed, and why recent ones failed.
- ``retry``: put failed jobs back to pending (all, or one ``--conversation-id``); a running
  ``callvault serve`` picks them up within a poll, otherwise the next start does.
- ``rerun [--phone]``: queue every archived call's job again (memories rebuilt by the current extractor).
- ``forget PHONE``: erase everything the memory store holds about one caller (history included).
  The archive and index are untouched; that is a separate decision.
- ``show PHONE``: the caller's memories, newest call first; ``search PHONE QUERY``: the most similar.
  Both read the configured store (the local one only while ``serve`` is stopped; otherwise use
  ``GET /callers/{phone}/memories``).

They work on the data dir directly (no server needed). On AWS, jobs live in SQS: re-drive the
dead-letter queue instead (docs/memory.md).
"""

import sys
import time
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from services.cli.options import DATA_DIR_OPTION, confirm, require_archive, settings_for, terminal_text
from services.core.config import Settings

if TYPE_CHECKING:  # imported lazily below: `callvault --help` must not load the memory package
    from services.memory.domain import MemoryType
    from services.memory.outbox import SqliteOutbox


def _outbox(settings: Settings, data_dir: Path | None) -> "SqliteOutbox":
    from services.memory.outbox import SqliteOutbox
    from services.memory.wiring import INDEX_FILE

    if settings.backend != "local":
        raise click.UsageError("memory jobs are in SQS on AWS: see docs/memory.md (re-drive the dead-letter queue)")
    require_archive(settings, data_dir)  # where it looked, and how to point at the server's data dir
    path = settings.data_dir / INDEX_FILE
    if not path.exists():
        raise click.UsageError(f"no index at {path}: run `callvault serve` or `callvault import` first")
    return SqliteOutbox(path)


@click.group()
def memory() -> None:
    """Caller memory: job status, re-drive failed jobs, show and search a caller's memories, erase a caller."""


@memory.command()
@DATA_DIR_OPTION
@click.option("--limit", default=10, show_default=True, type=click.IntRange(0, 1000), help="Failed jobs to list.")
def status(data_dir: Path | None, limit: int) -> None:
    """Count memory jobs by state and list the latest failures."""
    outbox = _outbox(settings_for(data_dir), data_dir)
    counts = outbox.counts()
    click.echo("  ".join(f"{state}: {count}" for state, count in counts.items()))
    for row in outbox.rows("failed", limit) if limit else []:
        when = datetime.fromtimestamp(row.updated_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        click.echo(f"failed  {row.conversation_id}  attempts={row.attempts}  {when}  {row.last_error or ''}")


@memory.command()
@DATA_DIR_OPTION
@click.option("--conversation-id", default=None, help="Only this conversation's job.")
def retry(data_dir: Path | None, conversation_id: str | None) -> None:
    """Put failed memory jobs back to pending, with a fresh attempt budget."""
    count = _outbox(settings_for(data_dir), data_dir).retry_failed(conversation_id)
    click.echo(f"{count} failed memory job{'s' if count != 1 else ''} back to pending")
    if conversation_id and not count:
        sys.exit(1)


@memory.command()
@DATA_DIR_OPTION
@click.option("--phone", default=None, help="Only this caller's calls.")
def rerun(data_dir: Path | None, phone: str | None) -> None:
    """Queue every archived call's memory job again, e.g. to rebuild raw-turn memories with the extractor.

    A running `callvault serve` works through them (each replaces its call's memories); otherwise the
    next start does. Calls whose memories a retention rule expired, or `memory forget` erased, are left out.
    """
    from services.core.adapters.sqlite_call_index import SqliteCallIndex
    from services.core.domain.errors import CallVaultError
    from services.core.domain.models import MEMORY_EXPIRED
    from services.memory.domain import STATUS_PENDING, MemoryJob
    from services.memory.wiring import INDEX_FILE
    from services.web.params import parse_phone

    settings = settings_for(data_dir)
    outbox = _outbox(settings, data_dir)
    try:
        only = parse_phone(phone, settings.default_region) if phone else None
    except CallVaultError as exc:
        raise click.BadParameter(exc.message, param_hint="--phone") from None
    index = SqliteCallIndex(settings.data_dir / INDEX_FILE)
    now = int(time.time())
    queued = 0
    for call in index.scan():
        if not call.phone or not call.transcript_key or (only and call.phone != only):
            continue
        if call.memory_status == MEMORY_EXPIRED:  # removed by a retention rule (#13) or memory forget: not rebuilt
            continue
        index.set_memory_status(call.conversation_id, STATUS_PENDING, now)
        outbox.enqueue(MemoryJob(call.conversation_id, call.transcript_key, call.event_at))
        queued += 1
    click.echo(f"{queued} memory job{'s' if queued != 1 else ''} queued")


@memory.command()
@click.argument("phone")
@DATA_DIR_OPTION
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def forget(phone: str, data_dir: Path | None, yes: bool) -> None:
    """Erase every memory of the caller PHONE (memories and their history); the calls stay archived.

    Final for the calls archived now: a redelivery, a sync or `memory rerun` builds none of their
    memories again (their memory status becomes `expired`). Calls that come later are remembered.

    Refused while a legal hold covers the caller or one of their calls; recorded in the audit trail
    (`memory_erase`). Stop `callvault serve` first when the back end is the local one: its store is locked to one
    process (a running server is named, with its pid).
    """
    from services.core.domain import phone as phone_domain
    from services.core.domain.errors import CallVaultError
    from services.web.params import parse_phone

    settings = settings_for(data_dir)
    try:
        e164 = parse_phone(phone, settings.default_region)
    except CallVaultError as exc:
        raise click.BadParameter(exc.message, param_hint="PHONE") from None
    _require_archive(settings, data_dir)
    with _data_dir_lock(settings):  # first: a refusal must not follow a "yes"
        if not yes:
            confirm(f"Erase all memories of {phone_domain.mask(e164)}?")
        _forget(settings, e164)


@memory.command()
@click.argument("phone")
@DATA_DIR_OPTION
@click.option("--type", "type_", type=click.Choice(["factual", "semantic"]), default=None, help="Only this kind.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 5000), help="Memories to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def show(phone: str, data_dir: Path | None, type_: str | None, limit: int, as_json: bool) -> None:
    """The caller PHONE's memories: newest call first, facts then what the caller said."""
    _read(phone, data_dir, None, type_, limit, as_json)


@memory.command()
@click.argument("phone")
@click.argument("query")
@DATA_DIR_OPTION
@click.option("--type", "type_", type=click.Choice(["factual", "semantic"]), default=None, help="Only this kind.")
@click.option("--limit", default=5, show_default=True, type=click.IntRange(1, 100), help="Memories to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def search(phone: str, query: str, data_dir: Path | None, type_: str | None, limit: int, as_json: bool) -> None:
    """The caller PHONE's memories most similar to QUERY, best first."""
    if not query.strip():
        raise click.BadParameter("say what to look for", param_hint="QUERY")
    _read(phone, data_dir, query, type_, limit, as_json)


def _read(phone: str, data_dir: Path | None, query: str | None, type_: str | None, limit: int, as_json: bool) -> None:
    import orjson

    from services.core.domain.errors import CallVaultError
    from services.memory.service import caller_memories
    from services.memory.wiring import build_memory_store
    from services.web.params import parse_phone

    settings = settings_for(data_dir)
    try:
        e164 = parse_phone(phone, settings.default_region)
    except CallVaultError as exc:
        raise click.BadParameter(exc.message, param_hint="PHONE") from None
    _require_archive(settings, data_dir)
    kinds: dict[str | None, MemoryType | None] = {"factual": "factual", "semantic": "semantic", None: None}
    kind = kinds[type_]
    api = f" (while it runs, its API answers the same: GET /callers/{{phone}}/memories{'?q=...' if query else ''})"
    with _data_dir_lock(settings, "callvault memory show", api):
        try:
            store = build_memory_store(settings)
        except CallVaultError as exc:
            raise click.ClickException(f"{exc.code}: {exc.message}") from None
        try:
            found = caller_memories(e164, store=store, query=query, type=kind, limit=limit).items
        except CallVaultError as exc:
            raise click.ClickException(f"{exc.code}: {exc.message}") from None
        finally:
            close = getattr(store, "close", None)
            if callable(close):
                close()
    for m in found:
        if as_json:
            fields = ("id", "text", "type", "source", "role", "conversation_id", "agent_id", "started_at", "score")
            click.echo(orjson.dumps({name: getattr(m, name) for name in fields}).decode())
            continue
        when = datetime.fromtimestamp(m.started_at, UTC).strftime("%Y-%m-%d") if m.started_at else "undated"
        score = f"  {m.score:.2f}" if m.score is not None else ""
        origin = terminal_text(m.source or m.type or "-")
        click.echo(f"{when}  {m.conversation_id or '-'}  {origin}{score}  {terminal_text(m.text)}")
    if not found and not as_json:
        click.echo("no memories", err=True)


def _require_archive(settings: Settings, data_dir: Path | None) -> None:
    """The local store lives in the archive's data dir: never start one (and a lock) somewhere else."""
    if settings.backend == "local" and settings.memory_backend == "oss":
        require_archive(settings, data_dir)


def _data_dir_lock(
    settings: Settings, holder: str = "callvault memory forget", while_served: str = ""
) -> AbstractContextManager[object]:
    """The local store is one process's: held while we use it, refused while `serve` holds it
    (``while_served``: what to use instead while it runs)."""
    from services.local.lock import DataDirBusy, DataDirLock, DataDirUnusable

    if settings.backend != "local" or settings.memory_backend != "oss":
        return nullcontext()
    try:
        return DataDirLock.acquire(settings.data_dir, holder)
    except DataDirBusy as exc:
        raise click.ClickException(str(exc) + while_served) from None
    except DataDirUnusable as exc:
        raise click.ClickException(str(exc)) from None


def _forget(settings: Settings, e164: str) -> None:
    from services.cli.privacy_commands import AWS_PRIVACY_SETTINGS, cli_actor
    from services.core.domain import phone as phone_domain
    from services.core.domain.errors import CallVaultError
    from services.core.domain.models import MEMORY_EXPIRED
    from services.core.wiring import build_storage
    from services.memory.erasure import MemoryErasure
    from services.memory.outbox import SqliteOutbox
    from services.memory.wiring import INDEX_FILE, build_memory_store
    from services.privacy.wiring import build_eraser

    try:
        # As `callvault forget` does: a legal hold on the caller or one of their calls refuses it, and
        # the erasure is in the audit trail, recorded before anything goes.
        storage = build_storage(settings)
        eraser = build_eraser(settings, storage)
        if eraser.holds is None or eraser.audit is None:  # AWS: both are the audit table; never "no holds"
            raise click.ClickException(
                f"memory forget on AWS needs the legal holds and the audit trail: {AWS_PRIVACY_SETTINGS}; "
                "nothing was changed"
            )
        plan = eraser.plan_caller(e164)
        if eraser.holds is not None:
            eraser.holds.refuse_held(plan.calls, e164)
        store = build_memory_store(settings)
    except CallVaultError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    try:
        if eraser.audit is not None:
            detail = {"scope": "memories", "phone": phone_domain.mask(e164), "conversations": len(plan.calls)}
            eraser.audit.record("memory_erase", cli_actor(), [c.conversation_id for c in plan.calls], detail)
        if settings.backend == "local" and (settings.data_dir / INDEX_FILE).exists():
            # Jobs first, as `callvault forget`: one left waiting would write the memories again at serve's start.
            SqliteOutbox(settings.data_dir / INDEX_FILE).forget_jobs([c.conversation_id for c in plan.calls])
        # Calls filed under another number that later reported this one keep their memories under that
        # number: erased as those calls only, as `callvault forget` does.
        foreign = [c for c in plan.calls if c.phone is not None and c.phone != e164]

        def erase() -> int:
            return store.delete_caller(e164) + (MemoryErasure(store).erase(None, foreign) if foreign else 0)

        # Erase, then each call's row says its memories are gone for good (``expired``, as a retention
        # rule leaves it, final on every index), then erase again, as retention does: a job already on
        # its way (an SQS message, a worker mid-job) takes out what it writes after the mark, the second
        # erase what it wrote before; a redelivery, a sync or `memory rerun` queues none. A failure
        # before the mark leaves the rows as they were (retention still expires those memories).
        # Calls that come later are remembered.
        count = erase()
        now = int(time.time())
        for call in plan.calls:
            storage.index.set_memory_status(call.conversation_id, MEMORY_EXPIRED, now)
        count += erase()
    except CallVaultError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()
    click.echo(f"erased {count} memor{'ies' if count != 1 else 'y'}")


MEMORY_COMMANDS = [memory]

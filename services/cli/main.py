"""The ``callvault`` command: run the local archive, sign test payloads, import saved calls."""

import errno
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click

from services.cli.options import DATA_DIR_OPTION, settings_for
from services.core.config import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from services.core.wiring import Storage
    from services.local.ingest_process import IngestProcesses
    from services.memory.local import LocalMemory
    from services.privacy.schedule import RetentionThread


class _Commands(click.Group):
    """Errors of the setup, not of the command, as one line that says what to fix: a secret file left
    empty, a key file edited into something else, a data dir that cannot be written (read-only, another
    user's, a full disk), a CALLVAULT_* setting that does not parse (pydantic's error, named by its
    variable), or a store that failed under a command (its CallVaultError message)."""

    def invoke(self, ctx: click.Context) -> object:
        from pydantic import ValidationError

        from services.core.domain.errors import CallVaultError
        from services.core.secrets import SecretFileEmpty
        from services.web.keystore import KeyFileInvalid

        try:
            return super().invoke(ctx)
        except (SecretFileEmpty, KeyFileInvalid) as exc:
            raise click.ClickException(str(exc)) from None
        except CallVaultError as exc:
            # A store that failed (a full disk, S3 or DynamoDB refusing) in a command that has no
            # answer of its own for it: the message, written for users, not a traceback.
            raise click.ClickException(exc.message) from None
        except OSError as exc:
            if (advice := _ADVICE.get(exc.errno or 0)) is None:
                raise
            where = f": {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror}{where}; {advice}") from None
        except ValidationError as exc:
            if exc.title != Settings.__name__:
                raise
            problems = "; ".join(
                f"CALLVAULT_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
                for error in exc.errors()
            )
            raise click.ClickException(f"bad settings: {problems} (set in the environment)") from None


# What to do when the data dir (or a file a command was given) cannot be written, by errno.
_ADVICE = {
    errno.EROFS: "remount it read-write, or pass another --data-dir",
    errno.EACCES: "run as the user who owns the data dir, or pass another --data-dir",
    errno.EPERM: "run as the user who owns the data dir, or pass another --data-dir",
    errno.ENOSPC: "free some space, or pass another --data-dir",
    errno.EDQUOT: "free some space, or pass another --data-dir",
}


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="callvault")
def cli() -> None:
    """CallVault: the archive for AI voice-agent calls.

    \b
    Start here:
      callvault serve                 run the local archive on http://127.0.0.1:8080
      callvault sign call.json        print a signature header to curl a saved webhook at it
      callvault import exports/       archive saved webhooks or conversation JSON files
      callvault report calls-per-day  reports over the analytics tables; callvault sql "SELECT ..."
      callvault calls --phone ...     find archived calls; callvault show ID for one call

    Every command reads the data dir `serve` uses: the same --data-dir DIR, or CALLVAULT_DATA_DIR=DIR
    (default ./callvault-data of the folder you run it in).
    """
    from services.local.hygiene import owner_only_umask

    # Whatever any command writes (archive, index, caches, memories) is born owner-only: 0600/0700.
    click.get_current_context().call_on_close(owner_only_umask())


@cli.command()
@DATA_DIR_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to bind.")
def serve(data_dir: Path | None, host: str, port: int) -> None:
    """Run the local archive: webhook receiver, API, console and /docs in one process (Ctrl-C stops it).

    Stores calls under DATA_DIR/archive (same keys as the S3 bucket) and indexes them in
    DATA_DIR/index.sqlite3. On first run it generates the webhook secret, an admin API key and the agent
    secret (each unless set in the environment; the agent secret only with caller memory on) into
    DATA_DIR/webhook-secret, api-key and agent-secret (`cat` prints them). One server per data dir
    (DATA_DIR/callvault.lock names it); run the other commands with the same --data-dir. DATA_DIR must
    be new, empty or a data dir already: every file in it is made owner-only.
    """
    from services.local.hygiene import foreign_entries
    from services.local.lock import (
        DataDirBusy,
        DataDirLock,
        DataDirUnusable,
        PortTaken,
        bind_listener,
        disk_full_message,
    )

    settings = settings_for(data_dir)
    if foreign := foreign_entries(settings.data_dir):  # `--data-dir ~` by mistake: its files stay as they are
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise click.ClickException(
            f"{settings.data_dir} holds other files ({shown}) and no CallVault data, and `serve` makes every "
            "file in its data dir owner-only: pass a new or empty folder, e.g. --data-dir "
            f"{settings.data_dir / 'callvault-data'}"
        )
    try:  # before anything is generated, printed or opened: the data dir is ours alone, the port is free
        lock = DataDirLock.acquire(settings.data_dir, "callvault serve")
    except (DataDirBusy, DataDirUnusable) as exc:
        raise click.ClickException(disk_full_message(settings.data_dir, exc) or str(exc)) from None
    try:
        listener = bind_listener(host, port)
    except PortTaken as exc:
        lock.abandon()  # a data dir this run made goes again: nothing was written to it
        raise click.ClickException(str(exc)) from None
    port = listener.getsockname()[1]  # the real one when --port 0
    try:
        return _serve(settings, listener, host, port)
    except Exception as exc:  # a full disk at start-up is one line, as it is a 503 once serving
        if (message := disk_full_message(settings.data_dir, exc)) is None:
            raise
        raise click.ClickException(message) from None
    finally:
        lock.close()


def _serve(settings: Settings, listener: "socket.socket", host: str, port: int) -> None:
    """Everything ``serve`` does once the data dir is its own and the port is bound."""
    from services.analytics.compaction import CompactionThread
    from services.core.secrets import secret_list
    from services.core.wiring import build_analytics_store, build_storage, local_webhook_secret
    from services.local.app import create_local_app
    from services.local.hygiene import prepare_data_dir
    from services.local.runtime import tune_garbage_collector
    from services.local.served_url import is_loopback, record_served_url, served_url
    from services.local.server import run_server
    from services.local.sync_runtime import build_local_sync
    from services.web.credentials import API_KEY_FILE, configured_api_keys, local_api_key, resolve_local
    from services.web.keystore import KeyFile

    # Before anything opens it: older files made owner-only, a crash's temp files gone.
    permissions, _sweep = prepare_data_dir(settings)
    if (warning := permissions.warning(settings.data_dir)) is not None:
        click.echo(warning, err=True)
    KeyFile.in_data_dir(settings.data_dir).all_keys()  # a key file that does not parse: said now, in one line
    url = served_url(host, port)
    record_served_url(settings.data_dir, url)  # `callvault show` links point here
    secrets = secret_list(settings.webhook_secret, None)  # SSM is for AWS; locally the env or the data dir
    if not secrets:
        secret, created = local_webhook_secret(settings.data_dir)
        secrets = _listed(secret)
        where = settings.data_dir / "webhook-secret"
        # Where it is, never the value: the server's output is its log, which may be kept or shipped.
        if created:
            click.echo(f"Generated a webhook secret, kept in {where} (owner-only).", err=True)
            click.echo(f"Paste the output of `cat {where}` into ElevenLabs as the webhook's HMAC secret.", err=True)
        else:
            click.echo(f"Webhook secret: kept in {where}", err=True)
    if not configured_api_keys(settings):
        _key, created = local_api_key(settings.data_dir)
        if created:
            key_file = settings.data_dir / API_KEY_FILE
            click.echo(f"Generated an admin API key, kept in {key_file} (owner-only).", err=True)
            click.echo(f"Sign in to the console at {url}/ with the output of `cat {key_file}`;", err=True)
            click.echo(f'search with: curl -H "Authorization: Bearer $(cat {key_file})" {url}/calls', err=True)
        else:
            click.echo(f"API key: kept in {settings.data_dir / API_KEY_FILE}", err=True)
    api_key_hashes, signing_key = resolve_local(settings)
    storage = build_storage(settings)
    memory = _local_memory(settings, storage)
    compaction = CompactionThread(build_analytics_store(settings), settings.analytics_compact_interval)
    app = create_local_app(
        settings,
        secrets,
        storage,
        api_key_hashes=api_key_hashes,
        signing_key=signing_key,
        memory=memory,
        on_late_analytics_write=compaction.nudge,
    )
    sync = build_local_sync(settings, storage, app.state.receiver.archiver)
    retention = _retention_thread(settings, storage, memory, compaction.nudge)  # DATA_DIR/retention.toml, daily
    if sync is not None:
        interval = settings.effective_sync_interval()
        every = f"syncing every {interval:.0f} s" if interval > 0 else "scheduled sync off"
        click.echo(f"ElevenLabs API: missing audio fetched after {settings.audio_grace_seconds} s, {every}", err=True)
    ingest = _ingest_process(settings, secrets, memory, compaction.nudge)
    try:  # from here on, whatever fails stops what was started (the ingest processes first of all)
        click.echo(f"CallVault listening on {url}  (data in {settings.data_dir})", err=True)
        if not is_loopback(host):
            click.echo(
                f"Warning: bound to {host}, so every machine that can reach this one reaches the API, the "
                "console and the webhook over plain HTTP. Put a TLS reverse proxy in front (README, 'Reaching "
                "serve from other machines'), or use the default --host 127.0.0.1.",
                err=True,
            )
        if memory is not None:
            memory.start()  # resumes jobs a previous run left pending
        compaction.start()
        retention.start()
        if sync is not None:
            sync.start()
        tune_garbage_collector()
        # uvicorn drains the requests in flight on SIGTERM, then raises the signal again with the handler
        # it found: with the default one the process ended there, skipping the clean-up below (the ingest
        # processes, the memory worker's current job, the merge). This one ends it through the clean-up.
        signal.signal(signal.SIGTERM, _exit_cleanly)
        signal.signal(signal.SIGINT, _exit_cleanly)  # Ctrl-C too: a stop asked for, not "Aborted!" and 1
        # access_log off: URLs can carry phone numbers; the app logs its own masked lines.
        store_elsewhere = ingest.store if ingest is not None else None
        run_server(app, settings, host=host, port=port, sockets=[listener], store_elsewhere=store_elsewhere)
    finally:  # each stop is safe for a part that never started
        if ingest is not None:
            ingest.close()  # its current write ends first
        if sync is not None:
            sync.stop()
        compaction.stop()
        retention.stop()
        if memory is not None:
            memory.stop()


def _listed(kept: str) -> list[str]:
    """A secret's file read as its variable is: "OLD,NEW" during a rotation (`sign` signs with the first)."""
    return [part.strip() for part in kept.split(",") if part.strip()]


def _exit_cleanly(signum: int, _frame: object) -> None:
    raise SystemExit(0)  # a stop asked for is a clean exit: service managers read 0 as "stopped"


def _ingest_process(
    settings: Settings, secrets: list[str], memory: "LocalMemory | None", on_late_write: "Callable[[str], None]"
) -> "IngestProcesses | None":
    """The processes that store webhooks (``CALLVAULT_INGEST_PROCESSES``, 2 by default), started and ready."""
    if settings.ingest_processes == 0 or sys.platform != "linux":
        return None  # elsewhere nothing would end the children when `serve` is killed: the ingest thread
    from services.local.ingest_process import IngestProcesses

    ingest = IngestProcesses(
        settings,
        secrets,
        processes=settings.ingest_processes,
        memory_jobs=memory is not None,
        on_late_write=on_late_write,
        on_stored=memory.webhook_stored if memory is not None else None,
    )
    ingest.start()  # in the thread that will run the event loop: the children die with it
    return ingest


def _retention_thread(
    settings: Settings, storage: "Storage", memory: "LocalMemory | None", on_late_write: "Callable[[str], None]"
) -> "RetentionThread":
    from services.memory.erasure import MemoryErasure
    from services.privacy.wiring import build_retention_thread

    erasure = MemoryErasure(memory.store, memory.outbox) if memory is not None else None
    return build_retention_thread(settings, storage, erasure, on_late_write)


def _local_memory(settings: Settings, storage: "Storage") -> "LocalMemory | None":
    """Caller memory for `serve`: the offline Mem0 store and its outbox worker (None when switched off)."""
    from services.core.logging import get_logger
    from services.memory.local import build_local_memory
    from services.memory.wiring import AGENT_SECRET_FILE, agent_secrets, local_agent_secret

    secrets = agent_secrets(settings)
    if not secrets and settings.memory_backend != "none":
        secret, created = local_agent_secret(settings.data_dir)
        secrets = _listed(secret)
        where = settings.data_dir / AGENT_SECRET_FILE
        if created:
            click.echo(
                f"Generated the agent secret for the conversation-initiation webhook and memory tool, kept in "
                f"{where} (owner-only). ElevenLabs sends it as X-CallVault-Secret: paste the output of `cat {where}`.",
                err=True,
            )
        else:
            click.echo(f"Agent secret: kept in {where}", err=True)
    return build_local_memory(
        settings, storage, agent_secrets=secrets, logger=get_logger("callvault-memory", settings.log_level)
    )


@cli.command()
@click.argument("file", type=click.File("rb"))
@click.option(
    "--secret",
    envvar="CALLVAULT_WEBHOOK_SECRET",
    default=None,
    help="Webhook secret to sign with [env CALLVAULT_WEBHOOK_SECRET; default: DATA_DIR/webhook-secret].",
)
@DATA_DIR_OPTION
@click.option("--timestamp", type=int, default=None, help="Unix seconds to sign at [default: now].")
def sign(file: BinaryIO, secret: str | None, data_dir: Path | None, timestamp: int | None) -> None:
    """Print the ElevenLabs-Signature header value for FILE (use - for stdin).

    \b
    Example:
      curl -X POST http://127.0.0.1:8080/webhooks/elevenlabs \\
        -H "ElevenLabs-Signature: $(callvault sign call.json)" \\
        -H "content-type: application/json" --data-binary @call.json
    """
    from services.core.domain import signing
    from services.core.secrets import kept_secret
    from services.core.wiring import WEBHOOK_SECRET_FILE

    if secret is None:
        path = settings_for(data_dir).data_dir / WEBHOOK_SECRET_FILE
        if not path.exists():
            raise click.UsageError(
                f"no secret at {path}: pass --secret, set CALLVAULT_WEBHOOK_SECRET, or --data-dir the folder "
                "`callvault serve` uses (it creates webhook-secret there when it first starts)"
            )
        secret = kept_secret(path)  # an empty file is refused, as `serve` refuses it
    # The first of a rotation's list, read as `serve` reads it: blanks are no secret.
    secrets = [part.strip() for part in secret.split(",") if part.strip()]
    if not secrets:
        raise click.UsageError("the secret is empty: pass the webhook secret `serve` uses (--secret or its file)")
    body = file.read()
    click.echo(signing.sign(body, secrets[0], timestamp if timestamp is not None else int(time.time())))


@cli.command(name="import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@DATA_DIR_OPTION
def import_(paths: tuple[Path, ...], as_json: bool, data_dir: Path | None) -> None:
    """Archive saved payloads: webhook envelopes or GET-conversation JSON, files or folders.

    Folders are searched for *.json files recursively, skipping the data dir itself (so
    `callvault import .` beside ./callvault-data reads only your exports).

    Runs the same code as the webhook (without the signature check: these are your files).
    Importing the same file twice leaves one call: the second time it is counted as unchanged.
    """
    from services.cli.importer import import_paths

    settings = settings_for(data_dir)
    show = not as_json and (sys.stderr.isatty() or bool(os.environ.get("CI")))
    summary = import_paths(settings, list(paths), progress=show)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        summary.print()
    if summary.failed:
        sys.exit(1)


def _register_search_commands() -> None:
    from services.cli.search_commands import calls, show

    cli.add_command(calls)
    cli.add_command(show)


_register_search_commands()


def _register_analytics_commands() -> None:
    from services.cli.analytics_commands import ANALYTICS_COMMANDS

    for command in ANALYTICS_COMMANDS:
        cli.add_command(command)


_register_analytics_commands()


def _register_memory_commands() -> None:
    from services.cli.memory_commands import MEMORY_COMMANDS

    for command in MEMORY_COMMANDS:
        cli.add_command(command)


_register_memory_commands()


def _register_verify_command() -> None:
    from services.cli.verify_command import verify

    cli.add_command(verify)


_register_verify_command()


def _register_sync_command() -> None:
    from services.cli.sync_command import sync

    cli.add_command(sync)


_register_sync_command()


def _register_keys_command() -> None:
    from services.cli.keys_command import keys

    cli.add_command(keys)


_register_keys_command()


def _register_privacy_commands() -> None:
    from services.cli.privacy_commands import PRIVACY_COMMANDS

    for command in PRIVACY_COMMANDS:
        cli.add_command(command)


_register_privacy_commands()

"""``callvault keys create|list|revoke``: API keys with roles, kept as hashes in DATA_DIR/api-keys.json.

``callvault serve`` reads that file whenever it changes, so keys work (and stop working) at once.
On AWS, put the printed ``role:sha256:<hex>`` entry into CALLVAULT_API_KEYS or its SSM parameter.
"""

from datetime import UTC, datetime
from pathlib import Path

import click
import orjson

from services.cli.options import DATA_DIR_OPTION, archive_settings
from services.core.config import Settings
from services.web.auth import ROLES, parse_role
from services.web.keystore import KeyFile


def _when(seconds: int | None) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC") if seconds else "-"


@click.group()
def keys() -> None:
    """API keys with roles: read (metadata, transcripts), listen (also audio), admin (everything).

    \b
    The key is printed once, by `create`; only its SHA-256 is kept.
    The key `serve` generated (DATA_DIR/api-key) and CALLVAULT_API_KEYS entries without a role are admin.
    """


def _key_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """A name `keys list` can print on one line: no control characters (a newline, a terminal escape)."""
    name = value.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise click.BadParameter("give 1-100 printable characters, e.g. 'qa team' (no newlines or escapes)")
    return name


@keys.command()
@DATA_DIR_OPTION
@click.option("--name", required=True, callback=_key_name, help="Who or what the key is for, e.g. 'qa team'.")
@click.option("--role", type=click.Choice(ROLES), default="read", show_default=True, help="What the key may do.")
def create(data_dir: Path | None, name: str, role: str) -> None:
    """Create a key and print it (once)."""
    aws = "; for a key on AWS, run it with CALLVAULT_BACKEND=aws and the stack's settings (docs/console.md)"
    settings = archive_settings(data_dir, hint=aws)
    key, record = KeyFile.in_data_dir(settings.data_dir).create(name, parse_role(role))
    _audit(settings, "key_create", {"key_id": record.id, "role": record.role})
    click.echo(key)
    click.echo(
        f"Created {record.id} ({record.role}) for {record.name!r}. The key above is not shown again.\n"
        f"For CALLVAULT_API_KEYS or its SSM parameter on AWS: {record.config_entry()}",
        err=True,
    )


@keys.command(name="list")
@DATA_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def list_(data_dir: Path | None, as_json: bool) -> None:
    """List the managed keys: id, name, role, created, revoked (never the key)."""
    for record in KeyFile.in_data_dir(archive_settings(data_dir).data_dir).all_keys():
        if as_json:
            shown = {k: getattr(record, k) for k in ("id", "name", "role", "created_at", "revoked_at")}
            click.echo(orjson.dumps(shown).decode())
        else:
            state = f"revoked {_when(record.revoked_at)}" if record.revoked_at else "active"
            click.echo(f"{record.id}  {record.role:<6}  {_when(record.created_at)}  {state:<28}  {record.name}")


@keys.command()
@DATA_DIR_OPTION
@click.argument("key_id")
def revoke(data_dir: Path | None, key_id: str) -> None:
    """Revoke a key by its id (from `callvault keys list`); effective at once, also for its sessions."""
    settings = archive_settings(data_dir)
    key_file = KeyFile.in_data_dir(settings.data_dir)
    earlier = next((k for k in key_file.all_keys() if k.id == key_id and not k.active), None)
    if earlier is not None:  # nothing changes: no second "key_revoke" in the audit trail
        click.echo(f"{earlier.id} ({earlier.name}) was revoked already, {_when(earlier.revoked_at)}", err=True)
        return
    try:
        record = key_file.revoke(key_id)
    except KeyError:
        raise click.ClickException(f"no key with id {key_id}: `callvault keys list` shows the ids") from None
    _audit(settings, "key_revoke", {"key_id": record.id, "role": record.role})
    click.echo(f"Revoked {record.id} ({record.name})", err=True)


def _audit(settings: Settings, action: str, detail: dict[str, str]) -> None:
    """Key changes go into the audit trail (#13, docs/privacy.md): the key's id and role, never the key."""
    from services.cli.privacy_commands import cli_actor
    from services.privacy.wiring import build_auditor

    auditor = build_auditor(settings)
    if auditor is not None:
        auditor.record(action, cli_actor(), detail=detail)

"""The ``callvault`` command: run the local archive, sign test payloads, import saved calls."""

import os
import sys
import time
from pathlib import Path
from typing import BinaryIO

import click

from services.core.config import Settings

DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the local archive lives [env CALLVAULT_DATA_DIR; default ./callvault-data].",
)


def _settings(data_dir: Path | None) -> Settings:
    settings = Settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="callvault")
def cli() -> None:
    """CallVault: the archive for AI voice-agent calls.

    \b
    Start here:
      callvault serve                 run the local archive on http://127.0.0.1:8080
      callvault sign call.json        print a signature header to curl a saved webhook at it
      callvault import exports/       archive saved webhooks or conversation JSON files
    """


@cli.command()
@DATA_DIR_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to bind.")
def serve(data_dir: Path | None, host: str, port: int) -> None:
    """Run the local archive: webhook receiver and API in one process.

    Stores calls under DATA_DIR/archive (same keys as the S3 bucket) and indexes them in
    DATA_DIR/index.sqlite3. On first run it generates the webhook secret and keeps it in DATA_DIR.
    """
    import uvicorn

    from services.core.wiring import local_webhook_secret
    from services.local.app import create_local_app

    settings = _settings(data_dir)
    secrets = settings.webhook_secrets()
    if not secrets:
        secret, created = local_webhook_secret(settings.data_dir)
        secrets = [secret]
        where = settings.data_dir / "webhook-secret"
        if created:
            click.echo(f"Generated a webhook secret (kept in {where}):\n\n    {secret}\n", err=True)
            click.echo("Paste it into ElevenLabs as the webhook's HMAC secret.", err=True)
        else:
            click.echo(f"Webhook secret: kept in {where}", err=True)
    app = create_local_app(settings, secrets)
    click.echo(f"CallVault listening on http://{host}:{port}  (data in {settings.data_dir})", err=True)
    # access_log off: URLs can carry phone numbers; the app logs its own masked lines.
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")


@cli.command()
@click.argument("file", type=click.File("rb"))
@click.option("--secret", envvar="CALLVAULT_WEBHOOK_SECRET", default=None, help="Webhook secret to sign with.")
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
    from services.core.wiring import WEBHOOK_SECRET_FILE

    if secret is None:
        path = _settings(data_dir).data_dir / WEBHOOK_SECRET_FILE
        if not path.exists():
            raise click.UsageError(
                f"no secret: pass --secret, set CALLVAULT_WEBHOOK_SECRET, or run `callvault serve` once "
                f"so it creates {path}"
            )
        secret = path.read_text(encoding="utf-8").strip()
    first_secret = secret.split(",")[0].strip()
    body = file.read()
    click.echo(signing.sign(body, first_secret, timestamp if timestamp is not None else int(time.time())))


@cli.command(name="import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@DATA_DIR_OPTION
def import_(paths: tuple[Path, ...], data_dir: Path | None) -> None:
    """Archive saved payloads: webhook envelopes or GET-conversation JSON, files or folders.

    Runs the same code as the webhook (without the signature check: these are your files).
    Importing the same file twice leaves one call.
    """
    from services.cli.importer import import_paths

    settings = _settings(data_dir)
    summary = import_paths(settings, list(paths), progress=sys.stderr.isatty() or bool(os.environ.get("CI")))
    summary.print()
    if summary.failed:
        sys.exit(1)

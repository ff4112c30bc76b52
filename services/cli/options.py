"""What every `callvault` command shares: the data-dir option and the settings it yields.

A module of its own so command modules need not import the command group they join.
"""

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from services.core.config import Settings


class DataDirPath(click.Path):
    """A folder path that may not be blank: ``--data-dir "$DIR"`` with ``DIR`` unset would make it the
    current folder, which `serve` fills with data files and makes owner-only, every file under it too."""

    def convert(
        self, value: "str | os.PathLike[str]", param: click.Parameter | None, ctx: click.Context | None
    ) -> "str | bytes | os.PathLike[str]":
        if isinstance(value, str) and not value.strip():
            self.fail("is empty (an unset shell variable?): give the folder `callvault serve` uses", param, ctx)
        return super().convert(value, param, ctx)


DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=DataDirPath(file_okay=False, path_type=Path),
    default=None,
    help="The archive's folder: give every command the one `callvault serve` uses "
    "[env CALLVAULT_DATA_DIR; default ./callvault-data].",
)


class InstantType(click.ParamType[int]):
    """A time as every command takes it (``services.web.params.parse_instant``, like ``GET /calls``):
    a date (2025-07-06), an ISO 8601 time (2025-07-06T11:40:15Z, +02:00) or unix seconds; no offset is UTC."""

    name = "TIME"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        from services.core.domain.errors import InvalidRequest
        from services.web.params import parse_instant

        try:
            return parse_instant(param.name if param is not None and param.name else "time", str(value))
        except InvalidRequest as exc:
            self.fail(exc.message, param, ctx)


INSTANT = InstantType()


class ConversationIdType(click.ParamType[str]):
    """A conversation id as ElevenLabs writes them (``services.core.domain.keys.check_conversation_id``)."""

    name = "ID"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from services.core.domain import keys
        from services.core.domain.errors import CallVaultError

        try:
            return keys.check_conversation_id(value)
        except CallVaultError:  # its message names the webhook's field (data.conversation_id), not the option
            self.fail(
                f"a conversation id is 1-128 letters, digits, '_' or '-' (e.g. conv_01jzfrjvcce0vsea1fcbpp9p04), "
                f"not {value!r}",
                param,
                ctx,
            )


CONVERSATION_ID = ConversationIdType()


def settings_for(data_dir: Path | None) -> Settings:
    """The environment's settings, with ``--data-dir`` (when given) taking precedence. A data dir that
    is a file is refused here, naming where it came from (click checks only the option's value)."""
    settings = Settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    if settings.backend == "local" and settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise click.ClickException(
            f"the data dir {settings.data_dir} (from {_source(data_dir)}) is a file, not a folder: "
            "point it at the folder `callvault serve` uses, or at a new one"
        )
    return settings


INDEX_FILE = "index.sqlite3"  # what `serve` and `import` create first in a data dir (core.wiring)


def archive_settings(data_dir: Path | None, hint: str = "") -> Settings:
    """Settings for a command that reads an existing local archive. When the data dir holds none, it
    stops with where it looked and how to point at the server's, and creates nothing there."""
    settings = settings_for(data_dir)
    if settings.backend == "local":
        require_archive(settings, data_dir, hint)
    return settings


def require_archive(settings: Settings, data_dir: Path | None, hint: str = "") -> None:
    if (settings.data_dir / INDEX_FILE).is_file() or (settings.data_dir / "analytics").is_dir():
        return
    raise click.ClickException(
        f"no archive in {settings.data_dir.absolute()} (from {_source(data_dir)}). Point at the data dir "
        "`callvault serve` uses (it prints 'data in DIR' when it starts): --data-dir DIR or CALLVAULT_DATA_DIR=DIR"
        + hint
    )


def _source(data_dir: Path | None) -> str:
    """Where the data dir came from, for an error that names it."""
    if data_dir is not None:
        return "--data-dir"
    if os.environ.get("CALLVAULT_DATA_DIR"):
        return "CALLVAULT_DATA_DIR"
    return "the default, ./callvault-data"


def confirm(question: str) -> None:
    """Ask, or stop: without a terminal to answer in (a script, a cron job), say how to go on."""
    if not sys.stdin.isatty():
        raise click.ClickException(f"{question} needs a yes: run it in a terminal, or pass --yes")
    click.confirm(question, abort=True)


@contextmanager
def progress_bars() -> Iterator[Callable[[str], Callable[[int, int], None]]]:
    """Progress bars on stderr (when it is a terminal, or in CI); yields ``bar(label) -> progress(done, total)``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    show = sys.stderr.isatty() or bool(os.environ.get("CI"))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not show, console=Console(stderr=True)) as bars:

        def bar(label: str) -> Callable[[int, int], None]:
            task = bars.add_task(label, total=None)

            def progress(done: int, total: int) -> None:
                bars.update(task, completed=done, total=total)

            return progress

        yield bar


def terminal_text(value: object) -> str:
    """What a caller, upstream or a model wrote, made safe to print at a terminal: control characters
    (escape sequences would drive the terminal: move the cursor, retitle the window, rewrite what an
    operator reads) become '?'. Rich tables escape their markup as well (``rich.markup.escape``)."""
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() else "?" for c in text)

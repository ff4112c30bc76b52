"""What every `callvault` command shares: the data-dir option and the settings it yields.

A module of its own so command modules need not import the command group they join.
"""

from pathlib import Path

import click

from services.core.config import Settings

DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the local archive lives [env CALLVAULT_DATA_DIR; default ./callvault-data].",
)


def settings_for(data_dir: Path | None) -> Settings:
    """The environment's settings, with ``--data-dir`` (when given) taking precedence."""
    settings = Settings()
    return settings.model_copy(update={"data_dir": data_dir}) if data_dir is not None else settings

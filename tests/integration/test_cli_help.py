"""Every command's --help (issue #14): it answers, and each option that reads a data dir says to use the
one `callvault serve` uses; the group's help says so once for all."""

import click
import pytest
from click.testing import CliRunner

from services.cli.main import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
    return found


COMMANDS = _commands(cli)


def test_the_group_help_names_the_data_dir_rule() -> None:
    result = CliRunner().invoke(cli, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "the same --data-dir DIR, or CALLVAULT_DATA_DIR=DIR" in result.output


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_help_answers_and_points_at_serves_data_dir(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    if "--data-dir" in result.output:
        assert "give every command the one `callvault serve` uses" in result.output


def test_serve_help_says_where_the_secrets_are() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"], terminal_width=200)
    assert "webhook-secret, api-key and agent-secret (`cat` prints them)" in result.output

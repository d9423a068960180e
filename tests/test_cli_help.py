"""Every command's --help, found by walking the click group itself (no hand-written list to forget)."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from dbdedup.cli.main import cli


def commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    """(name path, command) of every command and subcommand under ``group``, groups included."""
    found = []
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        found.append(((*path, name), command))
        if isinstance(command, click.Group):
            found.extend(commands(command, (*path, name)))
    return found


ALL = commands()


def test_the_walk_finds_every_command_group_and_subcommand():
    # the walk itself, against commands known to exist: a walk that found nothing would pass the rest
    names = {" ".join(path) for path, _ in ALL}
    assert {"load", "status", "errors", "match", "similar", "report", "pairs", "export", "apply", "undo",
            "calibrate", "migrate", "db", "db url", "db psql", "db stop", "embeddings",
            "embeddings refit"} <= names


def invokes(line: str, path: tuple[str, ...]) -> bool:
    """True when ``line`` runs ``dbdedup`` with ``path`` as its command (global options may come between)."""
    words = re.findall(r"[\w.:/@-]+", line)
    if "dbdedup" not in words:
        return False
    rest = iter(words[words.index("dbdedup") + 1:])
    return all(any(word == part for word in rest) for part in path)


@pytest.mark.parametrize("path,command", ALL, ids=[" ".join(path) for path, _ in ALL])
def test_every_command_has_help_and_every_leaf_an_example_of_itself(path, command):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert command.help and command.help.strip(), "no help text"
    assert f"Usage: cli {' '.join(path)}" in text or f"Usage: dbdedup {' '.join(path)}" in text
    for option in command.params:
        if isinstance(option, click.Option) and not option.hidden:
            assert option.help, f"{option.opts[0]} has no help"
    if isinstance(command, click.Group):
        for name in command.list_commands(click.Context(command)):
            assert name in text, f"subcommand {name} missing from the group's help"
        return
    assert "Example:" in text, "no Example: block"
    examples = text.split("Example:", 1)[1].splitlines()
    assert any(invokes(line, path) for line in examples), f"no example runs dbdedup {' '.join(path)}"


def test_the_top_level_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "Example:" in result.stdout
    for path, _ in ALL:
        if len(path) == 1:
            assert path[0] in result.stdout

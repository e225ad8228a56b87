from __future__ import annotations

import argparse

import pytest

from devprov.cli import main as cli_main


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(action.choices)


def test_command_table_matches_the_modules() -> None:
    for module in cli_main.COMMAND_MODULES:
        registered = _commands(cli_main.build_parser((module,)))
        assert registered == {c for c, m in cli_main.COMMANDS.items() if m == module}, module
    assert _commands(cli_main.build_parser()) == set(cli_main.COMMANDS)


def test_unknown_command_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main.main(["frobnicate"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit):
        cli_main.main(["--help"])
    out = capsys.readouterr().out
    assert all(command in out for command in cli_main.COMMANDS)

"""Files named on the command line: how options declare them, and the one check of them.

Every option that names a file a command reads takes one of the argparse types below, which do
nothing but mark it. ``check_input_files`` (called by ``cli.main`` before any command runs)
opens each such file once, so that a missing, unreadable or misnamed file is one line naming
the option and the path, with the exit code of its kind, before anything is asked of a server
or written to disk. ``read_input`` is how commands then read them. tests/cli/test_files.py
finds the marked options in the parser itself and runs every command with a missing path.

Kept free of the server's modules: ``devprov ca`` imports it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from devprov.service.pki.error import FileAccessError, PkiFileNotFoundError


def input_file(text: str) -> Path:
    """argparse type: a file the command reads (a certificate, key, password or CA file)."""
    return Path(text)


def input_file_or_stdin(text: str) -> str:
    """argparse type: a file the command reads, or ``-`` for its standard input (a secret that
    should not be written to a file first)."""
    return text


def input_prefix(text: str) -> str:
    """argparse type: a path prefix naming PREFIX.pem and PREFIX.key (``ca --issuer``)."""
    return text


def json_or_file(text: str) -> str:
    """argparse type: inline JSON, or ``@FILE`` naming a file that holds it."""
    return text


def read_input(path: Path, what: str) -> bytes:
    """The bytes of a file named on the command line; ``what`` names it in the error
    (``--cert``, ``the CA file``)."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise PkiFileNotFoundError(f"{what}: {path} does not exist{where}; check the path") from exc
    except IsADirectoryError as exc:
        raise FileAccessError(f"{what}: {path} is a directory; name the file itself") from exc
    except PermissionError as exc:
        raise FileAccessError(
            f"{what}: cannot read {path}: permission denied; check the file's permissions"
        ) from exc
    except OSError as exc:
        raise FileAccessError(f"{what}: cannot read {path}: {exc.strerror or exc}") from exc


def _chosen_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The (sub)parser that parsed ``args``: follow each level's subcommand."""
    while True:
        subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subcommands:
            return parser
        name = getattr(args, subcommands[0].dest, None)
        if name is None:
            return parser
        parser = subcommands[0].choices[name]


def check_input_files(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Open every file the parsed options name, in the order the options were declared."""
    for action in _chosen_parser(parser, args)._actions:
        value = getattr(args, action.dest, None)
        if value is None:
            continue
        option = "/".join(action.option_strings) or action.metavar or action.dest
        if action.type is input_file or (action.type is input_file_or_stdin and value != "-"):
            read_input(Path(value), str(option))
        elif action.type is json_or_file and str(value).startswith("@"):
            read_input(Path(str(value)[1:]), str(option))

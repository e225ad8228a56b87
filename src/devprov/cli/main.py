"""Entry point of the ``devprov`` command: builds the parser and maps errors to exit codes.

``main(argv)`` is callable in-process, so tests drive the CLI without a subprocess.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from devprov import __version__
from devprov.cli.files import check_input_files
from devprov.core.error import DevprovError, ErrorKind

# One table from error kind to exit code. 2 stays argparse's "usage error".
EXIT_CODES: dict[ErrorKind, int] = {
    ErrorKind.INTERNAL: 1,
    ErrorKind.INVALID_INPUT: 3,
    ErrorKind.AUTHENTICATION_FAILED: 4,
    ErrorKind.NOT_PERMITTED: 5,
    ErrorKind.NOT_FOUND: 6,
    ErrorKind.CONFLICT: 7,
    ErrorKind.PRECONDITION_FAILED: 8,
    ErrorKind.TOO_LARGE: 9,
    ErrorKind.UNAVAILABLE: 10,
}

# Each module exposes ``register(subparsers)``; its handlers take the parsed namespace and
# return an exit code.
COMMAND_MODULES = (
    "server",
    "database",
    "admin",
    "ca",
    "certificate",
    "hub",
    "user",
    "enrollment",
    "device",
    "policy",
    "credential_policy",
    "errors",
)

# Which module registers each command, so that a command imports only what it needs: the
# server's modules (SQLAlchemy, Alembic, Starlette) take about 0.3 s to import, which every
# `devprov ca` call would otherwise pay. tests/cli checks this table against the modules.
COMMANDS = {
    "serve": "server",
    "info": "server",
    "db": "database",
    "service": "admin",
    "audit": "admin",
    "ca": "ca",
    "certificate": "certificate",
    "hub": "hub",
    "user": "user",
    "enrollment-group": "enrollment",
    "enrollment": "enrollment",
    "registration": "enrollment",
    "device": "device",
    "policy": "policy",
    "credential-policy": "credential_policy",
    "issued": "credential_policy",
    "errors": "errors",
}


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devprov",
        description="A self-hosted device provisioning service, wire-compatible with Azure DPS.",
    )
    parser.add_argument("--version", action="version", version=f"devprov {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        module = importlib.import_module(f"devprov.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = arguments[0] if arguments else None
    module = COMMANDS.get(command) if command else None
    parser = build_parser((module,) if module in COMMAND_MODULES else COMMAND_MODULES)
    args = parser.parse_args(arguments)
    try:
        # ``serve --config FILE``: parse again with the file's values as defaults (cli.config).
        with_config = getattr(args, "with_config", None)
        if with_config is not None:
            args = with_config(parser, arguments, args)
        check_input_files(parser, args)
        code: int = args.func(args)
    except DevprovError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_CODES[exc.kind]
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``devprov ... | head``): say nothing more, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        # Looked up, not imported: a command that opened no database (``devprov ca``) never
        # loads the storage modules (see COMMANDS).
        common = sys.modules.get("devprov.cli.common")
        if common is not None:
            common.close_opened()
    return code


if __name__ == "__main__":
    sys.exit(main())

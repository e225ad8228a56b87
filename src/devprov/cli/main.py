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
COMMAND_MODULES = ("server", "admin", "ca", "certificate", "hub", "enrollment", "device", "policy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devprov",
        description="A self-hosted device provisioning service, wire-compatible with Azure DPS.",
    )
    parser.add_argument("--version", action="version", version=f"devprov {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"devprov.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
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
    return code


if __name__ == "__main__":
    sys.exit(main())

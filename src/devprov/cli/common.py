"""Options shared by commands: the data directory and the server a client command talks to."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from pathlib import Path

from devprov.bootstrap import (
    DATA_DIR_ENV,
    DATABASE_URL_ENV,
    DEFAULT_PORT,
    DEFAULT_SERVICE,
    Container,
    DataDir,
    DataDirMissingError,
    open_container,
    resolve_data_dir,
)
from devprov.cli.files import input_file


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """--data-dir, and --database for the commands that open the data directory's database."""
    parser.add_argument(
        "--data-dir",
        help=f"the data directory (default: ${DATA_DIR_ENV} or ./devprov-data)",
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        help=f"the database: postgresql://USER@HOST:PORT/NAME or sqlite:///PATH (default: "
        f"${DATABASE_URL_ENV}, else devprov.db in the data directory; docs/storage.md)",
    )


def data_dir(args: argparse.Namespace) -> DataDir:
    data = DataDir(resolve_data_dir(args.data_dir), getattr(args, "database", None))
    data.check()
    return data


def upgrade_command(args: argparse.Namespace) -> str:
    """The ``devprov db upgrade`` command for the database these options name, as given (the
    URL's password hidden: the command is printed)."""
    words = ["devprov", "db", "upgrade"]
    if getattr(args, "database", None):
        words += ["--database", DataDir(Path(), args.database).shown_database_url()]
    if args.data_dir:
        words += ["--data-dir", str(args.data_dir)]
    return shlex.join(words)


# Containers a command opened; main closes their database connections when the command ends, so
# that a command run in-process (tests, scripts) leaves no connection open behind it.
_OPENED: list[Container] = []


def container(args: argparse.Namespace) -> Container:
    data = data_dir(args)
    c = open_container(data.root, database=data.url, upgrade_command=upgrade_command(args))
    _OPENED.append(c)
    return c


def close_opened() -> None:
    """Close the database connections of every container ``container`` opened."""
    while _OPENED:
        _OPENED.pop().engine.dispose()


def add_server_options(parser: argparse.ArgumentParser) -> None:
    add_data_dir(parser)
    parser.add_argument(
        "--url", help="the server's URL (default: where the data directory's server listens)"
    )
    parser.add_argument("--token", help="the admin bearer token (default: the data directory's)")
    parser.add_argument(
        "--ca-file",
        type=input_file,
        help="the CA file to trust (default: the data directory's server CA)",
    )
    parser.add_argument(
        "--service", default=DEFAULT_SERVICE, help="provisioning service (default: default)"
    )


@dataclass(frozen=True)
class ServerTarget:
    url: str
    token: str
    ca_file: Path | None
    service: str


def server_target(args: argparse.Namespace) -> ServerTarget:
    data = data_dir(args)
    endpoint = data.endpoint() or {}
    url = args.url or str(endpoint.get("url") or f"https://localhost:{DEFAULT_PORT}")
    token = args.token or data.admin_token()
    if not token:
        raise DataDirMissingError(
            f"no admin token: pass --token or point --data-dir at the server's data directory "
            f"({data.root} has none)"
        )
    ca_file = args.ca_file or (data.ca_file if data.ca_file.exists() else None)
    return ServerTarget(url=url.rstrip("/"), token=token, ca_file=ca_file, service=args.service)

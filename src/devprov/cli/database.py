"""``devprov db upgrade``: bring a database's schema up to this devprov's (the migrations).

A server creates the schema of an empty database but refuses an older one: upgrading may take a
while on a large database, and an older devprov cannot run on the result, so it is a step an
operator takes on purpose, once per database
(docs/storage.md#migrations-and-upgrades).
"""

from __future__ import annotations

import argparse
from typing import Any

from devprov.bootstrap import upgrade_database
from devprov.cli.common import add_data_dir, data_dir
from devprov.cli.output import add_json_flag, emit


def register(subparsers: Any) -> None:
    db = subparsers.add_parser("db", help="the database: upgrade its schema")
    commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    upgrade = commands.add_parser(
        "upgrade", help="apply the migrations the database lacks, and say from which revision"
    )
    add_data_dir(upgrade)
    add_json_flag(upgrade)
    upgrade.set_defaults(func=_upgrade)


def _upgrade(args: argparse.Namespace) -> int:
    data = data_dir(args)
    before, after = upgrade_database(data)
    where = data.shown_database_url()
    if before == after:
        text = f"database {where}: already at revision {after}, the newest this devprov has"
    elif before is None:
        text = f"database {where}: created the schema at revision {after}"
    else:
        text = f"database {where}: upgraded from revision {before} to {after}"
    emit(args, {"database": where, "from": before, "to": after}, text)
    return 0

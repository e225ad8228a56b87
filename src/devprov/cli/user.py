"""``devprov user``: who may sign in to the web portal with a user name and password (local
state; docs/portal.md#users).

A password is asked for twice on a terminal (never echoed), or read from ``--password-file`` or
from standard input with ``--password-stdin`` (its first line), so that it never appears in a
command line, which other local users can read in the process list.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from devprov.cli.common import add_data_dir, container
from devprov.cli.files import input_file, read_input
from devprov.cli.output import add_json_flag, emit
from devprov.core.error import InvalidInputError
from devprov.service.model import PortalUser
from devprov.service.operator import USER_NAME_RULE, validate_password


class PasswordsDifferError(InvalidInputError):
    """The password typed the second time is not the one typed first."""

    code = "PasswordsDiffer"
    number = 400442


class PasswordNotGivenError(InvalidInputError):
    """No password: standard input is not a terminal, and neither --password-file nor
    --password-stdin was given (or the file or input is empty)."""

    code = "PasswordNotGiven"
    number = 400443


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("user", help="users who sign in to the web portal")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a portal user")
    add.add_argument("name", help=f"the user name: {USER_NAME_RULE}, compared ignoring case")
    add.set_defaults(func=_add)
    listing = actions.add_parser("list", help="list portal users")
    listing.set_defaults(func=_list)
    remove = actions.add_parser("remove", help="remove a portal user and end their sessions")
    remove.add_argument("name")
    remove.set_defaults(func=_remove)
    passwd = actions.add_parser("passwd", help="change a user's password and end their sessions")
    passwd.add_argument("name")
    passwd.set_defaults(func=_passwd)
    for sub in (add, passwd):
        source = sub.add_mutually_exclusive_group()
        source.add_argument(
            "--password-file",
            type=input_file,
            metavar="FILE",
            help="read the password from FILE (its first line)",
        )
        source.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from standard input (its first line)",
        )
    for sub in (add, listing, remove, passwd):
        add_data_dir(sub)
        add_json_flag(sub)


def _actor() -> str:
    """Who the audit log names: the command line, and the account that ran it."""
    try:
        return f"cli:{getpass.getuser()}"
    except OSError:  # no name for this uid (a container's arbitrary user)
        return "cli"


def _first_line(data: str) -> str:
    return data.splitlines()[0] if data else ""


def read_password(args: argparse.Namespace) -> str:
    """The new password, from the option given or the terminal; its length checked before it
    is asked for again."""
    if args.password_file is not None:
        raw = read_input(Path(args.password_file), "--password-file")
        password = _first_line(raw.decode("utf-8", errors="strict"))
    elif args.password_stdin:
        password = _first_line(sys.stdin.readline())
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        validate_password(password)
        if getpass.getpass("The same password again: ") != password:
            raise PasswordsDifferError("the two passwords differ; nothing was changed")
    else:
        raise PasswordNotGivenError(
            "no terminal to ask for the password on: pass --password-file FILE or --password-stdin"
        )
    if not password:
        raise PasswordNotGivenError("the password given is empty; nothing was changed")
    return validate_password(password)


def _json(user: PortalUser) -> dict[str, Any]:
    return {
        "name": user.name,
        "created": user.created_at.isoformat(),
        "passwordChanged": user.password_changed_at.isoformat(),
    }


def _add(args: argparse.Namespace) -> int:
    password = read_password(args)
    user = container(args).operators.add(args.name, password, actor=_actor())
    emit(args, _json(user), f"added portal user '{user.name}'")
    return 0


def _list(args: argparse.Namespace) -> int:
    users = container(args).operators.all()
    human = "\n".join(
        f"{u.name}\tadded {u.created_at:%Y-%m-%d}\tpassword set {u.password_changed_at:%Y-%m-%d}"
        for u in users
    )
    emit(args, [_json(u) for u in users], human or "no portal users")
    return 0


def _ended(count: int) -> str:
    return f"{count} portal session{'' if count == 1 else 's'} ended"


def _remove(args: argparse.Namespace) -> int:
    ended = container(args).operators.remove(args.name, actor=_actor())
    emit(
        args,
        {"removed": args.name, "sessionsEnded": ended},
        f"removed portal user '{args.name}'; {_ended(ended)}",
    )
    return 0


def _passwd(args: argparse.Namespace) -> int:
    password = read_password(args)
    ended = container(args).operators.change_password(args.name, password, actor=_actor())
    emit(
        args,
        {"changed": args.name, "sessionsEnded": ended},
        f"changed the password of '{args.name}'; {_ended(ended)}",
    )
    return 0

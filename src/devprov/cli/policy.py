"""``devprov policy``: the shared access policies of a provisioning service (local state).

A policy is a name, two keys and a set of rights (docs/dps-wire.md#service-sas-tokens); service API
clients sign their tokens with one of its keys. Changes take effect on the running server at its
next request: it reads the policies from the shared database for every token it checks.
"""

from __future__ import annotations

import argparse
from typing import Any

from devprov.bootstrap import DEFAULT_SERVICE
from devprov.cli.common import add_data_dir, container
from devprov.cli.output import add_json_flag, emit
from devprov.cli.service_client import local_url
from devprov.core.error import NotPermittedError
from devprov.core.sas import build_connection_string
from devprov.service.model import ALL_RIGHTS, OWNER_POLICY, AccessPolicy

KEYS = ("primary", "secondary", "both")


class OwnerPolicyRemovalError(NotPermittedError):
    """The CLI keeps the provisioningserviceowner policy."""

    code = "OwnerPolicyRemovalRefused"
    number = 403150


def register(subparsers: Any) -> None:
    text = "shared access policies: keys and rights for the service API"
    parser = subparsers.add_parser("policy", help=text, description=text)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the policies, with keys and connection strings")
    listing.set_defaults(func=_list)
    add = actions.add_parser("add", help="a new policy with fresh keys")
    add.add_argument("name", metavar="NAME")
    add.add_argument(
        "--rights",
        required=True,
        metavar="RIGHT,...",
        help=f"comma-separated, of: {', '.join(sorted(ALL_RIGHTS))}",
    )
    add.set_defaults(func=_add)
    rotate = actions.add_parser(
        "rotate", help="replace a policy's key(s); the old key stops working"
    )
    rotate.add_argument("name", metavar="NAME")
    rotate.add_argument(
        "--key", choices=KEYS, default="primary", help="which key (default primary)"
    )
    rotate.set_defaults(func=_rotate)
    remove = actions.add_parser("remove", help="delete a policy; its keys stop working")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(func=_remove)
    for sub in (listing, add, rotate, remove):
        add_data_dir(sub)
        sub.add_argument(
            "--service", default=DEFAULT_SERVICE, help="provisioning service (default: default)"
        )
        sub.add_argument(
            "--url", help="the server URL connection strings name (default: the data directory's)"
        )
        add_json_flag(sub)


def parse_rights(text: str) -> frozenset[str]:
    """Comma-separated right names, spelled as DPS spells them whatever the case given; unknown
    names are kept, for the use case to refuse with the list of known ones."""
    canonical = {right.lower(): right for right in ALL_RIGHTS}
    names = [name.strip() for name in text.split(",") if name.strip()]
    return frozenset(canonical.get(name.lower(), name) for name in names)


def _json(policy: AccessPolicy, url: str) -> dict[str, Any]:
    return {
        "name": policy.name,
        "rights": sorted(policy.rights),
        "primaryKey": policy.primary_key,
        "secondaryKey": policy.secondary_key,
        "connectionString": build_connection_string(url, policy.name, policy.primary_key),
        "secondaryConnectionString": build_connection_string(
            url, policy.name, policy.secondary_key
        ),
    }


def _human(data: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"{data['name']}: {', '.join(data['rights'])}",
            f"  primary key:       {data['primaryKey']}",
            f"  secondary key:     {data['secondaryKey']}",
            f"  connection string: {data['connectionString']}",
        ]
    )


def _list(args: argparse.Namespace) -> int:
    policies = container(args).directory.policies(args.service)
    data = [_json(p, local_url(args)) for p in policies]
    emit(args, data, "\n".join(_human(d) for d in data) or f"'{args.service}' has no policies")
    return 0


def _add(args: argparse.Namespace) -> int:
    policy = container(args).directory.add_policy(
        args.service, args.name, parse_rights(args.rights)
    )
    data = _json(policy, local_url(args))
    emit(args, data, f"added policy to '{args.service}'\n{_human(data)}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    policy = container(args).directory.rotate_key(args.service, args.name, args.key)
    data = _json(policy, local_url(args))
    which = "both keys" if args.key == "both" else f"the {args.key} key"
    emit(args, data, f"replaced {which} of '{args.name}'\n{_human(data)}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    if args.name == OWNER_POLICY:
        raise OwnerPolicyRemovalError(
            f"'{OWNER_POLICY}' is the policy devprov's own commands sign with; rotate its keys "
            "instead (devprov policy rotate)"
        )
    container(args).directory.remove_policy(args.service, args.name)
    emit(args, {"removed": args.name}, f"removed policy '{args.name}' from '{args.service}'")
    return 0

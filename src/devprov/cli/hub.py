"""``devprov hub``: the IoT hubs a provisioning service allocates devices to (local state)."""

from __future__ import annotations

import argparse
from typing import Any

from devprov.bootstrap import DEFAULT_SERVICE
from devprov.cli.common import add_data_dir, container
from devprov.cli.output import add_json_flag, emit
from devprov.service.model import HubRecord

# Who the audit log names for a hub linked or unlinked from this command line: it opens the data
# directory itself, with no token of the management API.
CLI_ACTOR = "cli"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("hub", help="IoT hubs linked to a provisioning service")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="link a hub (or change its weight)")
    add.add_argument("name", help="the hub's host name, e.g. myhub.azure-devices.net")
    add.add_argument(
        "--weight", type=int, default=1, help="allocation weight for hashed allocation (default 1)"
    )
    add.add_argument(
        "--no-allocation",
        action="store_true",
        help="never pick this hub unless an enrollment names it",
    )
    add.set_defaults(func=_add)
    listing = actions.add_parser("list", help="list linked hubs")
    listing.set_defaults(func=_list)
    remove = actions.add_parser("remove", help="unlink a hub")
    remove.add_argument("name")
    remove.set_defaults(func=_remove)
    for sub in (add, listing, remove):
        add_data_dir(sub)
        add_json_flag(sub)
        sub.add_argument(
            "--service", default=DEFAULT_SERVICE, help="provisioning service (default: default)"
        )


def _json(hub: HubRecord) -> dict[str, Any]:
    return {
        "name": hub.host_name,
        "weight": hub.weight,
        "applyAllocationPolicy": hub.apply_allocation_policy,
        "created": hub.created_at.isoformat(),
    }


def _add(args: argparse.Namespace) -> int:
    hub = container(args).hubs.add(
        args.service,
        args.name,
        weight=args.weight,
        apply_allocation_policy=not args.no_allocation,
        actor=CLI_ACTOR,
    )
    emit(args, _json(hub), f"linked {hub.host_name} (weight {hub.weight}) to '{args.service}'")
    return 0


def _list(args: argparse.Namespace) -> int:
    hubs = container(args).hubs.all(args.service)
    human = "\n".join(
        f"{h.host_name}\tweight {h.weight}"
        + ("" if h.apply_allocation_policy else "\t(no allocation)")
        for h in hubs
    )
    emit(args, [_json(h) for h in hubs], human or f"no hubs linked to '{args.service}'")
    return 0


def _remove(args: argparse.Namespace) -> int:
    container(args).hubs.remove(args.service, args.name, actor=CLI_ACTOR)
    emit(args, {"removed": args.name}, f"unlinked {args.name} from '{args.service}'")
    return 0

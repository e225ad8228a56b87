"""``devprov hub``: the IoT hubs a provisioning service allocates devices to (local state), and
what an assignment creates in each (its kind, docs/hubs.md#hub-kinds).

Secrets are read from files (or stdin with ``-``), never from the command line, where other
users and the shell's history would see them; no command prints them again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from devprov.bootstrap import DEFAULT_SERVICE
from devprov.cli.common import add_data_dir, container
from devprov.cli.files import input_file, input_file_or_stdin, read_input
from devprov.cli.output import add_json_flag, emit
from devprov.service.hub_identity import HubKind
from devprov.service.hub_settings import parse_kind, shown_settings
from devprov.service.model import HubRecord

# Who the audit log names for a hub linked or unlinked from this command line: it opens the data
# directory itself, with no token of the management API.
CLI_ACTOR = "cli"

# Options of `hub add` and the settings key each writes (service.hub_settings names the keys).
_PLAIN_SETTINGS = {
    "api_version": "api_version",
    "endpoint": "endpoint",
    "broker": "broker",
    "username": "username",
    "topic_pattern": "topic_pattern",
    "device_listener": "device_listener",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("hub", help="IoT hubs linked to a provisioning service")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="link a hub (or change it)")
    add.add_argument("name", help="the hub's host name, e.g. myhub.azure-devices.net")
    add.add_argument(
        "--weight", type=int, default=1, help="allocation weight for hashed allocation (default 1)"
    )
    add.add_argument(
        "--no-allocation",
        action="store_true",
        help="never pick this hub unless an enrollment names it",
    )
    _add_kind_options(add)
    add.set_defaults(func=_add)
    listing = actions.add_parser("list", help="list linked hubs")
    listing.set_defaults(func=_list)
    show = actions.add_parser("show", help="one hub: its kind and settings (never a secret)")
    show.add_argument("name")
    show.set_defaults(func=_show)
    remove = actions.add_parser("remove", help="unlink a hub")
    remove.add_argument("name")
    remove.set_defaults(func=_remove)
    for sub in (add, listing, show, remove):
        add_data_dir(sub)
        add_json_flag(sub)
        sub.add_argument(
            "--service", default=DEFAULT_SERVICE, help="provisioning service (default: default)"
        )


def _add_kind_options(add: argparse.ArgumentParser) -> None:
    kinds = add.add_argument_group("what an assignment creates in the hub (docs/hubs.md)")
    kinds.add_argument(
        "--kind",
        choices=[k.value for k in HubKind],
        help="none (names the hub only), azure-iothub or mosquitto; "
        "default: a new hub none, a linked hub keeps its kind and settings",
    )
    kinds.add_argument(
        "--connection-string-file",
        type=input_file_or_stdin,
        metavar="FILE",
        help="azure-iothub: a file holding the connection string of a policy with registry "
        "write rights ('-': read it from stdin)",
    )
    kinds.add_argument("--api-version", help="azure-iothub: registry api-version")
    kinds.add_argument(
        "--ca-file", type=input_file, help="a PEM file to trust instead of the system's CAs"
    )
    kinds.add_argument(
        "--endpoint", help="azure-iothub: https://host:port to send requests to instead"
    )
    kinds.add_argument("--broker", metavar="HOST:PORT", help="mosquitto: the admin listener")
    kinds.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mosquitto: TLS to the broker (default: --tls)",
    )
    kinds.add_argument("--username", help="mosquitto: the dynamic-security admin")
    kinds.add_argument(
        "--password-file",
        type=input_file,
        help="mosquitto: a file holding the admin's password",
    )
    kinds.add_argument(
        "--topic-pattern", help="mosquitto: a device's topics (default devices/{device_id}/#)"
    )
    kinds.add_argument(
        "--device-listener", help="mosquitto: where devices connect, for the documentation"
    )


def _secret(path: str, what: str) -> str:
    raw = sys.stdin.buffer.read() if path == "-" else read_input(Path(path), what)
    return raw.decode("utf-8").strip()


def _settings(args: argparse.Namespace) -> dict[str, str]:
    """The settings the options give; the use case refuses those the kind does not take."""
    settings = {
        key: str(getattr(args, option))
        for option, key in _PLAIN_SETTINGS.items()
        if getattr(args, option) is not None
    }
    if args.connection_string_file is not None:
        settings["connection_string"] = _secret(
            args.connection_string_file, "--connection-string-file"
        )
    if args.password_file is not None:
        settings["password"] = _secret(str(args.password_file), "--password-file")
    if args.ca_file is not None:
        settings["ca_file"] = str(Path(args.ca_file).resolve())
    if args.tls is not None or args.kind == HubKind.MOSQUITTO.value:
        settings["tls"] = "false" if args.tls is False else "true"
    return settings


def _json(hub: HubRecord) -> dict[str, Any]:
    return {
        "name": hub.host_name,
        "weight": hub.weight,
        "applyAllocationPolicy": hub.apply_allocation_policy,
        "created": hub.created_at.isoformat(),
        "kind": hub.kind.value,
        "settings": dict(shown_settings(hub.kind, hub.settings)),
    }


def _add(args: argparse.Namespace) -> int:
    kind = None if args.kind is None else parse_kind(args.kind)
    settings = _settings(args)
    hub = container(args).hubs.add(
        args.service,
        args.name,
        weight=args.weight,
        apply_allocation_policy=not args.no_allocation,
        kind=kind if kind is not None or not settings else HubKind.NONE,
        settings=settings,
        actor=CLI_ACTOR,
    )
    emit(
        args,
        _json(hub),
        f"linked {hub.host_name} (weight {hub.weight}, kind {hub.kind.value}) to '{args.service}'",
    )
    return 0


def _summary(hub: HubRecord) -> str:
    lines = [
        f"hub: {hub.host_name}",
        f"  kind:        {hub.kind.value}",
        f"  weight:      {hub.weight}"
        + ("" if hub.apply_allocation_policy else " (no allocation)"),
    ]
    lines += [
        f"  {label + ':':<12} {value}" for label, value in shown_settings(hub.kind, hub.settings)
    ]
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    hubs = container(args).hubs.all(args.service)
    human = "\n".join(
        f"{h.host_name}\tweight {h.weight}\t{h.kind.value}"
        + ("" if h.apply_allocation_policy else "\t(no allocation)")
        + ("\tsettings stored" if h.settings else "")
        for h in hubs
    )
    emit(args, [_json(h) for h in hubs], human or f"no hubs linked to '{args.service}'")
    return 0


def _show(args: argparse.Namespace) -> int:
    hub = container(args).hubs.get(args.service, args.name)
    emit(args, _json(hub), _summary(hub))
    return 0


def _remove(args: argparse.Namespace) -> int:
    container(args).hubs.remove(args.service, args.name, actor=CLI_ACTOR)
    emit(args, {"removed": args.name}, f"unlinked {args.name} from '{args.service}'")
    return 0

"""``devprov enrollment-group``, ``devprov enrollment`` and ``devprov registration``: DPS's service
API (docs/dps-wire.md#service-paths) from the command line.

Etags are handled here, as ``devprov certificate`` handles them: ``update`` and ``delete`` read the
record first and send its etag in If-Match, so a concurrent change is refused (412, exit 8)
instead of overwritten, and nobody copies an etag by hand.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from devprov.cli.client import ManagementClient
from devprov.cli.enrollment_body import (
    GROUP,
    INDIVIDUAL,
    SYMMETRIC_KEY,
    Kind,
    add_attestation_options,
    add_common_options,
    ca_references,
    new_document,
    updated_document,
)
from devprov.cli.output import add_json_flag, emit
from devprov.cli.service_client import (
    ServiceClient,
    add_service_options,
    registry_target,
    service_target,
)
from devprov.core.error import DevprovError, InvalidInputError


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


class NoSymmetricKeyError(InvalidInputError):
    """`keys --primary|--secondary`: the enrollment has no symmetric key to print."""

    code = "NoSymmetricKey"
    number = 400191


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def register(subparsers: Any) -> None:
    _register_enrollments(subparsers, GROUP, "enrollment-group", "GROUP_ID")
    _register_enrollments(subparsers, INDIVIDUAL, "enrollment", "REGISTRATION_ID")
    _register_registrations(subparsers)


def _register_enrollments(subparsers: Any, kind: Kind, command: str, metavar: str) -> None:
    help_text = (
        "enrollment groups: devices whose certificates chain to a CA, or share a group key"
        if kind is GROUP
        else "individual enrollments: one device, by its own certificate or key"
    )
    parser = subparsers.add_parser(command, help=help_text, description=help_text)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, text: str, func: Any, *, named: bool = True) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=text, description=text)
        if named:
            sub.add_argument("id", metavar=metavar)
        add_service_options(sub)
        add_json_flag(sub)
        sub.set_defaults(func=func, kind=kind, parser=sub)
        return sub

    create = action("create", f"create an {kind.label}", _create)
    update = action("update", f"change the given fields of an {kind.label}", _update)
    for sub in (create, update):
        add_attestation_options(sub, kind)
        add_common_options(sub, kind)
    action("show", f"show an {kind.label}", _show)
    listing = action("list", f"list every {kind.label}, page by page", _list, named=False)
    listing.add_argument(
        "--top",
        type=_positive_int,
        metavar="N",
        help="page size (x-ms-max-item-count, as the SDKs' top); every page is fetched",
    )
    action("delete", f"delete an {kind.label} (checked against its current etag)", _delete)
    keys = action("keys", "show the attestation mechanism, with symmetric keys", _keys)
    only = keys.add_mutually_exclusive_group()
    for slot in ("primary", "secondary"):
        only.add_argument(
            f"--{slot}",
            dest="only",
            action="store_const",
            const=f"{slot}Key",
            help=f"print the {slot} key alone (for KEY=$(...) in scripts)",
        )


def _register_registrations(subparsers: Any) -> None:
    text = "registration states: what each device was assigned"
    parser = subparsers.add_parser("registration", help=text, description=text)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the devices registered through an enrollment group")
    listing.add_argument("group", metavar="GROUP_ID")
    listing.add_argument("--top", type=_positive_int, metavar="N", help="page size")
    listing.set_defaults(func=_registration_list)
    show = actions.add_parser("show", help="one device's registration state")
    show.set_defaults(func=_registration_show)
    delete = actions.add_parser(
        "delete", help="forget a registration state (the device registers afresh next time)"
    )
    delete.add_argument(
        "--delete-identity",
        action="store_true",
        help="also delete the device from its Azure IoT hub (a Mosquitto client is removed "
        "either way; docs/hubs.md#disabling-and-deleting)",
    )
    delete.set_defaults(func=_registration_delete)
    for sub in (show, delete):
        sub.add_argument("id", metavar="REGISTRATION_ID")
    for sub in (listing, show, delete):
        add_service_options(sub)
        add_json_flag(sub)
        sub.set_defaults(parser=sub)


# --- rendering -------------------------------------------------------------------------------


def describe_attestation(attestation: dict[str, Any]) -> str:
    if attestation.get("type") == SYMMETRIC_KEY:
        return "symmetric key"
    x509 = attestation.get("x509") or {}
    for field, label in (
        ("caReferences", "CA reference"),
        ("signingCertificates", "signing certificate"),
        ("clientCertificates", "client certificate"),
    ):
        pair = x509.get(field)
        if pair:
            names = [
                value
                if isinstance(value, str)
                else (value or {}).get("info", {}).get("subjectName")
                for value in (pair.get("primary"), pair.get("secondary"))
                if value
            ]
            return f"X.509 {label}: {', '.join(str(n) for n in names)}"
    return str(attestation.get("type"))


def _reprovision(policy: dict[str, Any]) -> str:
    if not policy.get("updateHubAssignment", True):
        return "keep the assigned hub"
    if policy.get("migrateDeviceData", True):
        return "re-assign and migrate data"
    return "re-assign with the initial twin"


def _summary(kind: Kind, doc: dict[str, Any]) -> str:
    hubs = doc.get("iotHubs") or []
    lines = [
        f"{kind.label}: {doc.get(kind.id_field)}",
        f"  attestation:  {describe_attestation(doc.get('attestation') or {})}",
        f"  status:       {doc.get('provisioningStatus')}",
        f"  allocation:   {doc.get('allocationPolicy') or 'hashed'}, "
        + (f"hubs {', '.join(hubs)}" if hubs else "any linked hub"),
        f"  reprovision:  {_reprovision(doc.get('reprovisionPolicy') or {})}",
        f"  iot edge:     {'yes' if (doc.get('capabilities') or {}).get('iotEdge') else 'no'}",
    ]
    if kind is INDIVIDUAL:
        lines.insert(1, f"  device id:    {doc.get('deviceId') or doc.get('registrationId')}")
    custom = doc.get("customAllocationDefinition")
    if custom:
        lines.append(f"  webhook:      {custom.get('webhookUrl')} ({custom.get('apiVersion')})")
    if doc.get("initialTwin"):
        lines.append("  initial twin: set")
    policy = doc.get("credentialPolicyName") or doc.get("certificatePolicyName")
    if policy:
        lines.append(f"  credential policy: {policy}")
    state = doc.get("registrationState")
    if state:
        lines.append(f"  registered:   {_state_line(state)}")
    lines.append(f"  etag:         {doc.get('etag')}")
    return "\n".join(lines)


def _state_line(state: dict[str, Any]) -> str:
    text = f"{state.get('status')}"
    if state.get("assignedHub"):
        text += f" to {state.get('assignedHub')} as '{state.get('deviceId')}'"
    if state.get("errorCode"):
        text += f" ({state.get('errorCode')}: {state.get('errorMessage')})"
    return text


# --- enrollments and groups ------------------------------------------------------------------


def warn_about_ca_references(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    """A warning on stderr for each CA the group names that cannot admit its devices: one not
    verified, or one deleted from the registry since. Checked through the management API when
    the local data directory holds the server's admin token; skipped otherwise."""
    names = ca_references(doc)
    target = registry_target(args) if names else None
    if target is None:
        return
    with ManagementClient(target) as registry:
        for name in names:
            try:
                found = registry.get(name)
            except DevprovError as exc:
                _warn(f"could not check CA '{name}': {exc.code}: {exc.message}")
                continue
            if found is None:
                _warn(
                    f"CA '{name}' is not in the certificate registry of service "
                    f"'{args.service}' (deleted?): devices of this group will be refused until a "
                    f"certificate of that name is uploaded and verified (devprov certificate "
                    f"prove {name} --cert CA.pem --key CA.key)"
                )
            elif not found.get("properties", {}).get("isVerified"):
                # A group's CA may also roll up to a verified certificate above it, when its
                # devices send it in their chain
                # (docs/attestation.md#how-devprov-applies-these-rules).
                _warn(
                    f"CA '{name}' is not verified: devices of this group are refused unless "
                    "their chain reaches a verified certificate above it; verify it to admit "
                    f"them by it alone (devprov certificate prove {name} --cert CA.pem "
                    "--key CA.key)"
                )


def _create(args: argparse.Namespace) -> int:
    kind: Kind = args.kind
    body = new_document(args, kind, args.id)
    with ServiceClient(service_target(args)) as client:
        created = client.put(kind.collection, args.id, body, etag=None)
    emit(args, created, f"created {_summary(kind, created)}")
    warn_about_ca_references(args, created)
    return 0


def _update(args: argparse.Namespace) -> int:
    kind: Kind = args.kind
    with ServiceClient(service_target(args)) as client:
        fetched = client.get(kind.collection, args.id)
        keys = None
        if (fetched.get("attestation") or {}).get("type") == SYMMETRIC_KEY:
            keys = client.attestation_mechanism(kind.collection, args.id)
        body = updated_document(args, kind, fetched, keys)
        updated = client.put(kind.collection, args.id, body, etag=str(fetched.get("etag")))
    emit(args, updated, f"updated {_summary(kind, updated)}")
    warn_about_ca_references(args, updated)
    return 0


def _show(args: argparse.Namespace) -> int:
    kind: Kind = args.kind
    with ServiceClient(service_target(args)) as client:
        doc = client.get(kind.collection, args.id)
    emit(args, doc, _summary(kind, doc))
    warn_about_ca_references(args, doc)
    return 0


def _list(args: argparse.Namespace) -> int:
    kind: Kind = args.kind
    with ServiceClient(service_target(args)) as client:
        items = client.query(kind.collection, page_size=args.top)
    human = "\n".join(
        f"{item.get(kind.id_field)}\t{item.get('provisioningStatus')}\t"
        f"{describe_attestation(item.get('attestation') or {})}"
        for item in items
    )
    emit(args, items, human or f"no {kind.label}s")
    return 0


def _delete(args: argparse.Namespace) -> int:
    kind: Kind = args.kind
    with ServiceClient(service_target(args)) as client:
        fetched = client.get(kind.collection, args.id)
        client.delete(kind.collection, args.id, etag=str(fetched.get("etag")))
    emit(args, {"deleted": args.id}, f"deleted {kind.label} '{args.id}'")
    return 0


def _keys(args: argparse.Namespace) -> int:
    kind: Kind = args.kind
    with ServiceClient(service_target(args)) as client:
        attestation = client.attestation_mechanism(kind.collection, args.id)
    keys = attestation.get(SYMMETRIC_KEY) or {}
    if args.only and not args.json:
        key = keys.get(args.only)
        if not isinstance(key, str):
            raise NoSymmetricKeyError(
                f"{kind.label} '{args.id}' has no {args.only}: its attestation is "
                f"{describe_attestation(attestation)}, not a symmetric key"
            )
        print(key)
        return 0
    lines = [f"{kind.label} '{args.id}': {describe_attestation(attestation)}"]
    if keys:
        lines += [
            f"  primary key:   {keys.get('primaryKey')}",
            f"  secondary key: {keys.get('secondaryKey')}",
        ]
        if kind is GROUP:
            lines.append(
                "  devices use HMAC-SHA256(group key, registration id): "
                f"devprov device register ID --group-key {keys.get('primaryKey')}"
            )
    emit(args, attestation, "\n".join(lines))
    return 0


# --- registration states ---------------------------------------------------------------------


def _registration_summary(state: dict[str, Any]) -> str:
    lines = [
        f"registration: {state.get('registrationId')}",
        f"  status:      {state.get('status')}"
        + (f" ({state['substatus']})" if state.get("substatus") else ""),
        f"  hub:         {state.get('assignedHub') or '-'}",
        f"  device id:   {state.get('deviceId') or '-'}",
        f"  created:     {state.get('createdDateTimeUtc')}",
        f"  updated:     {state.get('lastUpdatedDateTimeUtc')}",
    ]
    if state.get("errorCode"):
        lines.append(f"  error:       {state.get('errorCode')}: {state.get('errorMessage')}")
    lines.append(f"  etag:        {state.get('etag')}")
    return "\n".join(lines)


def _registration_list(args: argparse.Namespace) -> int:
    with ServiceClient(service_target(args)) as client:
        states = client.query_registrations(args.group, page_size=args.top)
    human = "\n".join(
        f"{s.get('registrationId')}\t{s.get('status')}\t{s.get('assignedHub') or '-'}\t"
        f"{s.get('deviceId') or '-'}"
        for s in states
    )
    emit(args, states, human or f"no device has registered through '{args.group}'")
    return 0


def _registration_show(args: argparse.Namespace) -> int:
    with ServiceClient(service_target(args)) as client:
        state = client.get_registration(args.id)
    emit(args, state, _registration_summary(state))
    return 0


def _registration_delete(args: argparse.Namespace) -> int:
    with ServiceClient(service_target(args)) as client:
        state = client.get_registration(args.id)
        client.delete_registration(
            args.id, etag=str(state.get("etag")), delete_identity=args.delete_identity
        )
    emit(args, {"deleted": args.id}, f"deleted the registration state of '{args.id}'")
    return 0

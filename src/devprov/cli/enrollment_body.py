"""The options of ``devprov enrollment-group`` and ``devprov enrollment``, and the DPS documents
they build (docs/dps-wire.md#enrollment-models).

``create`` builds a document from the options; ``update`` applies only the options given to the
document the server returned, as the Azure CLI's ``az iot dps enrollment(-group) update`` does.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devprov.cli.files import input_file, json_or_file, read_input
from devprov.core.certificate import parse_single_certificate, to_pem
from devprov.core.error import InvalidInputError

# docs/dps-wire.md#enrollment-models: the lowest api-version a custom allocation webhook may
# speak; devprov's default is the current stable one.
DEFAULT_WEBHOOK_API_VERSION = "2021-10-01"

ALLOCATION_POLICIES = ("hashed", "geoLatency", "static", "custom")

# reprovisionPolicy per option: (updateHubAssignment, migrateDeviceData)
# (docs/dps-wire.md#enrollment-models).
REPROVISION = {
    "none": (False, False),
    "migrate": (True, True),
    "reset": (True, False),
}

# The members that name an enrollment's credential policy, in the preview and in 2026-11-01
# (docs/operational-certificates.md#enrollments-name-a-policy).
POLICY_MEMBERS = ("credentialPolicyName", "certificatePolicyName")

SYMMETRIC_KEY = "symmetricKey"
CA_REFERENCES = "caReferences"


class InvalidOptionError(InvalidInputError):
    """CLI options that do not go together."""

    code = "InvalidOption"
    number = 400190


@dataclass(frozen=True)
class Kind:
    """What differs between an enrollment group and an individual enrollment."""

    collection: str  # the service API's path segment
    id_field: str
    label: str
    x509_field: str  # where the enrollment's own certificates go
    cert_options: tuple[str, str]  # argparse dests of the primary and secondary certificate


GROUP = Kind(
    "enrollmentGroups",
    "enrollmentGroupId",
    "enrollment group",
    "signingCertificates",
    ("signing_cert", "secondary_signing_cert"),
)
INDIVIDUAL = Kind(
    "enrollments",
    "registrationId",
    "enrollment",
    "clientCertificates",
    ("cert", "secondary_cert"),
)


# --- options -----------------------------------------------------------------------------------


def add_attestation_options(parser: argparse.ArgumentParser, kind: Kind) -> None:
    group = parser.add_argument_group(
        "attestation", "pick one kind; on update, only what is given changes"
    )
    if kind is GROUP:
        group.add_argument(
            "--ca-name",
            metavar="NAME",
            help="a verified certificate of the registry (caReferences.primary)",
        )
        group.add_argument("--secondary-ca-name", metavar="NAME", help="caReferences.secondary")
        group.add_argument(
            "--signing-cert",
            type=input_file,
            metavar="FILE",
            help="a root or intermediate CA certificate, inline (signingCertificates.primary)",
        )
        group.add_argument(
            "--secondary-signing-cert",
            type=input_file,
            metavar="FILE",
            help="signingCertificates.secondary",
        )
    else:
        group.add_argument(
            "--cert",
            type=input_file,
            metavar="FILE",
            help="the device's own certificate, e.g. self-signed (clientCertificates.primary)",
        )
        group.add_argument(
            "--secondary-cert",
            type=input_file,
            metavar="FILE",
            help="clientCertificates.secondary",
        )
    group.add_argument(
        "--symmetric-key",
        action="store_true",
        help="symmetric-key attestation; the server generates keys not given",
    )
    group.add_argument("--primary-key", metavar="KEY", help="base64, 16 to 64 bytes")
    group.add_argument("--secondary-key", metavar="KEY", help="base64, 16 to 64 bytes")


def add_common_options(parser: argparse.ArgumentParser, kind: Kind) -> None:
    if kind is INDIVIDUAL:
        parser.add_argument(
            "--device-id", help="the IoT hub device id (default: the registration id)"
        )
    status = parser.add_mutually_exclusive_group()
    status.add_argument(
        "--disabled",
        dest="provisioning_status",
        action="store_const",
        const="disabled",
        help="devices are refused (status 'disabled')",
    )
    status.add_argument(
        "--enabled",
        dest="provisioning_status",
        action="store_const",
        const="enabled",
        help="devices may register (the default on create)",
    )
    parser.add_argument(
        "--allocation-policy",
        choices=ALLOCATION_POLICIES,
        help="how a hub is chosen (default: hashed over the linked hubs)",
    )
    parser.add_argument(
        "--hub",
        dest="hubs",
        action="append",
        metavar="HOST",
        help="a linked hub this enrollment may use (repeatable; default: every linked hub)",
    )
    parser.add_argument("--webhook-url", metavar="URL", help="custom allocation webhook")
    parser.add_argument(
        "--webhook-api-version",
        metavar="V",
        help=f"api-version of the webhook (default {DEFAULT_WEBHOOK_API_VERSION})",
    )
    reprovision = parser.add_mutually_exclusive_group()
    for flag, value, text in (
        ("--no-reprovision", "none", "a re-registering device keeps its hub"),
        ("--reprovision-migrate", "migrate", "re-assign and migrate device data (the default)"),
        ("--reprovision-reset", "reset", "re-assign with the initial twin"),
    ):
        reprovision.add_argument(
            flag, dest="reprovision", action="store_const", const=value, help=text
        )
    parser.add_argument(
        "--initial-twin",
        type=json_or_file,
        metavar="JSON|@FILE",
        help="the initial twin, as JSON or @file",
    )
    parser.add_argument(
        "--edge",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="devices are IoT Edge devices (capabilities.iotEdge)",
    )
    policy = parser.add_mutually_exclusive_group()
    policy.add_argument(
        "--credential-policy",
        metavar="NAME",
        help="devices sending a CSR get an operational certificate from this credential "
        "policy's CA (credentialPolicyName; devprov credential-policy)",
    )
    policy.add_argument(
        "--no-credential-policy",
        action="store_true",
        help="name no credential policy: devices get no operational certificate",
    )


# --- documents -----------------------------------------------------------------------------


def read_json_option(value: str, option: str) -> dict[str, Any]:
    """A JSON object given inline or as ``@file``."""
    text: str | bytes = value
    source = option
    if value.startswith("@"):
        text = read_input(Path(value[1:]), option)
        source = f"{option} file {value[1:]}"
    try:
        data = json.loads(text)
    except ValueError as exc:  # UnicodeDecodeError included
        raise InvalidOptionError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidOptionError(f"{source} must be a JSON object")
    return data


def ca_references(doc: dict[str, Any]) -> list[str]:
    """The registry certificates an enrollment group names in caReferences, primary first."""
    x509 = (doc.get("attestation") or {}).get("x509") or {}
    pair = x509.get(CA_REFERENCES) or {}
    return [str(pair[k]) for k in ("primary", "secondary") if pair.get(k)]


def _certificate(path: Path, option: str) -> dict[str, Any]:
    raw = read_input(path, option)
    try:
        certificate = parse_single_certificate(raw)
    except InvalidInputError as exc:
        raise type(exc)(f"{option} {path}: {exc.message}") from exc
    return {"certificate": to_pem(certificate)}


def _families(args: argparse.Namespace, kind: Kind) -> list[str]:
    given = {
        CA_REFERENCES: (getattr(args, "ca_name", None), getattr(args, "secondary_ca_name", None)),
        kind.x509_field: tuple(getattr(args, name) for name in kind.cert_options),
        SYMMETRIC_KEY: (args.symmetric_key, args.primary_key, args.secondary_key),
    }
    return [family for family, values in given.items() if any(values)]


def _family_of(attestation: dict[str, Any] | None) -> str | None:
    if not attestation:
        return None
    if attestation.get("type") == SYMMETRIC_KEY:
        return SYMMETRIC_KEY
    x509 = attestation.get("x509") or {}
    return next((name for name in x509 if x509.get(name)), None)


def _options(kind: Kind) -> str:
    first = "--ca-name, --signing-cert" if kind is GROUP else "--cert"
    return f"{first} or --symmetric-key"


def build_attestation(
    args: argparse.Namespace, kind: Kind, current: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The attestation the options ask for, merged into ``current`` (None on create) when of the
    same kind; None when the options name none, so the current one stays.

    Raises ``args.parser.error`` (exit 2) for contradictory or incomplete options.
    """
    families = _families(args, kind)
    if len(families) > 1:
        args.parser.error(f"choose one kind of attestation: {_options(kind)}")
    if not families:
        if current is None:
            args.parser.error(f"an attestation is required: {_options(kind)}")
        return None
    family = families[0]
    same = current if _family_of(current) == family else None
    if family == SYMMETRIC_KEY:
        keys = (same or {}).get(SYMMETRIC_KEY) or {}
        chosen = {
            "primaryKey": args.primary_key or keys.get("primaryKey"),
            "secondaryKey": args.secondary_key or keys.get("secondaryKey"),
        }
        return {"type": SYMMETRIC_KEY, SYMMETRIC_KEY: {k: v for k, v in chosen.items() if v}}
    existing = ((same or {}).get("x509") or {}).get(family) or {}
    if family == CA_REFERENCES:
        primary = args.ca_name or existing.get("primary")
        secondary = args.secondary_ca_name or existing.get("secondary")
        if not primary:
            args.parser.error("--secondary-ca-name needs --ca-name (caReferences.primary)")
        pair: dict[str, Any] = {"primary": primary, "secondary": secondary}
    else:
        primary_option, secondary_option = kind.cert_options
        pair = {
            "primary": _read_certificate(args, primary_option) or existing.get("primary"),
            "secondary": _read_certificate(args, secondary_option) or existing.get("secondary"),
        }
        if not pair["primary"]:
            flags = [f"--{name.replace('_', '-')}" for name in (secondary_option, primary_option)]
            args.parser.error(f"{flags[0]} needs {flags[1]}")
    return {"type": "x509", "x509": {family: {k: v for k, v in pair.items() if v}}}


def _read_certificate(args: argparse.Namespace, option: str) -> dict[str, Any] | None:
    path = getattr(args, option)
    return _certificate(path, f"--{option.replace('_', '-')}") if path else None


def apply_common_options(args: argparse.Namespace, kind: Kind, doc: dict[str, Any]) -> None:
    """Set the fields the options give; the rest of ``doc`` stays as it is."""
    if kind is INDIVIDUAL and args.device_id:
        doc["deviceId"] = args.device_id
    if args.provisioning_status:
        doc["provisioningStatus"] = args.provisioning_status
    if args.allocation_policy:
        doc["allocationPolicy"] = args.allocation_policy
    if args.hubs:
        doc["iotHubs"] = list(dict.fromkeys(args.hubs))
    if args.webhook_url or args.webhook_api_version:
        if doc.get("allocationPolicy") != "custom":
            args.parser.error(
                "--webhook-url and --webhook-api-version need --allocation-policy custom"
            )
        definition = doc.get("customAllocationDefinition") or {}
        doc["customAllocationDefinition"] = {
            "webhookUrl": args.webhook_url or definition.get("webhookUrl"),
            "apiVersion": args.webhook_api_version
            or definition.get("apiVersion")
            or DEFAULT_WEBHOOK_API_VERSION,
        }
    if args.reprovision:
        update, migrate = REPROVISION[args.reprovision]
        doc["reprovisionPolicy"] = {"updateHubAssignment": update, "migrateDeviceData": migrate}
    if args.initial_twin is not None:
        doc["initialTwin"] = read_json_option(args.initial_twin, "--initial-twin")
    if args.edge is not None:
        doc["capabilities"] = {"iotEdge": args.edge}
    if args.credential_policy or args.no_credential_policy:
        # Both spellings go (the preview's and the 2026-11-01 one): a fetched document carries
        # both, and two different names would be refused.
        for member in POLICY_MEMBERS:
            doc.pop(member, None)
        if args.credential_policy:
            doc["credentialPolicyName"] = args.credential_policy


def new_document(args: argparse.Namespace, kind: Kind, id: str) -> dict[str, Any]:
    doc: dict[str, Any] = {kind.id_field: id, "attestation": build_attestation(args, kind, None)}
    apply_common_options(args, kind, doc)
    return doc


# Read-only fields of a fetched document: the server ignores them, but sending them back would
# suggest they could be changed.
_READ_ONLY = ("etag", "createdDateTimeUtc", "lastUpdatedDateTimeUtc", "registrationState")


def updated_document(
    args: argparse.Namespace, kind: Kind, fetched: dict[str, Any], keys: dict[str, Any] | None
) -> dict[str, Any]:
    """``fetched`` with the options applied. ``keys`` is the attestation mechanism of a
    symmetric-key enrollment: a GET carries no keys, and a PUT without them would make the server
    generate new ones (docs/dps-wire.md#attestation-mechanisms)."""
    doc = {k: v for k, v in fetched.items() if k not in _READ_ONLY}
    current = keys if keys is not None else doc.get("attestation")
    changed = build_attestation(args, kind, current)
    doc["attestation"] = changed if changed is not None else current
    apply_common_options(args, kind, doc)
    return doc

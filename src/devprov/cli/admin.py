"""Local administration: provisioning services and the audit log, read from the data directory."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from devprov.cli.common import add_data_dir, container
from devprov.cli.housekeeping import add_retention_options, retention_policy
from devprov.cli.output import add_json_flag, emit
from devprov.core.possession import DEFAULT_CODE_LIFETIME
from devprov.core.printable import printable
from devprov.service.model import DEFAULT_MAX_CERTIFICATES, ProvisioningService


def register(subparsers: Any) -> None:
    service = subparsers.add_parser("service", help="provisioning services of this data directory")
    actions = service.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create", help="create a provisioning service with its own ID scope"
    )
    create.add_argument("name")
    create.add_argument(
        "--max-certificates",
        type=int,
        default=DEFAULT_MAX_CERTIFICATES,
        help=f"CA certificates it may hold (default {DEFAULT_MAX_CERTIFICATES}, as DPS)",
    )
    create.add_argument(
        "--code-lifetime",
        type=int,
        default=int(DEFAULT_CODE_LIFETIME.total_seconds()),
        help="seconds a verification code stays usable (default 3600)",
    )
    update = actions.add_parser("update", help="change a service's limits")
    update.add_argument("name")
    update.add_argument("--max-certificates", type=int, help="CA certificates it may hold")
    update.add_argument(
        "--code-lifetime", type=int, help="seconds a verification code stays usable"
    )
    listing = actions.add_parser("list", help="list provisioning services")
    show = actions.add_parser("show", help="show one provisioning service with its keys")
    show.add_argument("name")
    for parser in (create, update, listing, show):
        add_data_dir(parser)
        add_json_flag(parser)
    create.set_defaults(func=_create)
    listing.set_defaults(func=_list)
    update.set_defaults(func=_update)
    show.set_defaults(func=_show)

    audit = subparsers.add_parser("audit", help="print the audit log")
    add_data_dir(audit)
    add_json_flag(audit)
    audit.add_argument("--service", help="only this provisioning service")
    audit.add_argument("--certificate", help="only this certificate")
    audit.add_argument("--registration", help="only this registration or enrollment id")
    audit.add_argument("--limit", type=int, default=100, help="the newest N events (default 100)")
    audit.set_defaults(func=_audit)
    audit_actions = audit.add_subparsers(dest="audit_action", metavar="ACTION")
    prune = audit_actions.add_parser(
        "prune",
        help="delete audit events and finished operations past their retention, as the server "
        "does periodically",
    )
    add_data_dir(prune)
    add_json_flag(prune)
    add_retention_options(prune)
    prune.set_defaults(func=_prune)


def _service_json(service: ProvisioningService) -> dict[str, Any]:
    return {
        "name": service.name,
        "idScope": service.id_scope,
        "created": service.created_at.isoformat(),
        "maxCertificates": service.max_certificates,
        "verificationCodeLifetimeSeconds": int(service.code_lifetime.total_seconds()),
    }


def _create(args: argparse.Namespace) -> int:
    c = container(args)
    service = c.directory.create(
        args.name,
        max_certificates=args.max_certificates,
        code_lifetime=timedelta(seconds=args.code_lifetime),
    )
    return _print_service(args, c.directory.policies(service.name), service)


def _update(args: argparse.Namespace) -> int:
    c = container(args)
    lifetime = None if args.code_lifetime is None else timedelta(seconds=args.code_lifetime)
    service = c.directory.update(
        args.name, max_certificates=args.max_certificates, code_lifetime=lifetime
    )
    return _print_service(args, c.directory.policies(service.name), service)


def _show(args: argparse.Namespace) -> int:
    c = container(args)
    service = c.directory.get(args.name)
    return _print_service(args, c.directory.policies(service.name), service)


def _print_service(
    args: argparse.Namespace, policies: list[Any], service: ProvisioningService
) -> int:
    data = _service_json(service)
    data["policies"] = [
        {
            "name": p.name,
            "primaryKey": p.primary_key,
            "secondaryKey": p.secondary_key,
            "rights": sorted(p.rights),
        }
        for p in policies
    ]
    lines = [f"{service.name}: ID scope {service.id_scope}"]
    lines += [f"  policy {p.name}: primary key {p.primary_key}" for p in policies]
    emit(args, data, "\n".join(lines))
    return 0


def _list(args: argparse.Namespace) -> int:
    services = container(args).directory.all()
    emit(
        args,
        [_service_json(s) for s in services],
        "\n".join(f"{s.name}\t{s.id_scope}" for s in services) or "no provisioning services",
    )
    return 0


def _audit(args: argparse.Namespace) -> int:
    c = container(args)
    events = c.audit.events(
        service=args.service,
        certificate=args.certificate,
        registration_id=args.registration,
        limit=args.limit,
    )
    rows = [
        {
            "at": e.at.isoformat(),
            "service": e.service,
            "certificate": e.certificate,
            "action": e.action,
            "outcome": e.outcome.value,
            "actor": e.actor,
            "reason": e.reason,
            "errorCode": e.error_code,
            "apiVersion": e.api_version,
            "registrationId": e.registration_id,
        }
        for e in events
    ]
    human = "\n".join(_audit_line(r) for r in rows)
    emit(args, rows, human or "no audit events")  # --json: JSON escapes control characters
    return 0


def _prune(args: argparse.Namespace) -> int:
    policy = retention_policy(args)
    result = container(args).retention.prune(policy, limit=None)
    cutoffs = {
        "auditEventsBefore": result.audit_cutoff.isoformat() if result.audit_cutoff else None,
        "operationsBefore": result.operation_cutoff.isoformat()
        if result.operation_cutoff
        else None,
    }
    human = [
        f"deleted {result.audit_events} audit events"
        + (f" from before {result.audit_cutoff:%Y-%m-%d %H:%M}Z" if result.audit_cutoff else ""),
        f"deleted {result.operations} finished operations"
        + (
            f" from before {result.operation_cutoff:%Y-%m-%d %H:%M}Z"
            if result.operation_cutoff
            else ""
        ),
    ]
    emit(
        args,
        {"auditEvents": result.audit_events, "operations": result.operations, **cutoffs},
        "\n".join(human),
    )
    return 0


def _audit_line(row: dict[str, Any]) -> str:
    """One event on one line. Ids, names, actors and reasons come from clients: escaped, so that
    none can start a line of its own or drive the terminal (core.printable)."""
    subject = row["certificate"] or row["registrationId"] or "-"
    line = (
        f"{row['at']}  {row['service']}/{subject}  {row['action']}  {row['outcome']}  "
        f"by {row['actor']}"
        + (f"  [{row['errorCode']}] " if row["errorCode"] else "  ")
        + (row["reason"] or "")
    )
    return printable(line)

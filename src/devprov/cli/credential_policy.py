"""``devprov credential-policy`` and ``devprov issued``: the credential policies of a provisioning
service, whose CAs issue operational certificates to devices that send a CSR when they register,
and the certificates issued (local state; docs/operational-certificates.md).

These commands open the data directory, as ``devprov hub`` does; the running server reads the
same database and key files, so a policy created here issues at the server's next registration.
An imported CA's key and passphrase are read from files, never from the command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devprov.bootstrap import DEFAULT_SERVICE
from devprov.cli.common import add_data_dir, container
from devprov.cli.files import input_file, read_input
from devprov.cli.output import add_json_flag, emit
from devprov.cli.service_client import local_url
from devprov.core.certificate import describe_certificate
from devprov.core.credential_policy import (
    DEFAULT_VALIDITY_DAYS,
    MAX_VALIDITY_DAYS,
    MIN_VALIDITY_DAYS,
    CredentialPolicy,
    IssuedCertificate,
)
from devprov.core.issuance import PublicKey
from devprov.service.credential_policy import CA_PATH, CRL_PATH, CredentialPolicies
from devprov.service.issuing_ca import DEFAULT_KEY_TYPE
from devprov.service.pki.ca import KeyType, describe_key_type
from devprov.service.pki.file import read_password_file
from devprov.storage.file import write_atomically

# Who the audit log names for a change made from this command line (as devprov hub does).
CLI_ACTOR = "cli"

# A CRL written with --out is public: anyone checking a device's certificate reads it.
CRL_FILE_MODE = 0o644

# Issued certificates per page read while listing them all.
PAGE = 100


def register(subparsers: Any) -> None:
    _register_policies(subparsers)
    _register_issued(subparsers)


def _register_policies(subparsers: Any) -> None:
    text = "credential policies: CAs that issue operational certificates to devices sending a CSR"
    parser = subparsers.add_parser("credential-policy", help=text, description=text)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="a policy with a new issuing CA, or the CA given with --import-cert/--import-key",
    )
    create.add_argument("name", metavar="NAME")
    _add_create_options(create)
    create.set_defaults(func=_create, parser=create)
    listing = actions.add_parser("list", help="the service's policies")
    listing.set_defaults(func=_list)
    show = actions.add_parser("show", help="one policy: its CA, profile and CRL")
    show.add_argument("name", metavar="NAME")
    show.set_defaults(func=_show)
    delete = actions.add_parser(
        "delete", help="delete a policy and its issuing key (what it issued stays on record)"
    )
    delete.add_argument("name", metavar="NAME")
    delete.add_argument(
        "--force",
        action="store_true",
        help="delete it although enrollments name it (their devices' CSRs are then refused)",
    )
    delete.set_defaults(func=_delete)
    crl = actions.add_parser("crl", help="the policy's certificate revocation list (DER)")
    crl.add_argument("name", metavar="NAME")
    crl.add_argument("--out", type=Path, metavar="FILE", help="write it to FILE (default stdout)")
    crl.add_argument("--pem", action="store_true", help="PEM instead of DER")
    crl.set_defaults(func=_crl)
    ca = actions.add_parser(
        "ca", help="the policy's CA chain (PEM, issuing CA first), for hubs to trust"
    )
    ca.add_argument("name", metavar="NAME")
    ca.set_defaults(func=_ca)
    for sub in (create, listing, show, delete, crl, ca):
        add_data_dir(sub)
        sub.add_argument(
            "--service", default=DEFAULT_SERVICE, help="provisioning service (default: default)"
        )
    for sub in (create, listing, show, delete):
        add_json_flag(sub)
    for sub in (create, listing, show):
        sub.add_argument(
            "--url", help="the server URL the CRL's address names (default: the data directory's)"
        )


def _add_create_options(create: argparse.ArgumentParser) -> None:
    create.add_argument(
        "--key-type",
        choices=[k.value for k in KeyType],
        help=f"the new CA's key (default {DEFAULT_KEY_TYPE.value}, as Azure's issuing CAs)",
    )
    create.add_argument(
        "--validity-days",
        type=int,
        default=DEFAULT_VALIDITY_DAYS,
        metavar="N",
        help=f"of each certificate issued ({MIN_VALIDITY_DAYS} to {MAX_VALIDITY_DAYS}; "
        f"default {DEFAULT_VALIDITY_DAYS})",
    )
    create.add_argument("--organization", metavar="O", help="O= of the issued certificates")
    create.add_argument(
        "--organizational-unit", metavar="OU", help="OU= of the issued certificates"
    )
    create.add_argument(
        "--server-auth",
        action="store_true",
        help="serverAuth in the issued certificates' EKU, beside clientAuth",
    )
    imported = create.add_argument_group(
        "importing the operator's CA instead of generating one (docs/operational-certificates.md)"
    )
    imported.add_argument(
        "--import-cert",
        type=input_file,
        metavar="CHAIN.pem",
        help="the issuing CA's certificate, then those above it (up to the root, or none)",
    )
    imported.add_argument(
        "--import-key", type=input_file, metavar="KEY.pem", help="the issuing CA's private key"
    )
    imported.add_argument(
        "--key-passphrase-file",
        type=input_file,
        metavar="FILE",
        help="a file whose first line decrypts --import-key",
    )


# --- rendering -------------------------------------------------------------------------------


def _chain(policy: CredentialPolicy) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(policy.ca_chain_pem.encode("ascii"))


def _key_type(certificate: x509.Certificate) -> str:
    key = certificate.public_key()
    return describe_key_type(key) if isinstance(key, PublicKey) else type(key).__name__


def _urls(args: argparse.Namespace, policy: CredentialPolicy) -> tuple[str, str]:
    base = local_url(args)
    where = {"service": policy.service, "policy": policy.name}
    return base + CRL_PATH.format(**where), base + CA_PATH.format(**where)


def _policy_json(
    args: argparse.Namespace, policy: CredentialPolicy, *, enrollments: int | None = None
) -> dict[str, Any]:
    chain = _chain(policy)
    facts = describe_certificate(chain[0])
    crl_url, ca_url = _urls(args, policy)
    data: dict[str, Any] = {
        "service": policy.service,
        "name": policy.name,
        "origin": policy.origin.value,
        "validityDays": policy.validity_days,
        "organization": policy.organization,
        "organizationalUnit": policy.organizational_unit,
        "serverAuth": policy.server_auth,
        "crlNumber": policy.crl_number,
        "created": policy.created_at.isoformat() if policy.created_at else None,
        "ca": {
            "subject": facts.subject,
            "keyType": _key_type(chain[0]),
            "serialNumber": facts.serial_number,
            "sha256Thumbprint": facts.sha256_thumbprint,
            "notBefore": facts.not_before.isoformat(),
            "notAfter": facts.not_after.isoformat(),
        },
        "chainLength": len(chain),
        "crlUrl": crl_url,
        "caUrl": ca_url,
    }
    if enrollments is not None:
        data["enrollments"] = enrollments
    return data


def _summary(data: dict[str, Any]) -> str:
    ca = data["ca"]
    usages = "clientAuth, serverAuth" if data["serverAuth"] else "clientAuth"
    subject = ", ".join(
        f"{label}={data[key]}"
        for label, key in (("O", "organization"), ("OU", "organizationalUnit"))
        if data[key]
    )
    lines = [
        f"credential policy: {data['name']} (service {data['service']})",
        f"  CA:          {ca['subject']} ({data['origin']}, {ca['keyType']}), "
        f"valid until {ca['notAfter']}",
        f"  chain:       {data['chainLength']} certificate(s), issuing CA first",
        f"  issues:      {data['validityDays']} days, {usages}"
        + (f", subject {subject}, CN=<registration id>" if subject else ""),
        f"  CRL:         {data['crlUrl']} (number {data['crlNumber']})",
        f"  CA chain:    {data['caUrl']}",
    ]
    if "enrollments" in data:
        lines.append(f"  enrollments: {data['enrollments']} name it")
    return "\n".join(lines)


def _issued_json(record: IssuedCertificate) -> dict[str, Any]:
    def at(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "serialNumber": record.serial,
        "registrationId": record.registration_id,
        "policy": record.policy,
        "sha256Thumbprint": record.sha256.upper(),
        "notBefore": at(record.not_before),
        "notAfter": at(record.not_after),
        "issued": at(record.issued_at),
        "operationId": record.operation_id,
        "superseded": at(record.superseded_at),
        "revoked": at(record.revoked_at),
    }


def _state(record: IssuedCertificate) -> str:
    if record.revoked_at is not None:
        return f"revoked {record.revoked_at.isoformat()}"
    if record.superseded_at is not None:
        return "superseded"
    return "current"


# --- credential-policy -----------------------------------------------------------------------


def _policies(args: argparse.Namespace) -> CredentialPolicies:
    return container(args).credential_policies


def _create(args: argparse.Namespace) -> int:
    imported = args.import_cert is not None or args.import_key is not None
    if imported and (args.import_cert is None or args.import_key is None):
        args.parser.error("--import-cert and --import-key go together")
    if args.key_passphrase_file is not None and not imported:
        args.parser.error("--key-passphrase-file needs --import-cert and --import-key")
    if imported and args.key_type is not None:
        args.parser.error("--key-type is for a generated CA; an imported CA keeps its own key")
    profile = {
        "validity_days": args.validity_days,
        "organization": args.organization,
        "organizational_unit": args.organizational_unit,
        "server_auth": args.server_auth,
    }
    policies = _policies(args)
    if imported:
        passphrase = (
            None
            if args.key_passphrase_file is None
            else read_password_file(Path(args.key_passphrase_file))
        )
        policy = policies.import_ca(
            args.service,
            args.name,
            chain_pem=read_input(Path(args.import_cert), "--import-cert"),
            key_pem=read_input(Path(args.import_key), "--import-key"),
            passphrase=passphrase,
            actor=CLI_ACTOR,
            **profile,
        )
    else:
        policy = policies.create(
            args.service,
            args.name,
            key_type=args.key_type or DEFAULT_KEY_TYPE,
            actor=CLI_ACTOR,
            **profile,
        )
    data = _policy_json(args, policy)
    emit(
        args,
        data,
        f"created {_summary(data)}\nhubs trust its devices with: devprov credential-policy ca "
        f"{policy.name} --service {policy.service} > {policy.name}-ca.pem",
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    policies = _policies(args).list(args.service)
    data = [_policy_json(args, p) for p in policies]
    human = "\n".join(
        f"{d['name']}\t{d['origin']}\t{d['validityDays']} days\t{d['ca']['subject']}" for d in data
    )
    emit(args, data, human or f"'{args.service}' has no credential policies")
    return 0


def _show(args: argparse.Namespace) -> int:
    policies = _policies(args)
    policy = policies.show(args.service, args.name)
    data = _policy_json(
        args, policy, enrollments=policies.enrollments_naming(args.service, policy.name)
    )
    emit(args, data, _summary(data))
    return 0


def _delete(args: argparse.Namespace) -> int:
    _policies(args).delete(args.service, args.name, force=args.force, actor=CLI_ACTOR)
    emit(
        args,
        {"deleted": args.name},
        f"deleted credential policy '{args.name}' of '{args.service}' and its issuing key",
    )
    return 0


def _crl(args: argparse.Namespace) -> int:
    der = _policies(args).crl(args.service, args.name)
    data = x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM) if args.pem else der
    if args.out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        write_atomically(args.out, data, mode=CRL_FILE_MODE)
        print(f"wrote the CRL of '{args.name}' to {args.out}", file=sys.stderr)
    return 0


def _ca(args: argparse.Namespace) -> int:
    sys.stdout.write(_policies(args).show(args.service, args.name).ca_chain_pem)
    return 0


# --- issued ----------------------------------------------------------------------------------


def _register_issued(subparsers: Any) -> None:
    text = "operational certificates issued under credential policies"
    parser = subparsers.add_parser("issued", help=text, description=text)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every certificate issued, oldest first")
    listing.add_argument("--policy", metavar="P", help="only those of this policy")
    listing.add_argument("--registration-id", metavar="R", help="only those of this registration")
    listing.set_defaults(func=_issued_list)
    revoke = actions.add_parser(
        "revoke", help="revoke a certificate: its policy's next CRL lists it"
    )
    revoke.add_argument("serial", metavar="SERIAL", help="hexadecimal, as `issued list` shows")
    revoke.set_defaults(func=_revoke)
    for sub in (listing, revoke):
        add_data_dir(sub)
        add_json_flag(sub)
        sub.add_argument(
            "--service", default=DEFAULT_SERVICE, help="provisioning service (default: default)"
        )


def _issued_list(args: argparse.Namespace) -> int:
    policies = _policies(args)
    records: list[IssuedCertificate] = []
    after = None
    while True:
        page = policies.issued(
            args.service,
            policy=args.policy,
            registration_id=args.registration_id,
            after=after,
            limit=PAGE,
        )
        records += page
        if len(page) < PAGE:
            break
        after = page[-1].serial
    human = "\n".join(
        f"{r.serial}\t{r.registration_id}\t{r.policy}\tuntil {r.not_after.isoformat()}\t{_state(r)}"
        for r in records
    )
    emit(args, [_issued_json(r) for r in records], human or "no certificates issued")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    record = _policies(args).revoke(args.service, args.serial, actor=CLI_ACTOR)
    emit(
        args,
        _issued_json(record),
        f"revoked certificate {record.serial} of '{record.registration_id}' (credential policy "
        f"'{record.policy}'); its next CRL lists it (devprov credential-policy crl "
        f"{record.policy})",
    )
    return 0

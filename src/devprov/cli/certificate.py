"""``devprov certificate``: the certificate registry over the management API.

Etags are handled here: each command reads the current etag before a conditional write, so a
user never copies one by hand. ``prove`` runs the whole proof-of-possession in one command.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from devprov.cli.client import ManagementClient
from devprov.cli.common import ServerTarget, add_server_options, server_target
from devprov.cli.enrollment_body import ca_references
from devprov.cli.files import input_file, read_input
from devprov.cli.output import add_json_flag, emit
from devprov.cli.service_client import ServiceClient, owner_target
from devprov.core.certificate import describe_certificate, parse_single_certificate, to_pem
from devprov.core.error import (
    AuthenticationError,
    CertificateNotFoundError,
    ConflictError,
    InvalidInputError,
    MalformedVerificationCertificateError,
)
from devprov.core.issuance import Issuer, build_verification_certificate
from devprov.service.pki.file import load_private_key, read_password_file


class KeyMismatchError(InvalidInputError):
    """`certificate prove`: the key file does not belong to the CA certificate."""

    code = "KeyDoesNotMatchCertificate"
    number = 400170


class CertificateDiffersError(ConflictError):
    """`certificate prove`: the name is taken by another certificate."""

    code = "RegisteredCertificateDiffers"
    number = 409150


class CertificateInUseError(ConflictError):
    """`certificate delete`: enrollment groups name the certificate in caReferences; --force
    deletes it anyway (the management API itself deletes it, as DPS does)."""

    code = "CertificateInUse"
    number = 409151


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("certificate", help="CA certificates of a provisioning service")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(
        name: str, help_text: str, func: Any, *, named: bool = True
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        if named:
            sub.add_argument("name", help="the certificate's name in the registry")
        add_server_options(sub)
        add_json_flag(sub)
        sub.set_defaults(func=func)
        return sub

    upload = action("upload", "upload (or replace) a CA certificate", _upload)
    upload.add_argument(
        "--cert",
        type=input_file,
        required=True,
        help="the CA certificate (.pem or .cer, PEM or DER)",
    )
    upload.add_argument(
        "--verified", action="store_true", help="self-attest it as verified on upload"
    )
    action("list", "list the registered certificates", _list, named=False)
    action("show", "show one certificate", _show)
    delete = action(
        "delete",
        "delete a certificate; refused while enrollment groups name it, unless --force",
        _delete,
    )
    delete.add_argument(
        "--force",
        action="store_true",
        help="delete it even though enrollment groups name it (their devices are then refused)",
    )
    action(
        "generate-code",
        "issue a new verification code; prints the code alone (details on stderr)",
        _generate_code,
    )
    verify = action("verify", "verify with a signed verification certificate", _verify)
    verify.add_argument(
        "--cert",
        type=input_file,
        required=True,
        help="the verification certificate (CN = the code)",
    )
    prove = action(
        "prove", "upload if missing, generate a code, sign the proof locally and verify", _prove
    )
    prove.add_argument("--cert", type=input_file, required=True, help="the CA certificate")
    prove.add_argument(
        "--key", type=input_file, required=True, help="the CA's private key (used locally only)"
    )
    prove.add_argument(
        "--password-file", type=input_file, help="file holding the CA key's password"
    )


def _summary(data: dict[str, Any]) -> str:
    props = data.get("properties", {})
    lines = [
        f"name:       {data.get('name')}",
        f"subject:    {props.get('subject')}",
        f"thumbprint: {props.get('thumbprint')}",
        f"expiry:     {props.get('expiry')}",
        f"verified:   {'yes' if props.get('isVerified') else 'no'}",
        f"etag:       {data.get('etag')}",
    ]
    if props.get("verificationCode"):
        lines.append(f"verification code: {props['verificationCode']}")
    return "\n".join(lines)


def _read(path: Path, *, proof: bool = False) -> str:
    """The certificate file as the API takes it, checked here first so that a file that is not
    one certificate is named in the error."""
    raw = read_input(path, "--cert")
    try:
        parse_single_certificate(raw)
    except InvalidInputError as exc:
        if proof:
            raise MalformedVerificationCertificateError(f"--cert {path}: {exc.message}") from exc
        raise type(exc)(f"--cert {path}: {exc.message}") from exc
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii")  # DER, sent as base64 of DER
    return text if "-----BEGIN" in text else base64.b64encode(raw).decode("ascii")


def _current(client: ManagementClient, name: str, service: str) -> dict[str, Any]:
    data = client.get(name)
    if data is None:
        raise CertificateNotFoundError(
            f"certificate '{name}' does not exist in service '{service}'"
        )
    return data


def _upload(args: argparse.Namespace) -> int:
    certificate = _read(args.cert)
    target = server_target(args)
    with ManagementClient(target) as client:
        existing = client.get(args.name)
        etag = existing.get("etag") if existing else None
        data = client.upload(args.name, certificate, verified=args.verified, etag=etag)
    emit(args, data, _summary(data))
    return 0


def _list(args: argparse.Namespace) -> int:
    with ManagementClient(server_target(args)) as client:
        items = client.list()
    rows = [(i.get("name"), i.get("properties", {})) for i in items]
    human = "\n".join(
        f"{name}\t{'verified' if props.get('isVerified') else 'unverified'}\t{props.get('subject')}"
        for name, props in rows
    )
    emit(args, items, human or "no certificates")
    return 0


def _show(args: argparse.Namespace) -> int:
    target = server_target(args)
    with ManagementClient(target) as client:
        data = _current(client, args.name, target.service)
    emit(args, data, _summary(data))
    return 0


def _referencing_groups(args: argparse.Namespace, target: ServerTarget) -> list[str] | None:
    """The enrollment groups whose caReferences name the certificate, or None when this machine
    cannot ask (no local keys for the service API of that server)."""
    service = owner_target(args, target)
    if service is None:
        return None
    try:
        with ServiceClient(service) as client:
            groups = client.query("enrollmentGroups")
    except AuthenticationError:  # the local keys are another server's
        return None
    name = args.name.lower()  # registry names compare case-insensitively
    return [
        str(group.get("enrollmentGroupId"))
        for group in groups
        if name in (reference.lower() for reference in ca_references(group))
    ]


def _delete(args: argparse.Namespace) -> int:
    target = server_target(args)
    with ManagementClient(target) as client:
        data = _current(client, args.name, target.service)
        groups = _referencing_groups(args, target)
        named = ", ".join(f"'{g}'" for g in groups or [])
        if groups and not args.force:
            raise CertificateInUseError(
                f"certificate '{args.name}' is named by the caReferences of enrollment group(s) "
                f"{named}, whose devices would be refused once it is gone; point those groups at "
                "another CA or delete them first, or pass --force to delete it anyway"
            )
        client.delete(args.name, str(data.get("etag")))
    if groups:
        print(
            f"warning: enrollment group(s) {named} name '{args.name}'; their devices are refused "
            "until a verified certificate of that name is uploaded again",
            file=sys.stderr,
        )
    elif groups is None:
        print(
            f"warning: could not check which enrollment groups name '{args.name}' (no keys "
            "for this server's service API in the local data directory)",
            file=sys.stderr,
        )
    emit(args, {"deleted": args.name}, f"deleted certificate '{args.name}'")
    return 0


def _generate_code(args: argparse.Namespace) -> int:
    """The code alone on stdout, so that ``CODE=$(devprov certificate generate-code NAME)``
    works; the certificate's details go to stderr, or everything to stdout with --json."""
    target = server_target(args)
    with ManagementClient(target) as client:
        data = _current(client, args.name, target.service)
        result = client.generate_code(args.name, str(data.get("etag")))
    if args.json:
        emit(args, result, "")
        return 0
    code = result.get("properties", {}).get("verificationCode")
    print(_summary(result), file=sys.stderr)
    if data.get("properties", {}).get("isVerified"):
        print(
            f"note: '{args.name}' is already verified; proving it again changes nothing",
            file=sys.stderr,
        )
    print(
        f"next: sign a certificate whose subject CN is this code with the key of '{args.name}' "
        f'(devprov ca verification "$CODE" --issuer PREFIX --out proof.pem), then '
        f"devprov certificate verify {args.name} --cert proof.pem",
        file=sys.stderr,
    )
    print(code)
    return 0


def _verify(args: argparse.Namespace) -> int:
    proof = _read(args.cert, proof=True)
    target = server_target(args)
    with ManagementClient(target) as client:
        data = _current(client, args.name, target.service)
        result = client.verify(args.name, proof, str(data.get("etag")))
    emit(args, result, _summary(result))
    return 0


def _prove(args: argparse.Namespace) -> int:
    """The whole proof-of-possession: the CA key never leaves this machine."""
    try:
        ca_certificate = parse_single_certificate(read_input(args.cert, "--cert"))
    except InvalidInputError as exc:
        raise type(exc)(f"--cert {args.cert}: {exc.message}") from exc
    password = read_password_file(args.password_file) if args.password_file else None
    ca_key = load_private_key(args.key, password)
    if ca_key.public_key() != ca_certificate.public_key():
        raise KeyMismatchError(
            f"the key in {args.key} does not belong to the certificate in {args.cert}"
        )
    thumbprint = describe_certificate(ca_certificate).thumbprint
    target = server_target(args)
    steps: list[str] = []
    with ManagementClient(target) as client:
        existing = client.get(args.name)
        if existing is None:
            existing = client.upload(args.name, to_pem(ca_certificate), verified=False, etag=None)
            steps.append(f"uploaded '{args.name}'")
        elif (registered := existing.get("properties", {}).get("thumbprint")) != thumbprint:
            raise CertificateDiffersError(
                f"'{args.name}' is registered with another certificate (thumbprint "
                f"{registered}, yours {thumbprint}); delete it or choose another name"
            )
        if existing.get("properties", {}).get("isVerified"):
            steps.append(f"'{args.name}' is already verified; nothing to prove")
            emit(args, existing, "\n".join(steps) + "\n" + _summary(existing))
            return 0
        coded = client.generate_code(args.name, str(existing.get("etag")))
        code = str(coded["properties"]["verificationCode"])
        steps.append(f"verification code {code}")
        proof = build_verification_certificate(
            ec.generate_private_key(ec.SECP256R1()).public_key(),
            code,
            Issuer(ca_certificate, ca_key),
            serial=secrets.randbits(127) + 1,
            now=datetime.now(UTC),
        )
        steps.append("signed the verification certificate with the CA key")
        verified = client.verify(args.name, to_pem(proof), str(coded.get("etag")))
        steps.append(f"'{args.name}' is verified")
    emit(args, verified, "\n".join(steps) + "\n" + _summary(verified))
    return 0

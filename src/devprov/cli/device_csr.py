"""``devprov device register --issue PREFIX`` and ``--csr FILE``: a registration that asks for an
operational certificate (docs/operational-certificates.md#from-the-command-line).

``--issue`` makes a new key and a CSR for it (subject CN = the registration ID), sends the CSR with
the register call, and writes what the service issued beside the key: ``PREFIX.key`` (0600),
``PREFIX.pem`` (the leaf) and ``PREFIX-full-chain.pem`` (leaf, issuing CA, the CAs above it), the
file a device presents when it renews with ``--cert PREFIX-full-chain.pem --key PREFIX.key``.
``--csr`` sends a CSR made elsewhere (PEM or DER file) and writes the chain to ``--chain-out``.
The files are checked free before anything is sent, and written only after the answer.
"""

from __future__ import annotations

import argparse
import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from devprov.cli.files import input_file
from devprov.core.error import InvalidInputError
from devprov.core.issuance import PrivateKey, signature_hash
from devprov.service.pki.ca import KeyType, generate_private_key
from devprov.service.pki.file import (
    PkiFiles,
    ensure_free,
    write_certificates,
    write_private_key,
)

# The key ``--issue`` makes: P-256 by default, as ``devprov ca`` (Azure's preview takes P-384
# only, so a device meant for it asks with ``--issue-key-type ec-p384``).
DEFAULT_ISSUE_KEY_TYPE = KeyType.EC_P256


class UnusableCsrFileError(InvalidInputError):
    """`device register --csr`: the file holds no certificate signing request."""

    code = "UnusableCsrFile"
    number = 400201


class NoCertificateIssuedError(InvalidInputError):
    """`device register --issue/--csr`: assigned, but the answer carries no certificate chain
    (the enrollment names no credential policy) or one that cannot be read."""

    code = "NoCertificateIssued"
    number = 400202


@dataclass(frozen=True)
class CertificateAsk:
    """What the register body's ``csr`` carries, and where the answer's chain goes."""

    csr: str  # base64 of the DER, as DPS wants it
    key: PrivateKey | None  # the new key, with --issue
    files: PkiFiles | None  # --issue's PREFIX
    chain_out: Path | None  # --csr's --chain-out


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "an operational certificate (the enrollment must name a credential policy)"
    )
    group.add_argument(
        "--issue",
        metavar="PREFIX",
        help="make a new key and send a CSR for it; write PREFIX.key, PREFIX.pem and "
        "PREFIX-full-chain.pem from the answer",
    )
    group.add_argument(
        "--issue-key-type",
        choices=[t.value for t in KeyType],
        default=DEFAULT_ISSUE_KEY_TYPE.value,
        help=f"the new key (default {DEFAULT_ISSUE_KEY_TYPE.value})",
    )
    group.add_argument(
        "--csr", type=input_file, metavar="FILE", help="send this CSR (PEM or DER) instead"
    )
    group.add_argument(
        "--chain-out", metavar="FILE", help="with --csr: where the issued chain is written"
    )
    group.add_argument(
        "--force", action="store_true", help="replace files --issue or --chain-out would write"
    )


def prepare(args: argparse.Namespace) -> CertificateAsk | None:
    """The CSR to send, or None; refuses files that exist (without --force) before any key is
    made or anything sent."""
    if args.issue and args.csr:
        args.parser.error("give --issue or --csr, not both")
    if args.chain_out and not args.csr:
        args.parser.error("--chain-out goes with --csr (--issue names its own files)")
    if args.csr:
        if not args.chain_out:
            args.parser.error("--csr needs --chain-out, the file the issued chain is written to")
        chain_out = Path(args.chain_out)
        ensure_free([chain_out], overwrite=args.force)
        return CertificateAsk(_read_csr(args.csr), None, None, chain_out)
    if not args.issue:
        return None
    files = PkiFiles.locate(args.issue, Path.cwd())
    ensure_free([files.key, files.certificate, files.full_chain], overwrite=args.force)
    key = generate_private_key(KeyType(args.issue_key_type))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, args.registration_id)])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject)
    csr = request.sign(key, signature_hash(key))
    der = csr.public_bytes(serialization.Encoding.DER)
    return CertificateAsk(base64.b64encode(der).decode("ascii"), key, files, None)


def _read_csr(path: Path) -> str:
    data = path.read_bytes()
    load = x509.load_pem_x509_csr if data.lstrip().startswith(b"-----BEGIN") else None
    try:
        csr = (load or x509.load_der_x509_csr)(data)
    except ValueError as exc:
        raise UnusableCsrFileError(
            f"{path} holds no certificate signing request (PKCS#10, PEM or DER): {exc}"
        ) from exc
    return base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode("ascii")


def save(ask: CertificateAsk, args: argparse.Namespace, operation: dict[str, Any]) -> list[str]:
    """Write the issued chain (and --issue's key); the report's lines. Call on ``assigned``."""
    state = operation.get("registrationState") or {}
    chain = _chain(state.get("issuedCertificateChain"))
    leaf = chain[0]
    if ask.files is not None and ask.key is not None:
        write_private_key(ask.files.key, ask.key, None, overwrite=args.force)
        write_certificates(ask.files.certificate, [leaf], overwrite=args.force)
        write_certificates(ask.files.full_chain, chain, overwrite=args.force)
        written = [
            f"  certificate: {ask.files.certificate} (key {ask.files.key})",
            f"  full chain:  {ask.files.full_chain} (present it with --cert to renew)",
        ]
    else:
        assert ask.chain_out is not None
        write_certificates(ask.chain_out, chain, overwrite=args.force)
        written = [f"  full chain:  {ask.chain_out}"]
    serial = format(leaf.serial_number, "X")
    until = leaf.not_valid_after_utc.isoformat()
    return [*written, f"  issued:      serial {serial}, valid until {until}"]


def _chain(value: object) -> list[x509.Certificate]:
    if not isinstance(value, list) or not value:
        raise NoCertificateIssuedError(
            "the device was assigned but no certificate was issued: its enrollment names no "
            "credential policy (devprov enrollment-group update NAME --credential-policy POLICY)"
        )
    try:
        return [x509.load_der_x509_certificate(base64.b64decode(item)) for item in value]
    except (TypeError, ValueError, binascii.Error) as exc:
        raise NoCertificateIssuedError(
            f"the answer's issuedCertificateChain cannot be read: {exc}"
        ) from exc

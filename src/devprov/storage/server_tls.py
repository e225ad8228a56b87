"""The server's TLS material in a data directory: the local server CA and the certificate it signs.

Four files: ``ca.pem`` (what clients trust), ``ca.key``, ``server.pem`` (the server certificate
followed by the CA) and ``server.key``, each written atomically and 0600
(``devprov.storage.file``). Each start checks them as a set before it uses them: the CA's
certificate and key must belong together, and the server certificate must carry server.key's
public key and be signed by ca.pem's key, or it is issued again. A set that does not hold
together is what an interrupted or a concurrent earlier start leaves (devprov before its
initialisation lock and atomic writes could leave a server certificate signed by another CA, or
an empty ca.pem); the keys are written before the certificates that name them, so an
interrupted renewal leaves a certificate that fails the check and is issued again.
"""

from __future__ import annotations

import logging
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from devprov.core.error import InvalidInputError
from devprov.core.issuance import Issuer, build_root_certificate, build_server_certificate
from devprov.storage.file import make_private_directory, write_atomically

# The server certificate is renewed at start-up when less than this is left of it.
SERVER_CERT_DAYS = 397  # the CA/B Forum's ceiling for TLS server certificates
SERVER_CERT_RENEW_BEFORE = timedelta(days=30)
SERVER_CA_DAYS = 3650

logger = logging.getLogger(__name__)


class DamagedTlsMaterialError(InvalidInputError):
    """The server CA's files in the data directory cannot be read or do not belong together."""

    code = "DataDirectoryDamaged"
    number = 400251


@dataclass(frozen=True)
class TlsFiles:
    """Where the four files are."""

    ca: Path
    ca_key: Path
    server: Path
    server_key: Path


def ensure_tls_material(files: TlsFiles, hosts: list[str], now: datetime) -> bool:
    """Create the local server CA and a server certificate; issue the latter again near its
    expiry or when it does not hold together with the CA. True when it was issued."""
    make_private_directory(files.ca.parent)
    ca_cert, ca_key = _load_or_create_ca(files, now)
    problem = _server_certificate_problem(files, ca_cert, now)
    if problem is None:
        return False
    if problem:
        logger.warning("%s %s; issuing a new server certificate", files.server, problem)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = build_server_certificate(
        server_key.public_key(),
        hosts,
        Issuer(ca_cert, ca_key),
        serial=secrets.randbits(127) + 1,
        now=now,
        days=SERVER_CERT_DAYS,
    )
    write_atomically(files.server_key, _key_pem(server_key))
    write_atomically(files.server, _certificates_pem(server_cert, ca_cert))
    return True


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _load_or_create_ca(
    files: TlsFiles, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    certificate_pem, key_pem = _read(files.ca), _read(files.ca_key)
    if certificate_pem and key_pem:
        return _load_ca(files, certificate_pem, key_pem)
    if certificate_pem is not None or key_pem is not None:
        found = ", ".join(
            f"{path.name} {'missing' if data is None else 'empty' if not data else 'present'}"
            for path, data in ((files.ca, certificate_pem), (files.ca_key, key_pem))
        )
        logger.warning(
            "%s holds an incomplete server CA (%s), what a start that did not finish leaves; "
            "creating a new server CA",
            files.ca.parent,
            found,
        )
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build_root_certificate(
        ca_key,
        f"devprov local server CA ({socket.gethostname()})",
        serial=secrets.randbits(127) + 1,
        now=now,
        days=SERVER_CA_DAYS,
        path_length=0,
    )
    write_atomically(files.ca_key, _key_pem(ca_key))
    write_atomically(files.ca, _certificates_pem(ca_cert))
    return ca_cert, ca_key


def _load_ca(
    files: TlsFiles, certificate_pem: bytes, key_pem: bytes
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    def damaged(what: str) -> DamagedTlsMaterialError:
        return DamagedTlsMaterialError(
            f"the server CA cannot be used: {what}; restore {files.ca.name} and "
            f"{files.ca_key.name} from a backup, or delete {files.ca.parent} to have the next "
            f"start create a new server CA (clients must then trust the new {files.ca.name})"
        )

    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError as exc:
        raise damaged(f"{files.ca} holds no readable PEM certificate") from exc
    try:
        key = serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise damaged(f"{files.ca_key} holds no readable unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise damaged(f"{files.ca_key} is not an EC key")
    if certificate.public_key() != key.public_key():
        raise damaged(f"{files.ca_key} is not the key of {files.ca}")
    return certificate, key


def _server_certificate_problem(files: TlsFiles, ca: x509.Certificate, now: datetime) -> str | None:
    """None when server.pem and server.key can be used as they are; otherwise why not, or ""
    when there is nothing to warn about (none yet, or one near its end)."""
    certificate_pem, key_pem = _read(files.server), _read(files.server_key)
    if certificate_pem is None and key_pem is None:
        return ""
    try:
        chain = x509.load_pem_x509_certificates(certificate_pem or b"")
        key = serialization.load_pem_private_key(key_pem or b"", None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return f"or {files.server_key.name} is missing, empty or unreadable"
    mismatch = _mismatch(files, chain, key, ca)
    if mismatch is None and chain[0].not_valid_after_utc - now <= SERVER_CERT_RENEW_BEFORE:
        return ""
    return mismatch


def _mismatch(
    files: TlsFiles, chain: list[x509.Certificate], key: PrivateKeyTypes, ca: x509.Certificate
) -> str | None:
    if chain[0].public_key() != key.public_key():
        return f"does not carry the public key of {files.server_key.name}"
    try:
        chain[0].verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return f"is not signed by the server CA {files.ca}"
    if chain[1:] != [ca]:
        return f"does not end with the server CA {files.ca}"
    return None


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificates_pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)

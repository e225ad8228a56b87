"""Operational certificates in tests: a credential policy made as the policy tools will make it
(its CA generated here, its key in the data directory's key store, its row in the database),
certificate signing requests with knobs for the odd cases, and an independent check of an
``issuedCertificateChain`` with cryptography's own verifier.

Everything is generated per test run; no key is committed.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store

from devprov.core.credential_policy import CaOrigin, CredentialPolicy
from devprov.core.issuance import PrivateKey, build_root_certificate
from devprov.service.port import UnitOfWork
from devprov.storage.issuing_key import FileIssuingKeyStore
from tests import factory as f


def p384_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def add_policy(
    uow: Callable[..., UnitOfWork],
    data_root: Path,
    name: str,
    *,
    service: str = "default",
    days: int = 30,
    now: datetime = f.NOW,
    ca_days: int = 365,
    organization: str | None = None,
) -> f.Ca:
    """A credential policy with a generated P-384 issuing CA: its key in ``data_root``'s key
    store, its row in the database. Returns the CA."""
    key = p384_key()
    certificate = build_root_certificate(
        key, f"{name} Issuing CA", serial=f.serial(), now=now, days=ca_days
    )
    FileIssuingKeyStore(data_root).save(service, name, key)
    with uow() as unit:
        unit.credential_policies.add(
            CredentialPolicy(
                service=service,
                name=name,
                ca_chain_pem=f.pem(certificate).decode(),
                origin=CaOrigin.GENERATED,
                validity_days=days,
                organization=organization,
                created_at=now,
                etag="e0",
            )
        )
        unit.commit()
    return f.Ca(certificate, key)


def csr(
    key: PrivateKey,
    common_name: str,
    *,
    extensions: Sequence[x509.ExtensionType] = (),
) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=True)
    return builder.sign(key, hashes.SHA256())


def b64(request: x509.CertificateSigningRequest) -> str:
    """The register body's ``csr``: base64 of the DER, no PEM armour."""
    return base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode()


def pem_text(request: x509.CertificateSigningRequest) -> str:
    return request.public_bytes(serialization.Encoding.PEM).decode()


def signed_by_other_key(key: PrivateKey, other: PrivateKey, common_name: str) -> str:
    """A CSR for ``key`` whose signature was made by ``other`` (both the same kind): the
    request info of one, the signature algorithm and signature of the other."""
    info = csr(key, common_name).tbs_certrequest_bytes
    theirs = csr(other, common_name)
    der = theirs.public_bytes(serialization.Encoding.DER)
    body = info + der[_header_length(der) + len(theirs.tbs_certrequest_bytes) :]
    return base64.b64encode(b"\x30" + _length(len(body)) + body).decode()


def _header_length(der: bytes) -> int:
    """The length of a DER SEQUENCE's tag and length octets."""
    first = der[1]
    return 2 if first < 0x80 else 2 + (first & 0x7F)


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def chain_of(items: Sequence[str]) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(base64.b64decode(item)) for item in items]


def verify_issued_chain(items: Sequence[str], ca: f.Ca, *, at: datetime) -> x509.Certificate:
    """Check ``issuedCertificateChain`` with cryptography's verifier, not devprov's: the leaf
    validates through the items after it to ``ca`` as client certificate. Returns the leaf."""
    chain = chain_of(items)
    verifier = (
        PolicyBuilder()
        .store(Store([ca.certificate]))
        .time(at)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )
    verified = verifier.verify(chain[0], chain[1:])
    assert verified.chain[-1] == ca.certificate
    chain[0].verify_directly_issued_by(ca.certificate)
    return chain[0]


def public_der(key: object) -> bytes:
    """A public key's SubjectPublicKeyInfo, to compare keys."""
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

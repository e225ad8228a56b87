"""A certificate factory for tests: roots, intermediates, devices and verification certificates,
with knobs for the odd cases (expired, not yet valid, CA:FALSE, no basicConstraints, other keys).

Everything is generated per test run; no key is committed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from devprov.core.issuance import (
    Issuer,
    PrivateKey,
    build_device_certificate,
    build_intermediate_certificate,
    build_root_certificate,
    build_verification_certificate,
)

# The run's "now": certificates made by the factory must be valid for servers that read the real
# clock (tests/http, tests/e2e), so this is the wall clock at import, not a fixed date.
NOW = datetime.now(UTC).replace(microsecond=0)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def serial() -> int:
    return secrets.randbits(120) + 1


@dataclass(frozen=True)
class Ca:
    certificate: x509.Certificate
    key: PrivateKey

    @property
    def issuer(self) -> Issuer:
        return Issuer(self.certificate, self.key)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def root(
    cn: str = "Test Root", *, key: PrivateKey | None = None, now: datetime = NOW, days: int = 365
) -> Ca:
    key = key or ec_key()
    return Ca(build_root_certificate(key, cn, serial=serial(), now=now, days=days), key)


def intermediate(
    parent: Ca, cn: str = "Test Intermediate", *, now: datetime = NOW, days: int = 365
) -> Ca:
    key = ec_key()
    cert = build_intermediate_certificate(
        key.public_key(), cn, parent.issuer, serial=serial(), now=now, days=days
    )
    return Ca(cert, key)


def device(parent: Ca, cn: str = "my-device", *, now: datetime = NOW, days: int = 365) -> Ca:
    key = ec_key()
    cert = build_device_certificate(
        key.public_key(), cn, parent.issuer, serial=serial(), now=now, days=days
    )
    return Ca(cert, key)


def verification(parent: Ca, code: str, *, now: datetime = NOW, days: int = 1) -> x509.Certificate:
    return build_verification_certificate(
        ec_key().public_key(), code, parent.issuer, serial=serial(), now=now, days=days
    )


def raw_certificate(
    *,
    subject: x509.Name | None = None,
    issuer_name: x509.Name | None = None,
    signer: PrivateKey | None = None,
    key: PrivateKey | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    ca: bool | None = True,
) -> Ca:
    """A certificate with every knob exposed, for the cases the builders refuse to make."""
    key = key or ec_key()
    subject = subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Odd")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or subject)
        .public_key(key.public_key())
        .serial_number(serial())
        .not_valid_before(not_before or NOW - timedelta(days=1))
        .not_valid_after(not_after or NOW + timedelta(days=30))
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=None), critical=True
        )
    return Ca(builder.sign(signer or key, hashes.SHA256()), key)


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)

"""Building certificates: root and intermediate CAs, device, verification and server certificates.

Pure functions: keys, serial numbers and the time are arguments. Extensions follow what a CA or a
TLS client or server certificate needs (RFC 5280 4.2.1), improving on certGen.sh's profile
(docs/sdk-clients.md#certgensh-keys-extensions-and-validity): CA certificates carry a critical
basicConstraints with an optional pathLen and a critical keyUsage of keyCertSign and cRLSign; leaves
carry CA:FALSE, digitalSignature (plus keyEncipherment for RSA keys, RFC 5246 7.4.7), the EKU they
are used for, SKI and AKI.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

# A certificate made now on one machine must already be valid on a server whose clock is a
# little behind; the same tolerance the verifier grants (core.certificate.CLOCK_SKEW).
BACKDATE = timedelta(minutes=5)

# RFC 5280 4.1.2.2: serial numbers are positive and at most 20 octets.
MAX_SERIAL_BITS = 159


@dataclass(frozen=True)
class Issuer:
    """A CA that signs: its certificate and private key."""

    certificate: x509.Certificate
    key: PrivateKey


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | None:
    """The hash a certificate or CRL signed by ``key`` uses: SHA-384 for EC keys of 384 bits or
    more (P-384, P-521), none for Ed25519 (it hashes internally), SHA-256 otherwise."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _check_serial(serial: int) -> None:
    if serial <= 0 or serial.bit_length() > MAX_SERIAL_BITS:
        raise ValueError("serial must be positive and at most 159 bits (RFC 5280 4.1.2.2)")


def _builder(
    subject: x509.Name,
    public_key: PublicKey,
    issuer_name: x509.Name,
    *,
    serial: int,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    _check_serial(serial)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _base(
    subject: str,
    public_key: PublicKey,
    issuer_name: x509.Name,
    *,
    serial: int,
    now: datetime,
    days: int,
) -> x509.CertificateBuilder:
    if days <= 0:
        raise ValueError("validity must be at least one day")
    return _builder(
        _name(subject),
        public_key,
        issuer_name,
        serial=serial,
        not_before=now - BACKDATE,
        not_after=now + timedelta(days=days),
    )


def authority_key_identifier(issuer: Issuer) -> x509.AuthorityKeyIdentifier:
    """The AKI of what ``issuer`` signs (RFC 5280 4.2.1.1, 5.2.1): its certificate's SKI, or one
    derived from its public key when the certificate has none."""
    try:
        ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def _with_authority(builder: x509.CertificateBuilder, issuer: Issuer) -> x509.CertificateBuilder:
    return builder.add_extension(authority_key_identifier(issuer), critical=False)


def _ca_extensions(
    builder: x509.CertificateBuilder, path_length: int | None
) -> x509.CertificateBuilder:
    return builder.add_extension(
        x509.BasicConstraints(ca=True, path_length=path_length), critical=True
    ).add_extension(
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )


def _leaf_extensions(
    builder: x509.CertificateBuilder, public_key: PublicKey, usages: Sequence[x509.ObjectIdentifier]
) -> x509.CertificateBuilder:
    builder = builder.add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True
    )
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    return builder


def build_leaf_certificate(
    public_key: PublicKey,
    subject: x509.Name,
    issuer: Issuer,
    usages: Sequence[x509.ObjectIdentifier],
    *,
    serial: int,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """An end-entity certificate for ``subject`` signed by ``issuer``, with the leaf profile of
    this module (CA:FALSE, digitalSignature plus keyEncipherment for RSA, the EKU ``usages``,
    SKI, AKI), valid from ``not_before`` to ``not_after`` exactly: the caller decides the window
    (core.csr caps it at the issuer's own notAfter)."""
    if not_after <= not_before:
        raise ValueError("notAfter must be after notBefore")
    builder = _builder(
        subject,
        public_key,
        issuer.certificate.subject,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
    )
    builder = _with_authority(_leaf_extensions(builder, public_key, usages), issuer)
    return builder.sign(issuer.key, signature_hash(issuer.key))


def build_root_certificate(
    key: PrivateKey,
    common_name: str,
    *,
    serial: int,
    now: datetime,
    days: int,
    path_length: int | None = None,
) -> x509.Certificate:
    """A self-signed root CA certificate."""
    builder = _base(
        common_name, key.public_key(), _name(common_name), serial=serial, now=now, days=days
    )
    builder = _ca_extensions(builder, path_length)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
    )
    return builder.sign(key, signature_hash(key))


def build_intermediate_certificate(
    public_key: PublicKey,
    common_name: str,
    issuer: Issuer,
    *,
    serial: int,
    now: datetime,
    days: int,
    path_length: int | None = None,
) -> x509.Certificate:
    """An intermediate CA certificate signed by ``issuer``."""
    builder = _base(
        common_name, public_key, issuer.certificate.subject, serial=serial, now=now, days=days
    )
    builder = _with_authority(_ca_extensions(builder, path_length), issuer)
    return builder.sign(issuer.key, signature_hash(issuer.key))


def build_device_certificate(
    public_key: PublicKey,
    registration_id: str,
    issuer: Issuer,
    *,
    serial: int,
    now: datetime,
    days: int,
) -> x509.Certificate:
    """A TLS client certificate whose CN is the device's registration ID."""
    builder = _base(
        registration_id, public_key, issuer.certificate.subject, serial=serial, now=now, days=days
    )
    builder = _with_authority(
        _leaf_extensions(builder, public_key, [ExtendedKeyUsageOID.CLIENT_AUTH]), issuer
    )
    return builder.sign(issuer.key, signature_hash(issuer.key))


def build_self_signed_device_certificate(
    key: PrivateKey, registration_id: str, *, serial: int, now: datetime, days: int
) -> x509.Certificate:
    """A self-signed device certificate, as individual enrollments allow."""
    builder = _base(
        registration_id, key.public_key(), _name(registration_id), serial=serial, now=now, days=days
    )
    builder = _leaf_extensions(builder, key.public_key(), [ExtendedKeyUsageOID.CLIENT_AUTH])
    return builder.sign(key, signature_hash(key))


def build_verification_certificate(
    public_key: PublicKey,
    verification_code: str,
    issuer: Issuer,
    *,
    serial: int,
    now: datetime,
    days: int = 1,
) -> x509.Certificate:
    """The proof-of-possession certificate: CN is the code, signed by the CA being verified."""
    builder = _base(
        verification_code, public_key, issuer.certificate.subject, serial=serial, now=now, days=days
    )
    builder = _with_authority(_leaf_extensions(builder, public_key, []), issuer)
    return builder.sign(issuer.key, signature_hash(issuer.key))


def build_server_certificate(
    public_key: PublicKey,
    hosts: Sequence[str],
    issuer: Issuer,
    *,
    serial: int,
    now: datetime,
    days: int,
) -> x509.Certificate:
    """A TLS server certificate whose SAN lists every host name and IP address in ``hosts``."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host")
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    builder = _base(
        hosts[0], public_key, issuer.certificate.subject, serial=serial, now=now, days=days
    )
    builder = _leaf_extensions(builder, public_key, [ExtendedKeyUsageOID.SERVER_AUTH])
    builder = _with_authority(
        builder.add_extension(x509.SubjectAlternativeName(names), critical=False), issuer
    )
    return builder.sign(issuer.key, signature_hash(issuer.key))
